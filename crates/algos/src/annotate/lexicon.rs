//! Lexicon and pattern scorers: VADER compound sentiment, AFINN-165 valence per word, and a
//! substring counter for toy tasks.

use std::collections::HashMap;

use crate::annotate::annotator::Annotator;
use crate::annotate::vader::Analyzer;
use crate::error::AlgoError;

/// VADER's compound sentiment of the response, in [-1, 1]: our implementation of the rules of
/// the reference Python vaderSentiment 3.3.2 (`polarity_scores(text)["compound"]`, rounded to 4
/// decimals like it) with its embedded lexicons.
pub struct Vader {
    analyzer: Analyzer,
}

impl Vader {
    /// The analyzer with its embedded lexicons.
    pub fn new() -> Self {
        Vader {
            analyzer: Analyzer::new(),
        }
    }
}

impl Default for Vader {
    fn default() -> Self {
        Self::new()
    }
}

impl Annotator for Vader {
    fn name(&self) -> String {
        "vader (vaderSentiment 3.3.2 rules, compound)".into()
    }

    fn score(&mut self, items: &[(&str, &str)]) -> Result<Vec<f64>, AlgoError> {
        Ok(items
            .iter()
            .map(|(_, response)| self.analyzer.compound(response))
            .collect())
    }
}

/// Mean AFINN-165 valence per word of the response (the "comparative" score of the npm
/// `sentiment` package): independent of VADER's lexicon and rules, and not rewarded by length.
pub struct Afinn {
    valence: HashMap<String, f64>,
    longest_phrase: usize,
}

impl Afinn {
    /// The embedded AFINN-165 list (3382 entries, 30 of them phrases).
    pub fn new() -> Self {
        let valence: HashMap<String, f64> = include_str!("../../assets/afinn-165.tsv")
            .lines()
            .filter_map(|line| {
                let (word, value) = line.split_once('\t')?;
                Some((word.to_owned(), value.parse().ok()?))
            })
            .collect();
        let longest_phrase = valence
            .keys()
            .map(|k| k.split(' ').count())
            .max()
            .unwrap_or(1);
        Afinn {
            valence,
            longest_phrase,
        }
    }

    /// Mean valence per word of `text`; phrases count once, longest match first.
    pub fn comparative(&self, text: &str) -> f64 {
        let lower = text.to_lowercase();
        let words: Vec<&str> = lower
            .split(|c: char| !(c.is_alphanumeric() || c == '\'' || c == '-'))
            .map(|w| w.trim_matches(|c| c == '\'' || c == '-'))
            .filter(|w| !w.is_empty())
            .collect();
        let (mut total, mut i) = (0.0, 0);
        while i < words.len() {
            let mut step = 1;
            for n in (1..=self.longest_phrase.min(words.len() - i)).rev() {
                if let Some(v) = self.valence.get(&words[i..i + n].join(" ")) {
                    total += v;
                    step = n;
                    break;
                }
            }
            i += step;
        }
        total / words.len().max(1) as f64
    }
}

impl Default for Afinn {
    fn default() -> Self {
        Self::new()
    }
}

impl Annotator for Afinn {
    fn name(&self) -> String {
        "afinn (AFINN-165, mean valence per word)".into()
    }

    fn score(&mut self, items: &[(&str, &str)]) -> Result<Vec<f64>, AlgoError> {
        Ok(items.iter().map(|(_, r)| self.comparative(r)).collect())
    }
}

/// Number of (non-overlapping) occurrences of a substring in the response: a toy task whose
/// optimum is obvious.
pub struct Count {
    pattern: String,
}

impl Count {
    /// Counts `pattern`, which must not be empty.
    pub fn new(pattern: impl Into<String>) -> Result<Self, AlgoError> {
        let pattern = pattern.into();
        if pattern.is_empty() {
            return Err(AlgoError::Config(
                "annotator.pattern must not be empty".into(),
            ));
        }
        Ok(Count { pattern })
    }
}

impl Annotator for Count {
    fn name(&self) -> String {
        format!("count({:?})", self.pattern)
    }

    fn score(&mut self, items: &[(&str, &str)]) -> Result<Vec<f64>, AlgoError> {
        Ok(items
            .iter()
            .map(|(_, r)| r.matches(self.pattern.as_str()).count() as f64)
            .collect())
    }
}
