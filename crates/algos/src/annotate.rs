//! Annotators: whatever labels online samples and judges evaluations. Each scores
//! (prompt, response) pairs, higher is better; the pairwise form derives from the scores and
//! makes a tie explicit. Built-in: VADER sentiment (crate `vader_sentiment` 0.1.1), AFINN-165
//! word valence (a length-neutral second judge), a substring counter (toy tasks and tests), a
//! reward model trained by `bpo rm train`, an external judge process speaking JSON lines, and
//! weighted combinations of these.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
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

/// VADER's compound sentiment of the response, in [-1, 1] (Rust port `vader_sentiment` 0.1.1,
/// which differs slightly from Python VADER 3.3.2 on some inputs).
pub struct Vader {
    analyzer: vader_sentiment::SentimentIntensityAnalyzer<'static>,
}

impl Vader {
    /// The analyzer with its embedded lexicon.
    pub fn new() -> Self {
        Vader {
            analyzer: vader_sentiment::SentimentIntensityAnalyzer::new(),
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
        "vader (vader_sentiment 0.1.1, compound)".into()
    }

    fn score(&mut self, items: &[(&str, &str)]) -> Result<Vec<f64>, AlgoError> {
        Ok(items
            .iter()
            .map(|(_, response)| {
                self.analyzer
                    .polarity_scores(response)
                    .get("compound")
                    .copied()
                    .unwrap_or(0.0)
            })
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
        let valence: HashMap<String, f64> = include_str!("../assets/afinn-165.tsv")
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

/// An external judge: a process spawned once that reads one JSON object per line on stdin,
/// `{"prompt": ..., "response": ...}`, and answers each with one line on stdout, `{"score": x}`
/// or a bare number. A judge that exits, answers garbage or stays silent longer than the
/// timeout is an error that says so, never a silent label.
pub struct ExternalJudge {
    command: Vec<String>,
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<std::io::Result<String>>,
    stderr: Arc<Mutex<String>>,
    timeout: Duration,
}

impl ExternalJudge {
    /// Spawns `command` (program and arguments).
    pub fn spawn(command: &[String], timeout: Duration) -> Result<Self, AlgoError> {
        let Some((program, args)) = command.split_first() else {
            return Err(AlgoError::Config(
                "annotator.command must name a program".into(),
            ));
        };
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| AlgoError::Annotator(format!("cannot start judge `{program}`: {e}")))?;
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr_pipe = child.stderr.take().expect("piped stderr");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&stderr);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr_pipe).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap_or_else(|p| p.into_inner());
                s.push_str(&line);
                s.push('\n');
                if s.len() > 4096 {
                    let cut = s.len() - 4096;
                    let cut = (cut..s.len()).find(|&i| s.is_char_boundary(i)).unwrap_or(0);
                    s.drain(..cut);
                }
            }
        });
        Ok(ExternalJudge {
            command: command.to_vec(),
            child,
            stdin,
            lines,
            stderr,
            timeout,
        })
    }

    fn failure(&mut self, what: &str) -> AlgoError {
        std::thread::sleep(Duration::from_millis(50));
        let status = match self.child.try_wait() {
            Ok(Some(status)) => format!(" ({status})"),
            _ => String::new(),
        };
        let stderr = self
            .stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let stderr = if stderr.trim().is_empty() {
            String::new()
        } else {
            format!("; its stderr ends with:\n{}", stderr.trim_end())
        };
        AlgoError::Annotator(format!(
            "judge `{}` {what}{status}{stderr}",
            self.command.join(" ")
        ))
    }

    fn parse_score(line: &str) -> Option<f64> {
        let value: serde_json::Value = serde_json::from_str(line.trim()).ok()?;
        let score = match &value {
            serde_json::Value::Number(n) => n.as_f64(),
            serde_json::Value::Object(m) => m.get("score").and_then(serde_json::Value::as_f64),
            _ => None,
        }?;
        score.is_finite().then_some(score)
    }
}

impl Annotator for ExternalJudge {
    fn name(&self) -> String {
        format!("command `{}`", self.command.join(" "))
    }

    fn score(&mut self, items: &[(&str, &str)]) -> Result<Vec<f64>, AlgoError> {
        let mut request = String::new();
        for (prompt, response) in items {
            let line = serde_json::json!({"prompt": prompt, "response": response});
            request.push_str(&line.to_string());
            request.push('\n');
        }
        if self
            .stdin
            .write_all(request.as_bytes())
            .and_then(|_| self.stdin.flush())
            .is_err()
        {
            return Err(self.failure("stopped reading its input"));
        }
        let mut scores = Vec::with_capacity(items.len());
        for _ in items {
            match self.lines.recv_timeout(self.timeout) {
                Ok(Ok(line)) => match Self::parse_score(&line) {
                    Some(s) => scores.push(s),
                    None => {
                        return Err(self.failure(&format!(
                            "answered {line:?}, expected {{\"score\": <finite number>}}"
                        )));
                    }
                },
                Ok(Err(e)) => return Err(self.failure(&format!("output unreadable: {e}"))),
                Err(RecvTimeoutError::Timeout) => {
                    let _ = self.child.kill();
                    return Err(self.failure(&format!(
                        "gave no answer within {:.1} s (killed)",
                        self.timeout.as_secs_f64()
                    )));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(self.failure("exited before answering"));
                }
            }
        }
        Ok(scores)
    }
}

impl Drop for ExternalJudge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A weighted sum of annotators' scores.
pub struct Weighted {
    parts: Vec<(f64, Box<dyn Annotator>)>,
}

impl Annotator for Weighted {
    fn name(&self) -> String {
        let parts: Vec<String> = self
            .parts
            .iter()
            .map(|(w, a)| format!("{w} * {}", a.name()))
            .collect();
        parts.join(" + ")
    }

    fn score(&mut self, items: &[(&str, &str)]) -> Result<Vec<f64>, AlgoError> {
        let mut total = vec![0.0; items.len()];
        for (weight, annotator) in &mut self.parts {
            for (t, s) in total.iter_mut().zip(annotator.score(items)?) {
                *t += *weight * s;
            }
        }
        Ok(total)
    }
}

/// How to build an annotator, as written in TOML (`kind = "vader"`, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AnnotatorConfig {
    /// VADER compound sentiment of the response.
    Vader,
    /// Mean AFINN-165 valence per word of the response.
    Afinn,
    /// Occurrences of `pattern` in the response.
    Count {
        /// The substring counted.
        pattern: String,
    },
    /// An external judge process (JSON lines over stdin/stdout).
    Command {
        /// Program and arguments.
        command: Vec<String>,
        /// Seconds to wait for each answer (default 60).
        #[serde(default = "default_timeout")]
        timeout_s: f64,
    },
    /// A reward model written by `bpo rm train` (its directory).
    RewardModel {
        /// The reward model directory (`model/` and `head.json`).
        path: std::path::PathBuf,
        /// Device it runs on. Default `flex`.
        #[serde(default = "default_device")]
        device: String,
        /// Responses scored per batch. Default 16.
        #[serde(default = "default_batch")]
        batch_size: usize,
    },
    /// A weighted sum of other annotators.
    Weighted {
        /// The parts: `{ weight = 0.5, kind = "vader" }`, ...
        parts: Vec<WeightedPart>,
    },
}

fn default_timeout() -> f64 {
    60.0
}

fn default_device() -> String {
    "flex".into()
}

fn default_batch() -> usize {
    16
}

/// One term of a weighted annotator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WeightedPart {
    /// Its weight.
    pub weight: f64,
    /// The annotator.
    #[serde(flatten)]
    pub annotator: AnnotatorConfig,
}

impl AnnotatorConfig {
    /// Builds the annotator (spawning a judge process where there is one).
    pub fn build(&self) -> Result<Box<dyn Annotator>, AlgoError> {
        Ok(match self {
            AnnotatorConfig::Vader => Box::new(Vader::new()),
            AnnotatorConfig::Afinn => Box::new(Afinn::new()),
            AnnotatorConfig::Count { pattern } => Box::new(Count::new(pattern.clone())?),
            AnnotatorConfig::Command { command, timeout_s } => {
                if !(timeout_s.is_finite() && *timeout_s > 0.0) {
                    return Err(AlgoError::Config(format!(
                        "annotator.timeout_s must be positive, got {timeout_s}"
                    )));
                }
                Box::new(ExternalJudge::spawn(
                    command,
                    Duration::from_secs_f64(*timeout_s),
                )?)
            }
            AnnotatorConfig::RewardModel {
                path,
                device,
                batch_size,
            } => Box::new(crate::rm::RewardModelAnnotator::load(
                path,
                device,
                *batch_size,
            )?),
            AnnotatorConfig::Weighted { parts } => {
                if parts.is_empty() {
                    return Err(AlgoError::Config(
                        "annotator.parts of a weighted annotator is empty".into(),
                    ));
                }
                Box::new(Weighted {
                    parts: parts
                        .iter()
                        .map(|p| Ok((p.weight, p.annotator.build()?)))
                        .collect::<Result<_, AlgoError>>()?,
                })
            }
        })
    }
}

/// Label noise for experiments with an imperfect annotator: the first response wins with
/// probability `sigmoid((s1 - s2) / temperature)` (Bradley-Terry on the score gap) instead of
/// whenever its score is higher. Equal scores stay ties.
pub fn noisy_preference(s1: f64, s2: f64, temperature: f64, rng: &mut impl Rng) -> Preference {
    if s1 == s2 {
        return Preference::Tie;
    }
    let p_first = 1.0 / (1.0 + (-(s1 - s2) / temperature).exp());
    if rng.random::<f64>() < p_first {
        Preference::First
    } else {
        Preference::Second
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn vader_and_afinn_rank_sentiment() {
        let items = [
            ("", "What a wonderful, happy day."),
            ("", "This is a terrible, awful mess."),
            ("", "The table is in the room."),
        ];
        for mut annotator in [
            Box::new(Vader::new()) as Box<dyn Annotator>,
            Box::new(Afinn::new()),
        ] {
            let s = annotator.score(&items).unwrap();
            assert!(s[0] > s[2] && s[2] > s[1], "{}: {s:?}", annotator.name());
            assert_eq!(s[2], 0.0);
        }
        // AFINN: "good" = 3, "bad luck" = -2 (a phrase), four words in all.
        let afinn = Afinn::new();
        assert!((afinn.comparative("Good, bad luck today!") - (3.0 - 2.0) / 4.0).abs() < 1e-12);
    }

    #[test]
    fn pairwise_form_and_weighted_sum() {
        let mut count = Count::new("a").unwrap();
        assert_eq!(count.compare("", "aa", "a").unwrap(), Preference::First);
        assert_eq!(count.compare("", "b", "a").unwrap(), Preference::Second);
        assert_eq!(count.compare("", "xa", "ya").unwrap(), Preference::Tie);
        let config: AnnotatorConfig = toml::from_str(
            "kind = \"weighted\"\nparts = [{ weight = 2.0, kind = \"count\", pattern = \"a\" }, { weight = -1.0, kind = \"count\", pattern = \"b\" }]",
        )
        .unwrap();
        let mut weighted = config.build().unwrap();
        assert_eq!(weighted.score(&[("", "aab")]).unwrap(), vec![3.0]);
        assert!(Count::new("").is_err());
    }

    #[test]
    fn label_noise_follows_bradley_terry() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let n = 20_000;
        let first = (0..n)
            .filter(|_| noisy_preference(1.0, 0.0, 1.0, &mut rng) == Preference::First)
            .count();
        let expected = 1.0 / (1.0 + (-1.0f64).exp());
        assert!((first as f64 / n as f64 - expected).abs() < 0.015);
        assert_eq!(noisy_preference(0.5, 0.5, 1.0, &mut rng), Preference::Tie);
    }
}
