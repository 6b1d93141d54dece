//! Sequence log-probs of a pair batch under a model: the policy side of every loss.

use bpo_data::PairBatch;
use bpo_model::burn::tensor::Tensor;
use bpo_model::{Transformer, shared_prompt_logprobs};

use crate::loss::PairLogps;

/// Summed response log-probs and token counts of the chosen (first half) and rejected (second
/// half) rows of `batch`; differentiable when `model` is on an autodiff device. A pair's prompt
/// runs once for both responses ([`shared_prompt_logprobs`]).
pub fn pair_logps(model: &Transformer, batch: &PairBatch) -> PairLogps {
    let (token_logps, mask) = shared_prompt_logprobs(model, &batch.sequences);
    let sums: Tensor<1> = token_logps.sum_dim(1).squeeze_dim(1);
    let counts: Tensor<1> = mask.sum_dim(1).squeeze_dim(1);
    let n = batch.num_pairs;
    PairLogps {
        chosen: sums.clone().narrow(0, 0, n),
        rejected: sums.narrow(0, n, n),
        chosen_tokens: counts.clone().narrow(0, 0, n),
        rejected_tokens: counts.narrow(0, n, n),
    }
}
