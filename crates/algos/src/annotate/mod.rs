//! Annotators: whatever labels online samples and judges evaluations. Each scores
//! (prompt, response) pairs, higher is better; the pairwise form derives from the scores and
//! makes a tie explicit. Built-in: VADER sentiment (the rules of vaderSentiment 3.3.2), AFINN-165
//! word valence (a length-neutral second judge), a substring counter (toy tasks and tests), a
//! sequence-classification reward model, an LLM judge over an OpenAI-compatible API, a remote
//! reward server (OpenRLHF's protocol), an external judge process speaking JSON lines, and
//! weighted combinations of these.

mod annotator;
mod http;
mod judge;
mod judge_cache;
mod judge_reply;
mod lexicon;
mod openai;
mod reward_model;
mod reward_server;
mod vader;

use std::time::Duration;

use bpo_data::Content;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::error::AlgoError;
pub use annotator::{Annotator, AnnotatorUsage, Preference};
pub use http::MAX_REPLY_BYTES;
pub use judge::ExternalJudge;
pub use judge_cache::Judgment;
pub use judge_reply::{parse_choice, parse_score};
pub use lexicon::{Afinn, Count, Vader};
pub use openai::{
    DEFAULT_PAIRWISE_TEMPLATE, DEFAULT_SCORE_TEMPLATE, JudgeMode, OpenAiJudge, OpenAiJudgeConfig,
};
pub use reward_model::RewardModelAnnotator;
pub use reward_server::{RewardServer, RewardServerConfig};

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
        self.sum(|annotator| annotator.score(items), items.len())
    }

    fn score_prompts(&mut self, items: &[(&Content, &str)]) -> Result<Vec<f64>, AlgoError> {
        self.sum(|annotator| annotator.score_prompts(items), items.len())
    }

    fn take_usage(&mut self) -> Option<AnnotatorUsage> {
        let mut total: Option<AnnotatorUsage> = None;
        for (_, annotator) in &mut self.parts {
            if let Some(usage) = annotator.take_usage() {
                let sum = total.get_or_insert_default();
                sum.add(&usage);
                sum.seconds += usage.seconds;
            }
        }
        total
    }
}

impl Weighted {
    /// The weighted sum of what `score` gives for each part.
    fn sum(
        &mut self,
        mut score: impl FnMut(&mut dyn Annotator) -> Result<Vec<f64>, AlgoError>,
        len: usize,
    ) -> Result<Vec<f64>, AlgoError> {
        let mut total = vec![0.0; len];
        for (weight, annotator) in &mut self.parts {
            for (t, s) in total.iter_mut().zip(score(annotator.as_mut())?) {
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
    /// An external judge process (JSON lines over stdin/stdout; each reply echoes its
    /// request's `id`, see [`ExternalJudge`]).
    Command {
        /// Program and arguments.
        command: Vec<String>,
        /// Seconds to wait for each answer (default 60).
        #[serde(default = "http::default_timeout")]
        timeout_s: f64,
    },
    /// A sequence-classification reward model (`bpo rm train`'s, or any
    /// `*ForSequenceClassification` of transformers, TRL or the Hub; one label is the reward).
    RewardModel {
        /// Its directory, or a Hub id (`ORG/NAME[@REVISION]`).
        path: std::path::PathBuf,
        /// How a (prompt, response) becomes its input: `auto` (default), `chat` or `plain`.
        #[serde(default)]
        input: crate::rm::RewardInput,
        /// The label that is the reward, for a model with several: an index (`"1"`) or a name
        /// of its `id2label`.
        #[serde(default)]
        label: Option<String>,
        /// Device it runs on. Default `auto`.
        #[serde(default = "bpo_model::device::default_spec")]
        device: String,
        /// Responses scored per batch. Default 16.
        #[serde(default = "default_batch")]
        batch_size: usize,
    },
    /// An LLM judge over an OpenAI-compatible chat-completions API (vLLM, llama.cpp, Ollama,
    /// TGI, OpenAI).
    OpenaiJudge(OpenAiJudgeConfig),
    /// A remote reward model speaking OpenRLHF's protocol (`{"query": [...]}` ->
    /// `{"rewards": [...]}`).
    RewardServer(RewardServerConfig),
    /// A weighted sum of other annotators.
    Weighted {
        /// The parts: `{ weight = 0.5, kind = "vader" }`, ...
        parts: Vec<WeightedPart>,
    },
}

/// The longest wait for a judge's answer that `timeout_s` accepts: one day.
pub const MAX_TIMEOUT_S: f64 = 86_400.0;

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
        self.build_in(None)
    }

    /// [`AnnotatorConfig::build`] for a run writing to `run_dir`, where an LLM judge keeps its
    /// cache (`judge-cache.jsonl`) unless its config names one.
    pub fn build_in(
        &self,
        run_dir: Option<&std::path::Path>,
    ) -> Result<Box<dyn Annotator>, AlgoError> {
        Ok(match self {
            AnnotatorConfig::Vader => Box::new(Vader::new()),
            AnnotatorConfig::Afinn => Box::new(Afinn::new()),
            AnnotatorConfig::Count { pattern } => Box::new(Count::new(pattern.clone())?),
            AnnotatorConfig::Command { command, timeout_s } => {
                if !(*timeout_s > 0.0 && *timeout_s <= MAX_TIMEOUT_S) {
                    return Err(AlgoError::Config(format!(
                        "annotator.timeout_s must be in (0, {MAX_TIMEOUT_S}] seconds, got {timeout_s}"
                    )));
                }
                Box::new(ExternalJudge::spawn(
                    command,
                    Duration::from_secs_f64(*timeout_s),
                )?)
            }
            AnnotatorConfig::RewardModel {
                path,
                input,
                label,
                device,
                batch_size,
            } => Box::new(RewardModelAnnotator::load_label(
                &path.to_string_lossy(),
                device,
                *batch_size,
                *input,
                label.as_deref(),
            )?),
            AnnotatorConfig::OpenaiJudge(judge) => {
                let cache = run_dir.map(|dir| dir.join("judge-cache.jsonl"));
                Box::new(OpenAiJudge::new(judge, cache.as_deref())?)
            }
            AnnotatorConfig::RewardServer(server) => {
                let cache = run_dir.map(|dir| dir.join("judge-cache.jsonl"));
                Box::new(RewardServer::new(server, cache.as_deref())?)
            }
            AnnotatorConfig::Weighted { parts } => {
                if parts.is_empty() {
                    return Err(AlgoError::Config(
                        "annotator.parts of a weighted annotator is empty".into(),
                    ));
                }
                Box::new(Weighted {
                    parts: parts
                        .iter()
                        .map(|p| Ok((p.weight, p.annotator.build_in(run_dir)?)))
                        .collect::<Result<_, AlgoError>>()?,
                })
            }
        })
    }
}

/// Label noise for experiments with an imperfect annotator: the first response wins with
/// probability `sigmoid((s1 - s2) / temperature)` (Bradley-Terry on the score gap) instead of
/// whenever its score is higher. Equal scores, and a score that is not finite, stay ties.
pub fn noisy_preference(s1: f64, s2: f64, temperature: f64, rng: &mut impl Rng) -> Preference {
    // A failed judgment (NaN) stays a tie: noise never turns it into a label.
    if s1 == s2 || !s1.is_finite() || !s2.is_finite() {
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
    fn label_noise_never_labels_a_failed_judgment() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        for _ in 0..20 {
            let p = noisy_preference(f64::NAN, 3.0, 0.5, &mut rng);
            assert_eq!(p, Preference::Tie);
        }
    }

    #[test]
    fn an_openai_judge_reads_from_toml_with_its_defaults() {
        let text = "kind = \"openai_judge\"\nbase_url = \"http://127.0.0.1:1/v1\"\nmodel = \"m\"\n";
        let config: AnnotatorConfig = toml::from_str(text).unwrap();
        let AnnotatorConfig::OpenaiJudge(judge) = config else {
            panic!("{config:?}")
        };
        assert_eq!(
            (judge.concurrency, judge.max_attempts, judge.timeout_s),
            (4, 6, 60.0)
        );
        assert_eq!((judge.mode, judge.api_key_env), (JudgeMode::Score, None));
        let typo = format!("{text}concurrence = 2\n");
        assert!(toml::from_str::<AnnotatorConfig>(&typo).is_err());
        let pairwise = format!("{text}mode = \"pairwise\"\n");
        let Ok(AnnotatorConfig::OpenaiJudge(judge)) = toml::from_str(&pairwise) else {
            panic!("pairwise")
        };
        assert!(judge.mode == JudgeMode::Pairwise && judge.both_orders);
        let unknown = format!("{text}mode = \"ranking\"\n");
        assert!(toml::from_str::<AnnotatorConfig>(&unknown).is_err());
    }

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
    fn judge_timeouts_outside_a_day_are_config_errors() {
        for timeout_s in [1e30, 0.0, -1.0, f64::NAN, f64::INFINITY] {
            let config = AnnotatorConfig::Command {
                command: vec!["cat".into()],
                timeout_s,
            };
            let err = config.build().err().expect("rejected").to_string();
            assert!(err.contains("annotator.timeout_s"), "{timeout_s}: {err}");
        }
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
