//! `bpo data stats`: counts, fields present and length distributions of a data file.

use std::collections::BTreeMap;
use std::path::Path;

use bpo_model::Tokenizer;
use serde_json::Value;

use crate::error::{DataError, FieldError};
use crate::jsonl::{ReadOptions, Reader, Skipped};
use crate::record::{Content, PreferencePair, PromptRecord, Record};

/// What kind of records a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Preference pairs (`chosen` and `rejected`).
    Pairs,
    /// Prompts (`prompt`, optional `reference`).
    Prompts,
}

/// Either record kind, as detected per file.
#[derive(Debug, Clone, PartialEq)]
pub enum AnyRecord {
    /// A preference pair.
    Pair(PreferencePair),
    /// A prompt.
    Prompt(PromptRecord),
}

impl Record for AnyRecord {
    const FIELDS: &'static [&'static str] = &["prompt", "chosen", "rejected", "reference", "meta"];

    /// A file with `chosen` or `rejected` holds pairs and needs both; else prompts.
    fn missing_column(columns: &[&str]) -> Option<&'static str> {
        if columns.contains(&"chosen") || columns.contains(&"rejected") {
            PreferencePair::missing_column(columns)
        } else {
            PromptRecord::missing_column(columns)
        }
    }

    /// A record with `chosen` or `rejected` is a pair, anything else a prompt.
    fn from_json(value: Value) -> Result<Self, FieldError> {
        let is_pair = value.get("chosen").is_some() || value.get("rejected").is_some();
        if is_pair {
            PreferencePair::from_json(value).map(AnyRecord::Pair)
        } else {
            PromptRecord::from_json(value).map(AnyRecord::Prompt)
        }
    }

    fn to_json(&self) -> Value {
        match self {
            AnyRecord::Pair(p) => p.to_json(),
            AnyRecord::Prompt(p) => p.to_json(),
        }
    }
}

/// Summary of a length distribution.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Lengths {
    /// Shortest.
    pub min: usize,
    /// Median.
    pub median: usize,
    /// Mean.
    pub mean: f64,
    /// 95th percentile.
    pub p95: usize,
    /// Longest.
    pub max: usize,
}

impl Lengths {
    fn of(mut values: Vec<usize>) -> Option<Self> {
        if values.is_empty() {
            return None;
        }
        values.sort_unstable();
        let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
        Some(Lengths {
            min: values[0],
            median: at(0.5),
            mean: values.iter().sum::<usize>() as f64 / values.len() as f64,
            p95: at(0.95),
            max: values[values.len() - 1],
        })
    }
}

/// Statistics of one file.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Stats {
    /// Valid records.
    pub records: usize,
    /// Pair records.
    pub pairs: usize,
    /// Prompt records.
    pub prompts: usize,
    /// How many records have each field (`prompt`, `chosen`, `rejected`, `reference`, `meta.*`).
    pub fields: BTreeMap<String, usize>,
    /// Records in the conversational (messages) form.
    pub conversational: usize,
    /// `chars` or `tokens`.
    pub unit: String,
    /// Length distribution per field.
    pub lengths: BTreeMap<String, Lengths>,
    /// Skipped records (with `skip_invalid`).
    pub skipped: Vec<Skipped>,
}

/// The length of a prompt (`response_to` none) or of a response to the prompt `response_to`.
fn length(
    content: &Content,
    tokenizer: Option<&Tokenizer>,
    response_to: Option<&Content>,
) -> Result<usize, DataError> {
    let ids = match (tokenizer, response_to) {
        (None, _) => return Ok(content.char_len()),
        (Some(tok), None) => crate::tokenize::tokenize_prompt_content(content, tok)?,
        (Some(tok), Some(prompt)) => crate::tokenize::tokenize_response(prompt, content, tok)?,
    };
    Ok(ids.len())
}

/// Reads `path` and summarises it; lengths in tokens of `tokenizer` when given, else in characters.
pub fn stats(
    path: &Path,
    tokenizer: Option<&Tokenizer>,
    options: ReadOptions,
) -> Result<Stats, DataError> {
    let mut reader = Reader::<AnyRecord>::open(path, options)?;
    let mut fields: BTreeMap<String, usize> = BTreeMap::new();
    let mut lengths: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let (mut pairs, mut prompts, mut conversational) = (0, 0, 0);
    let mut count = |name: &str| *fields.entry(name.to_owned()).or_default() += 1;
    for record in reader.by_ref() {
        let mut add = |name: &str, content: &Content, response_to: Option<&Content>| {
            lengths.entry(name.to_owned()).or_default().push(length(
                content,
                tokenizer,
                response_to,
            )?);
            Ok::<(), DataError>(())
        };
        match record? {
            AnyRecord::Pair(p) => {
                pairs += 1;
                conversational += matches!(p.chosen, Content::Chat(_)) as usize;
                add("prompt", &p.prompt, None)?;
                add("chosen", &p.chosen, Some(&p.prompt))?;
                add("rejected", &p.rejected, Some(&p.prompt))?;
                for f in ["prompt", "chosen", "rejected"] {
                    count(f);
                }
                if let Value::Object(meta) = serde_json::to_value(&p.meta).unwrap_or_default() {
                    for key in meta.keys() {
                        count(&format!("meta.{key}"));
                    }
                }
            }
            AnyRecord::Prompt(p) => {
                prompts += 1;
                conversational += matches!(p.prompt, Content::Chat(_)) as usize;
                add("prompt", &p.prompt, None)?;
                count("prompt");
                if let Some(r) = &p.reference {
                    add("reference", r, Some(&p.prompt))?;
                    count("reference");
                }
                for key in p.meta.keys() {
                    count(&format!("meta.{key}"));
                }
            }
        }
    }
    Ok(Stats {
        records: pairs + prompts,
        pairs,
        prompts,
        fields,
        conversational,
        unit: if tokenizer.is_some() {
            "tokens"
        } else {
            "chars"
        }
        .into(),
        lengths: lengths
            .into_iter()
            .filter_map(|(k, v)| Lengths::of(v).map(|l| (k, l)))
            .collect(),
        skipped: reader.skipped().to_vec(),
    })
}
