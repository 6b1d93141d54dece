//! What the trainer optimises: an [`Objective`] turns a micro-batch of examples into a loss and
//! its metrics. DPO/IPO/SLiC/robust ([`crate::dap::Dap`]), SFT ([`crate::sft`]) and the
//! reward model's Bradley-Terry loss ([`crate::reward_model`]) implement it.

use bpo_model::burn::tensor::Tensor;

use crate::error::AlgoError;
use crate::metrics::MetricsRecord;
use crate::trainer::policy::Policy;

/// A training objective over examples addressed by index.
pub trait Objective<M> {
    /// The length of every training example in tokens (for length bucketing).
    fn lengths(&self) -> Vec<usize>;

    /// How much a micro-batch counts in its step's average (examples or tokens).
    fn weight(&self, indices: &[usize]) -> f64;

    /// The loss of `policy` on the examples `indices` (a mean over the micro-batch's weight),
    /// its metrics (with a `loss` entry) and the number of tokens processed.
    fn loss(
        &mut self,
        policy: &M,
        indices: &[usize],
    ) -> Result<(Tensor<1>, MetricsRecord, usize), AlgoError>;

    /// Dev metrics (keys prefixed `dev/`) of the (merged) policy, when there is dev data.
    fn evaluate(&mut self, _policy: &Policy<M>) -> Result<Option<MetricsRecord>, AlgoError> {
        Ok(None)
    }

    /// Called after every optimizer step (the EMA reference follows the policy here).
    fn after_step(&mut self, _policy: &Policy<M>) {}

    /// A model the objective keeps as state (the EMA reference), checkpointed with the run.
    fn state_model(&mut self) -> Option<&mut M> {
        None
    }
}

/// The mean of metrics records weighted by their `f64` weights (keys missing from a record
/// count as 0 there).
pub fn weighted_mean(parts: &[(MetricsRecord, f64)]) -> MetricsRecord {
    let total: f64 = parts.iter().map(|(_, w)| w).sum();
    let mut out = MetricsRecord::new();
    for (record, w) in parts {
        for (k, v) in record {
            *out.entry(k.clone()).or_default() += v * w / total.max(f64::MIN_POSITIVE);
        }
    }
    out
}

/// The plain mean of metrics records (one per ensemble member).
pub fn mean_record(parts: &[MetricsRecord]) -> MetricsRecord {
    let mut out = MetricsRecord::new();
    for part in parts {
        for (k, v) in part {
            *out.entry(k.clone()).or_default() += v / parts.len() as f64;
        }
    }
    out
}
