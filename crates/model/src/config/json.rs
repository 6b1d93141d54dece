//! Typed reads of `config.json` fields: a missing or mistyped field is an error naming it.

use serde_json::{Map, Value};

use crate::error::ModelError;

/// The field `key`, absent when missing or null.
pub(super) fn field<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

/// The error for a field of the wrong type.
pub(super) fn type_error(key: &str, expected: &str, value: &Value) -> ModelError {
    ModelError::Config(format!(
        "config.json field `{key}`: expected {expected}, found {value}"
    ))
}

/// A required string field.
pub(super) fn str_field(obj: &Map<String, Value>, key: &str) -> Result<String, ModelError> {
    opt_str(obj, key)
        .ok_or_else(|| ModelError::Config(format!("config.json: missing field `{key}`")))
}

/// An optional string field (a non-string reads as absent).
pub(super) fn opt_str(obj: &Map<String, Value>, key: &str) -> Option<String> {
    field(obj, key).and_then(|v| v.as_str()).map(str::to_owned)
}

/// Without an explicit `head_dim`, a head is `hidden / heads` wide: `heads` must divide it.
pub(super) fn check_heads_divide(
    hidden: usize,
    heads: usize,
    h: &str,
    n: &str,
) -> Result<(), ModelError> {
    if heads == 0 || !hidden.is_multiple_of(heads) {
        return Err(ModelError::Config(format!(
            "config.json: `{n}` ({heads}) must divide `{h}` ({hidden})"
        )));
    }
    Ok(())
}

/// A required non-negative integer field.
pub(super) fn usize_field(obj: &Map<String, Value>, key: &str) -> Result<usize, ModelError> {
    opt_usize(obj, key)?
        .ok_or_else(|| ModelError::Config(format!("config.json: missing field `{key}`")))
}

/// An optional non-negative integer field.
pub(super) fn opt_usize(obj: &Map<String, Value>, key: &str) -> Result<Option<usize>, ModelError> {
    field(obj, key)
        .map(|v| {
            v.as_u64()
                .map(|n| n as usize)
                .ok_or_else(|| type_error(key, "a non-negative integer", v))
        })
        .transpose()
}

/// An optional number field.
pub(super) fn opt_f64(obj: &Map<String, Value>, key: &str) -> Result<Option<f64>, ModelError> {
    field(obj, key)
        .map(|v| v.as_f64().ok_or_else(|| type_error(key, "a number", v)))
        .transpose()
}

/// An optional boolean field.
pub(super) fn opt_bool(obj: &Map<String, Value>, key: &str) -> Result<Option<bool>, ModelError> {
    field(obj, key)
        .map(|v| {
            v.as_bool()
                .ok_or_else(|| type_error(key, "true or false", v))
        })
        .transpose()
}

/// Token ids may be an integer or a list of integers (the first one is used).
pub(super) fn opt_token(obj: &Map<String, Value>, key: &str) -> Result<Option<u32>, ModelError> {
    let Some(v) = field(obj, key) else {
        return Ok(None);
    };
    let first = match v {
        Value::Array(items) => items.first(),
        other => Some(other),
    };
    first
        .map(|t| {
            t.as_u64()
                .map(|n| n as u32)
                .ok_or_else(|| type_error(key, "a token id", v))
        })
        .transpose()
}
