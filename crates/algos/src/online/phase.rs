//! What a phase reports (`phases.jsonl`, one typed record per phase): its collection, timing
//! and how far the policy drifted from the behavior and initial models.

use serde::{Deserialize, Serialize};

use crate::annotate::AnnotatorUsage;
use crate::online::collect::PhaseCollection;
use crate::reference::ReferenceLogps;
use crate::trainer::Progress;

/// Per-phase KL estimates and implicit-reward agreement on the phase's pairs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Drift {
    /// Mean log-ratio of behavior to initial model on the sampled responses: KL(behavior ||
    /// initial) estimated on the behavior's own samples.
    #[serde(rename = "kl/behavior_initial")]
    pub kl_behavior_initial: f64,
    /// KL(behavior || policy after the phase), estimated the same way.
    #[serde(rename = "kl/behavior_policy")]
    pub kl_behavior_policy: f64,
    /// Share of pairs whose implicit reward `log behavior - log initial` ranks them as the
    /// annotator did (ties count half).
    #[serde(rename = "agreement/before")]
    pub agreement_before: f64,
    /// The same for `log policy - log behavior` after the phase's training.
    #[serde(rename = "agreement/after")]
    pub agreement_after: f64,
}

impl Drift {
    /// The drift measured from the log-probs of the phase's pairs under the behavior model,
    /// the initial model and the policy after training.
    pub fn measure(
        behavior: &ReferenceLogps,
        initial: &ReferenceLogps,
        after: &ReferenceLogps,
    ) -> Self {
        let kl = |p: &ReferenceLogps, q: &ReferenceLogps| {
            (mean_gap(&p.chosen, &q.chosen) + mean_gap(&p.rejected, &q.rejected)) / 2.0
        };
        Drift {
            kl_behavior_initial: kl(behavior, initial),
            kl_behavior_policy: kl(behavior, after),
            agreement_before: agreement(behavior, initial),
            agreement_after: agreement(after, behavior),
        }
    }
}

/// One line of `phases.jsonl`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PhaseRecord {
    /// The phase (1-based).
    pub phase: usize,
    /// Prompts sampled (annotations spent).
    pub prompts: usize,
    /// Pairs kept and trained on.
    pub pairs: usize,
    /// Optimizer steps taken.
    pub steps: usize,
    /// Comparisons dropped because both responses were the same tokens.
    pub dropped_identical: usize,
    /// Comparisons dropped as ties.
    pub dropped_ties: usize,
    /// Mean annotator score of all samples.
    pub mean_score: f64,
    /// Mean response length in tokens.
    pub mean_response_tokens: f64,
    /// Samples generated per second.
    pub samples_per_s: f64,
    /// Training tokens per second.
    pub train_tokens_per_s: f64,
    /// Seconds sampling and annotating.
    pub sample_seconds: f64,
    /// Seconds computing reference log-probs (zero for BPO: they came with the samples).
    pub reference_seconds: f64,
    /// Seconds in optimizer steps.
    pub train_seconds: f64,
    /// Seconds computing metrics that are not part of training (KL, agreement).
    pub metric_seconds: f64,
    /// Sampling + reference + training seconds.
    pub phase_seconds: f64,
    /// KL and agreement, when `run.kl_metrics` is on.
    #[serde(flatten)]
    pub drift: Option<Drift>,
    /// Requests, retries, failures, tokens and seconds of an API judge.
    #[serde(flatten)]
    pub annotator: Option<AnnotatorUsage>,
}

impl PhaseRecord {
    /// The record of phase `phase` (1-based) from its collection, training and timings.
    pub fn new(
        phase: usize,
        collection: &PhaseCollection,
        pairs: usize,
        training: &Progress,
        reference_seconds: f64,
    ) -> Self {
        PhaseRecord {
            phase,
            prompts: collection.prompts,
            pairs,
            steps: training.steps,
            dropped_identical: collection.dropped_identical,
            dropped_ties: collection.dropped_ties,
            mean_score: collection.mean_score,
            mean_response_tokens: collection.mean_response_tokens,
            samples_per_s: collection.samples as f64 / collection.seconds.max(1e-9),
            train_tokens_per_s: training.tokens as f64 / training.seconds.max(1e-9),
            sample_seconds: collection.seconds,
            reference_seconds,
            train_seconds: training.seconds,
            metric_seconds: 0.0,
            phase_seconds: collection.seconds + reference_seconds + training.seconds,
            drift: None,
            annotator: collection.annotator.clone(),
        }
    }
}

/// Mean of `a - b`.
fn mean_gap(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) as f64).sum::<f64>() / a.len().max(1) as f64
}

/// Fraction of pairs whose implicit reward `log p(y) - log q(y)` ranks chosen above rejected
/// (ties count half).
fn agreement(p: &ReferenceLogps, q: &ReferenceLogps) -> f64 {
    let n = p.chosen.len();
    let mut total = 0.0;
    for i in 0..n {
        let margin = (p.chosen[i] - q.chosen[i]) - (p.rejected[i] - q.rejected[i]);
        total += if margin > 0.0 {
            1.0
        } else if margin == 0.0 {
            0.5
        } else {
            0.0
        };
    }
    total / n.max(1) as f64
}
