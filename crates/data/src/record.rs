//! Records: preference pairs and prompts, in TRL's column names, plain or conversational.

use std::collections::BTreeMap;

use bpo_model::{ChatMessage, Tokenizer};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{DataError, FieldError};

/// Text of a prompt or response: a plain string, or chat messages (TRL's conversational form).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Content {
    /// Plain text.
    Text(String),
    /// A list of `{role, content}` messages.
    Chat(Vec<ChatMessage>),
}

impl Content {
    /// Plain text content.
    pub fn text(s: impl Into<String>) -> Self {
        Content::Text(s.into())
    }

    /// The text a prompt becomes: itself, or the conversation rendered with the tokenizer's
    /// chat template and an open assistant turn.
    pub fn render_prompt(&self, tokenizer: &Tokenizer) -> Result<String, DataError> {
        match self {
            Content::Text(s) => Ok(s.clone()),
            Content::Chat(messages) => Ok(tokenizer.apply_chat_template(messages, true)?),
        }
    }

    /// The text a response becomes: itself, or the contents of its messages joined by newlines
    /// (the end-of-turn token is added at tokenisation).
    pub fn render_response(&self) -> String {
        match self {
            Content::Text(s) => s.clone(),
            Content::Chat(messages) => messages
                .iter()
                .map(|m| m.content.as_str())
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }

    /// A stable key for the content (the text, or the messages as JSON), used for splits.
    pub fn key(&self) -> String {
        match self {
            Content::Text(s) => s.clone(),
            Content::Chat(m) => serde_json::to_string(m).unwrap_or_default(),
        }
    }

    /// Number of characters of the rendered text.
    pub fn char_len(&self) -> usize {
        match self {
            Content::Text(s) => s.chars().count(),
            Content::Chat(m) => m.iter().map(|m| m.content.chars().count()).sum(),
        }
    }

    fn is_chat(&self) -> bool {
        matches!(self, Content::Chat(_))
    }
}

/// What online training records about a pair: annotator scores, which policy version sampled
/// it, and the exact tokens with their behavior log-probs, so a pair file replays exactly.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairMeta {
    /// Annotator score of the chosen response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chosen_score: Option<f64>,
    /// Annotator score of the rejected response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected_score: Option<f64>,
    /// Version (phase) of the behavior model that sampled both responses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behavior_version: Option<u64>,
    /// Prompt token ids as sampled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_ids: Option<Vec<u32>>,
    /// Chosen response token ids as sampled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chosen_ids: Option<Vec<u32>>,
    /// Rejected response token ids as sampled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected_ids: Option<Vec<u32>>,
    /// Behavior log-prob of every chosen token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chosen_logps: Option<Vec<f32>>,
    /// Behavior log-prob of every rejected token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected_logps: Option<Vec<f32>>,
    /// Anything else (free-form provenance).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, Value>,
}

impl PairMeta {
    /// True when nothing is recorded.
    pub fn is_empty(&self) -> bool {
        *self == PairMeta::default()
    }

    fn validate(&self) -> Result<(), FieldError> {
        let check = |ids: &Option<Vec<u32>>, logps: &Option<Vec<f32>>, which: &str| {
            if let (Some(ids), Some(logps)) = (ids, logps)
                && ids.len() != logps.len()
            {
                return Err(FieldError::field(
                    &format!("meta.{which}_logps"),
                    format!(
                        "has {} values for {} tokens in meta.{which}_ids",
                        logps.len(),
                        ids.len()
                    ),
                ));
            }
            if let Some(logps) = logps
                && logps.iter().any(|v| !v.is_finite() || *v > 0.0)
            {
                return Err(FieldError::field(
                    &format!("meta.{which}_logps"),
                    "log-probabilities must be finite and <= 0",
                ));
            }
            Ok(())
        };
        check(&self.chosen_ids, &self.chosen_logps, "chosen")?;
        check(&self.rejected_ids, &self.rejected_logps, "rejected")
    }
}

/// A preference pair: for `prompt`, `chosen` is preferred over `rejected`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreferencePair {
    /// The prompt.
    pub prompt: Content,
    /// The preferred response.
    pub chosen: Content,
    /// The dispreferred response.
    pub rejected: Content,
    /// Provenance (scores, behavior version and log-probs).
    #[serde(default, skip_serializing_if = "PairMeta::is_empty")]
    pub meta: PairMeta,
}

/// A prompt to sample from, with an optional human reference response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptRecord {
    /// The prompt.
    pub prompt: Content,
    /// A human-written response (win rates are measured against it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<Content>,
    /// Free-form metadata (source, genre, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, Value>,
}

/// A record type the readers and writers handle.
pub trait Record: Sized {
    /// The fields (columns) the record reads; others are ignored (a Parquet reader reads only
    /// these columns).
    const FIELDS: &'static [&'static str];
    /// The column a columnar file (Parquet) with `columns` lacks for this record type, if any.
    fn missing_column(columns: &[&str]) -> Option<&'static str>;
    /// Parses one JSON value, naming the field at fault.
    fn from_json(value: Value) -> Result<Self, FieldError>;
    /// The JSON form written to files.
    fn to_json(&self) -> Value;
}

fn object(value: Value) -> Result<Map<String, Value>, FieldError> {
    match value {
        Value::Object(map) => Ok(map),
        other => Err(FieldError::record(format!(
            "expected a JSON object, found {}",
            kind(&other)
        ))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn content(map: &mut Map<String, Value>, field: &str) -> Result<Option<Content>, FieldError> {
    let Some(value) = map.remove(field) else {
        return Ok(None);
    };
    match value {
        Value::Null => Ok(None),
        Value::String(s) if s.trim().is_empty() => Err(FieldError::field(field, "is empty")),
        Value::String(s) => Ok(Some(Content::Text(s))),
        Value::Array(items) => {
            if items.is_empty() {
                return Err(FieldError::field(field, "is an empty list of messages"));
            }
            let mut messages = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                let at = |what: &str| {
                    FieldError::field(&format!("{field}[{i}].{what}"), "must be a string")
                };
                let Value::Object(mut m) = item else {
                    return Err(FieldError::field(
                        &format!("{field}[{i}]"),
                        "must be a {role, content} message object",
                    ));
                };
                // `shift_remove` keeps the other fields in the data's order.
                let role = match m.shift_remove("role") {
                    Some(Value::String(r)) if !r.is_empty() => r,
                    Some(Value::String(_)) => {
                        return Err(FieldError::field(&format!("{field}[{i}].role"), "is empty"));
                    }
                    Some(_) => return Err(at("role")),
                    None => {
                        return Err(FieldError::field(
                            &format!("{field}[{i}].role"),
                            "is missing",
                        ));
                    }
                };
                let calls = m.get("tool_calls").is_some_and(|c| !c.is_null());
                let content = match m.shift_remove("content") {
                    Some(Value::String(c)) => c,
                    // A turn that only calls tools may have no text (OpenAI's and TRL's form).
                    None | Some(Value::Null) if calls => String::new(),
                    Some(Value::Null) | None => {
                        return Err(FieldError::field(
                            &format!("{field}[{i}].content"),
                            "is missing",
                        ));
                    }
                    Some(_) => return Err(at("content")),
                };
                // The other fields (`tool_calls`, `name`, ...) go to the chat template; a null
                // one is a field the message lacks (a Parquet struct member this row leaves out).
                m.retain(|_, v| !v.is_null());
                messages.push(ChatMessage {
                    role,
                    content,
                    extra: m,
                });
            }
            Ok(Some(Content::Chat(messages)))
        }
        other => Err(FieldError::field(
            field,
            format!(
                "must be a string or a list of messages, found {}",
                kind(&other)
            ),
        )),
    }
}

fn required(map: &mut Map<String, Value>, field: &str) -> Result<Content, FieldError> {
    let why = match map.get(field) {
        Some(Value::Null) => "is null",
        _ => "is missing",
    };
    content(map, field)?.ok_or_else(|| FieldError::field(field, why))
}

/// TRL's implicit prompt: the longest common prefix of chosen and rejected (backing off one
/// character when it ends right after a space, so the space stays with the responses).
fn split_implicit_prompt(
    chosen: Content,
    rejected: Content,
) -> Result<(Content, Content, Content), FieldError> {
    match (chosen, rejected) {
        (Content::Text(c), Content::Text(r)) => {
            let mut idx = c
                .char_indices()
                .zip(r.chars())
                .find(|((_, a), b)| a != b)
                .map(|((i, _), _)| i)
                .unwrap_or(c.len().min(r.len()));
            if idx > 0 && c[..idx].ends_with(' ') {
                idx -= 1;
            }
            let prompt = &c[..idx];
            if prompt.trim().is_empty() {
                return Err(FieldError::field(
                    "prompt",
                    "is missing, and chosen and rejected share no prefix to take it from",
                ));
            }
            let (chosen, rejected) = (&c[idx..], &r[idx..]);
            if chosen.is_empty() || rejected.is_empty() {
                return Err(FieldError::record(
                    "implicit prompt leaves an empty response",
                ));
            }
            Ok((
                Content::text(prompt),
                Content::text(chosen),
                Content::text(rejected),
            ))
        }
        (Content::Chat(c), Content::Chat(r)) => {
            let shared = c.iter().zip(&r).take_while(|(a, b)| a == b).count();
            if shared == 0 || shared == c.len() || shared == r.len() {
                return Err(FieldError::field(
                    "prompt",
                    "is missing, and chosen and rejected do not share leading messages followed by different replies",
                ));
            }
            Ok((
                Content::Chat(c[..shared].to_vec()),
                Content::Chat(c[shared..].to_vec()),
                Content::Chat(r[shared..].to_vec()),
            ))
        }
        _ => Err(FieldError::record(
            "chosen and rejected mix plain text and messages",
        )),
    }
}

impl Record for PreferencePair {
    const FIELDS: &'static [&'static str] = &["prompt", "chosen", "rejected", "meta"];

    fn missing_column(columns: &[&str]) -> Option<&'static str> {
        ["chosen", "rejected"]
            .into_iter()
            .find(|c| !columns.contains(c))
    }

    fn from_json(value: Value) -> Result<Self, FieldError> {
        let mut map = object(value)?;
        let chosen = required(&mut map, "chosen")?;
        let rejected = required(&mut map, "rejected")?;
        let (prompt, chosen, rejected) = match content(&mut map, "prompt")? {
            Some(prompt) => (prompt, chosen, rejected),
            None => split_implicit_prompt(chosen, rejected)?,
        };
        if chosen.is_chat() != rejected.is_chat() {
            return Err(FieldError::record(
                "chosen and rejected mix plain text and messages",
            ));
        }
        let meta = match map.remove("meta") {
            None | Some(Value::Null) => PairMeta::default(),
            Some(value @ Value::Object(_)) => serde_json::from_value(value)
                .map_err(|e| FieldError::field("meta", e.to_string()))?,
            Some(other) => {
                return Err(FieldError::field(
                    "meta",
                    format!("must be an object, found {}", kind(&other)),
                ));
            }
        };
        meta.validate()?;
        Ok(PreferencePair {
            prompt,
            chosen,
            rejected,
            meta,
        })
    }

    fn to_json(&self) -> Value {
        serde_json::to_value(self).expect("pairs serialise")
    }
}

impl Record for PromptRecord {
    const FIELDS: &'static [&'static str] = &["prompt", "reference", "meta"];

    fn missing_column(columns: &[&str]) -> Option<&'static str> {
        (!columns.contains(&"prompt")).then_some("prompt")
    }

    fn from_json(value: Value) -> Result<Self, FieldError> {
        let mut map = object(value)?;
        let prompt = required(&mut map, "prompt")?;
        let reference = content(&mut map, "reference")?;
        let meta = match map.remove("meta") {
            None | Some(Value::Null) => BTreeMap::new(),
            Some(Value::Object(m)) => m.into_iter().collect(),
            Some(other) => {
                return Err(FieldError::field(
                    "meta",
                    format!("must be an object, found {}", kind(&other)),
                ));
            }
        };
        Ok(PromptRecord {
            prompt,
            reference,
            meta,
        })
    }

    fn to_json(&self) -> Value {
        serde_json::to_value(self).expect("prompts serialise")
    }
}
