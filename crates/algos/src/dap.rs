//! The DAP objective: DPO, IPO, SLiC, robust and length-normalised losses of pairs against a
//! reference, for offline training and every online phase alike.

use bpo_data::{PairBatch, TokenizedPair};
use bpo_model::Transformer;
use bpo_model::burn::tensor::Tensor;

use crate::error::AlgoError;
use crate::logps::pair_logps;
use crate::loss::{LossConfig, LossStats, dap_loss};
use crate::metrics::MetricsRecord;
use crate::reference::{Reference, ReferenceLogps};
use crate::trainer::{Objective, Policy};

/// Pairs, their reference and the loss.
pub struct Dap {
    /// Training pairs.
    pub pairs: Vec<TokenizedPair>,
    /// Their reference.
    pub reference: Reference,
    /// Dev pairs, with their own reference log-probs when the reference is fixed (an EMA or
    /// reference-free run scores dev pairs with the training reference).
    pub dev: Option<(Vec<TokenizedPair>, Option<ReferenceLogps>)>,
    /// The loss.
    pub loss: LossConfig,
    /// Padding token.
    pub pad_id: u32,
    /// Pairs per dev batch.
    pub eval_batch_size: usize,
}

impl Dap {
    fn batch(
        pairs: &[TokenizedPair],
        indices: &[usize],
        pad_id: u32,
    ) -> Result<PairBatch, AlgoError> {
        let chunk: Vec<TokenizedPair> = indices.iter().map(|&i| pairs[i].clone()).collect();
        Ok(PairBatch::new(&chunk, pad_id)?)
    }
}

impl Objective<Transformer> for Dap {
    fn lengths(&self) -> Vec<usize> {
        self.pairs.iter().map(TokenizedPair::longest).collect()
    }

    fn weight(&self, indices: &[usize]) -> f64 {
        indices.len() as f64
    }

    fn loss(
        &mut self,
        policy: &Transformer,
        indices: &[usize],
    ) -> Result<(Tensor<1>, MetricsRecord, usize), AlgoError> {
        let batch = Self::batch(&self.pairs, indices, self.pad_id)?;
        let tokens = batch.sequences.tokens.mask.iter().filter(|m| **m).count();
        let policy_logps = pair_logps(policy, &batch);
        let reference = self.reference.logps(indices, &batch, &policy.device())?;
        let (loss, stats) = dap_loss(&self.loss, &policy_logps, reference.as_ref());
        Ok((loss, stats.record(), tokens))
    }

    fn evaluate(
        &mut self,
        policy: &Policy<Transformer>,
    ) -> Result<Option<MetricsRecord>, AlgoError> {
        let Some((pairs, fixed)) = &self.dev else {
            return Ok(None);
        };
        let policy = policy.merged();
        let device = policy.device();
        let mut parts = Vec::new();
        let indices: Vec<usize> = (0..pairs.len()).collect();
        for chunk in indices.chunks(self.eval_batch_size) {
            let batch = Self::batch(pairs, chunk, self.pad_id)?;
            let policy_logps = pair_logps(&policy, &batch);
            let reference = match fixed {
                Some(r) => Some(r.select(chunk, &device)),
                None => self.reference.logps(chunk, &batch, &device)?,
            };
            let (_, stats) = dap_loss(&self.loss, &policy_logps, reference.as_ref());
            parts.push((stats, chunk.len()));
        }
        let mean = LossStats::weighted_mean(&parts);
        Ok(Some(
            mean.record()
                .into_iter()
                .map(|(k, v)| (format!("dev/{k}"), v))
                .collect(),
        ))
    }

    fn after_step(&mut self, policy: &Policy<Transformer>) {
        if matches!(self.reference, Reference::Ema { .. }) {
            self.reference.follow(&policy.merged());
        }
    }

    fn state_model(&mut self) -> Option<&mut Transformer> {
        self.reference.ema_model()
    }
}
