//! The annotator interface: scores of (prompt, response) pairs, and the pairwise preference
//! they imply.

use bpo_data::Content;
use serde::{Deserialize, Serialize};

use crate::error::AlgoError;
use crate::online::prompt_text;

/// The outcome of comparing two responses to one prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Preference {
    /// The first response is better.
    First,
    /// The second response is better.
    Second,
    /// Neither is better.
    Tie,
}

impl Preference {
    /// The preference a pair of scores implies (equal scores tie).
    pub fn from_scores(first: f64, second: f64) -> Self {
        if first > second {
            Preference::First
        } else if second > first {
            Preference::Second
        } else {
            Preference::Tie
        }
    }
}

/// What an annotator that calls an API spent (`phases.jsonl` records it per phase).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AnnotatorUsage {
    /// HTTP requests sent, retries included.
    #[serde(rename = "annotator/requests")]
    pub requests: u64,
    /// Of those, retries (429, 5xx, timeouts, dropped connections).
    #[serde(rename = "annotator/retries")]
    pub retries: u64,
    /// Judgments whose reply was not an allowed answer (scored NaN, dropped like ties).
    #[serde(rename = "annotator/failures")]
    pub failures: u64,
    /// Judgments read from the cache instead of asked.
    #[serde(rename = "annotator/cached")]
    pub cached: u64,
    /// Prompt tokens the API reported.
    #[serde(rename = "annotator/prompt_tokens")]
    pub prompt_tokens: u64,
    /// Completion tokens the API reported.
    #[serde(rename = "annotator/completion_tokens")]
    pub completion_tokens: u64,
    /// Seconds spent annotating.
    #[serde(rename = "annotator/seconds")]
    pub seconds: f64,
}

impl AnnotatorUsage {
    /// Adds `other`'s counts (not its seconds) to these.
    pub fn add(&mut self, other: &AnnotatorUsage) {
        self.requests += other.requests;
        self.retries += other.retries;
        self.failures += other.failures;
        self.cached += other.cached;
        self.prompt_tokens += other.prompt_tokens;
        self.completion_tokens += other.completion_tokens;
    }
}

/// A scorer of responses. `score` takes a batch so that external judges and models can
/// amortise their cost.
pub trait Annotator {
    /// A short description for reports, naming the implementation.
    fn name(&self) -> String;

    /// One score per `(prompt, response)`, higher is better.
    fn score(&mut self, items: &[(&str, &str)]) -> Result<Vec<f64>, AlgoError>;

    /// One score per `(prompt, response)` where the prompt is a record's whole prompt (a
    /// conversation keeps its turns): what online collection and evaluation call. By default
    /// [`Annotator::score`] sees the prompt's plain text (a conversation's last message);
    /// annotators that tokenise prompts (reward models) see them as their training did.
    fn score_prompts(&mut self, items: &[(&Content, &str)]) -> Result<Vec<f64>, AlgoError> {
        let texts: Vec<(&str, &str)> = items.iter().map(|(p, r)| (prompt_text(p), *r)).collect();
        self.score(&texts)
    }

    /// Which of two responses to each prompt is better, for annotators that compare rather
    /// than score (pairwise LLM judges); `None` for those that score, whose preferences follow
    /// from the scores.
    fn prefer_pairs(
        &mut self,
        _items: &[(&Content, &str, &str)],
    ) -> Option<Result<Vec<Preference>, AlgoError>> {
        None
    }

    /// The raw replies behind the last call's labels, per item (a scored response's reply; a
    /// compared pair's replies, one per order asked), for annotators that ask a model in words
    /// (LLM judges); `None` for the others.
    fn take_replies(&mut self) -> Option<Vec<Vec<String>>> {
        None
    }

    /// What the annotator spent since the last call (API judges); `None` for annotators that
    /// call nothing.
    fn take_usage(&mut self) -> Option<AnnotatorUsage> {
        None
    }

    /// Which of two responses to `prompt` is better: the annotator's own comparison when it
    /// compares ([`Annotator::prefer_pairs`]), else the order of their scores.
    fn compare(
        &mut self,
        prompt: &str,
        first: &str,
        second: &str,
    ) -> Result<Preference, AlgoError> {
        let text = Content::text(prompt);
        if let Some(preferences) = self.prefer_pairs(&[(&text, first, second)]) {
            return Ok(preferences?[0]);
        }
        let s = self.score(&[(prompt, first), (prompt, second)])?;
        Ok(Preference::from_scores(s[0], s[1]))
    }
}
