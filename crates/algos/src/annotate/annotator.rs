//! The annotator interface: scores of (prompt, response) pairs, and the pairwise preference
//! they imply.

use serde::{Deserialize, Serialize};

use crate::error::AlgoError;

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

/// A scorer of responses. `score` takes a batch so that external judges and models can
/// amortise their cost.
pub trait Annotator {
    /// A short description for reports, naming the implementation.
    fn name(&self) -> String;

    /// One score per `(prompt, response)`, higher is better.
    fn score(&mut self, items: &[(&str, &str)]) -> Result<Vec<f64>, AlgoError>;

    /// Which of two responses to `prompt` is better.
    fn compare(
        &mut self,
        prompt: &str,
        first: &str,
        second: &str,
    ) -> Result<Preference, AlgoError> {
        let s = self.score(&[(prompt, first), (prompt, second)])?;
        Ok(Preference::from_scores(s[0], s[1]))
    }
}
