//! Reading TOML configs with `--set key=value` overrides; errors name the file and the key.

use std::path::Path;

use serde::de::DeserializeOwned;

use crate::error::AlgoError;

/// Applies `key=value` overrides (dotted keys, TOML values; bare words are strings).
pub fn apply_overrides(doc: &mut toml::Table, sets: &[String]) -> Result<(), AlgoError> {
    for set in sets {
        let (key, raw) = set
            .split_once('=')
            .ok_or_else(|| AlgoError::Config(format!("--set `{set}`: expected key=value")))?;
        let value: toml::Value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(raw.to_owned()));
        let mut parts: Vec<&str> = key.trim().split('.').collect();
        let last = parts
            .pop()
            .filter(|k| !k.is_empty())
            .ok_or_else(|| AlgoError::Config(format!("--set `{set}`: empty key")))?;
        let mut table = &mut *doc;
        for part in parts {
            let entry = table
                .entry(part.to_owned())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            table = entry.as_table_mut().ok_or_else(|| {
                AlgoError::Config(format!("--set `{set}`: `{part}` is not a table"))
            })?;
        }
        table.insert(last.to_owned(), value);
    }
    Ok(())
}

/// Reads a TOML config with overrides; errors name the file and the offending key.
pub fn load_config<T: DeserializeOwned>(path: &Path, sets: &[String]) -> Result<T, AlgoError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| AlgoError::Config(format!("{}: {e}", path.display())))?;
    parse_config(&text, &path.display().to_string(), sets)
}

/// Parses TOML text (named `name` in errors) with overrides. Without overrides the errors carry
/// the line and column of the offending key.
pub fn parse_config<T: DeserializeOwned>(
    text: &str,
    name: &str,
    sets: &[String],
) -> Result<T, AlgoError> {
    let parsed = if sets.is_empty() {
        toml::from_str::<T>(text).map_err(|e| e.to_string())
    } else {
        let mut doc: toml::Table =
            toml::from_str(text).map_err(|e| AlgoError::Config(format!("{name}: {e}")))?;
        apply_overrides(&mut doc, sets)?;
        doc.try_into::<T>().map_err(|e| e.to_string())
    };
    parsed.map_err(|m| AlgoError::Config(format!("{name}: {}", m.trim())))
}
