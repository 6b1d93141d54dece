//! Prompts of online runs and evaluations: the embedded sentiment task or a prompt file.

use std::path::Path;

use bpo_data::{Content, PromptRecord, ReadOptions, Split, read_all, sentiment_prompts};

use crate::error::AlgoError;

/// Reads prompts: `sentiment:<split>` or a JSONL/JSON file of prompt records.
pub fn load_prompts(spec: &str) -> Result<Vec<PromptRecord>, AlgoError> {
    if let Some(split) = spec.strip_prefix("sentiment:") {
        let split = match split {
            "train" => Split::Train,
            "dev" => Split::Dev,
            "test" => Split::Test,
            other => {
                return Err(AlgoError::Config(format!(
                    "prompts `sentiment:{other}`: the splits are train, dev and test"
                )));
            }
        };
        return Ok(sentiment_prompts(split)?);
    }
    let records = read_all::<PromptRecord>(Path::new(spec), ReadOptions::default())?.records;
    if records.is_empty() {
        return Err(AlgoError::Config(format!("{spec}: no prompts")));
    }
    Ok(records)
}

/// The plain text of a prompt an annotator sees (the last message of a conversation).
pub fn prompt_text(prompt: &Content) -> &str {
    match prompt {
        Content::Text(s) => s,
        Content::Chat(m) => m.last().map(|m| m.content.as_str()).unwrap_or_default(),
    }
}
