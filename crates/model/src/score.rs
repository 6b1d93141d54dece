//! Scoring: per-token log-probabilities of given responses after given prompts, batched with
//! right padding and masked to the response tokens. The tensor form is differentiable and is
//! what the training losses are built on.

use burn::tensor::{Int, Tensor, TensorData};

use crate::batch::{PaddingSide, TokenBatch, distinct_rows};
use crate::error::ModelError;
use crate::host::to_f32_vec;
use crate::logprobs::head_logprobs;
use crate::transformer::Transformer;

/// Prompt + response sequences, right-padded, with where each response starts and ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SequenceBatch {
    /// `prompt ++ response` per row.
    pub tokens: TokenBatch,
    /// Prompt length of each row.
    pub prompt_lens: Vec<usize>,
    /// Response length of each row.
    pub response_lens: Vec<usize>,
}

impl SequenceBatch {
    /// Concatenates each prompt with its response. Prompts must be non-empty.
    pub fn new(pairs: &[(Vec<u32>, Vec<u32>)], pad_id: u32) -> Result<Self, ModelError> {
        if let Some(i) = pairs.iter().position(|(p, _)| p.is_empty()) {
            return Err(ModelError::Input(format!(
                "prompt {i} is empty: a response needs a context"
            )));
        }
        let seqs: Vec<Vec<u32>> = pairs
            .iter()
            .map(|(p, r)| [p.as_slice(), r].concat())
            .collect();
        Ok(SequenceBatch {
            tokens: TokenBatch::padded(&seqs, pad_id, PaddingSide::Right),
            prompt_lens: pairs.iter().map(|(p, _)| p.len()).collect(),
            response_lens: pairs.iter().map(|(_, r)| r.len()).collect(),
        })
    }

    /// The window of predicting positions that covers every response: `(start, width)`, where
    /// column `c` of the window predicts token `start + c + 1`.
    pub fn response_window(&self) -> (usize, usize) {
        let start = self
            .prompt_lens
            .iter()
            .copied()
            .min()
            .unwrap_or(1)
            .saturating_sub(1);
        let end = self
            .prompt_lens
            .iter()
            .zip(&self.response_lens)
            .map(|(p, r)| p + r - 1)
            .max()
            .unwrap_or(start);
        (start, end.max(start) - start)
    }

    /// Target ids and response mask over the window, both `[batch, width]` row-major.
    pub fn window_targets(&self) -> (Vec<i32>, Vec<f32>) {
        let (start, width) = self.response_window();
        let rows = self.tokens.batch_size;
        let mut targets = Vec::with_capacity(rows * width);
        let mut mask = Vec::with_capacity(rows * width);
        for row in 0..rows {
            let ids = self.tokens.row(row);
            let (p, r) = (self.prompt_lens[row], self.response_lens[row]);
            for c in 0..width {
                let target = start + c + 1;
                targets.push(ids[target] as i32);
                mask.push(if target >= p && target < p + r {
                    1.0
                } else {
                    0.0
                });
            }
        }
        (targets, mask)
    }
}

/// Per-token response log-probabilities `[batch, width]` and the response mask (1.0 on response
/// tokens) over [`SequenceBatch::response_window`]. Differentiable when the model is.
/// At least one row must have a non-empty response.
pub fn response_logprobs(model: &Transformer, batch: &SequenceBatch) -> (Tensor<2>, Tensor<2>) {
    let device = model.device();
    let mut cache = model.new_cache();
    let hidden = model.forward_hidden(&batch.tokens, &mut cache);
    let (start, width) = batch.response_window();
    let rows = batch.tokens.batch_size;
    let (targets, mask) = batch.window_targets();
    let targets = Tensor::<2, Int>::from_data(TensorData::new(targets, [rows, width]), &device);
    let mask = Tensor::<2>::from_data(TensorData::new(mask, [rows, width]), &device);
    let logprobs = head_logprobs(hidden.narrow(1, start, width), model.head_weight(), targets);
    (logprobs * mask.clone(), mask)
}

/// Per-token response log-probabilities `[batch, longest response]` (column `c`: response token
/// `c`, zero past a row's end) and the response mask, with every distinct prompt run once: its
/// keys and values are then shared by each row that continues it (a preference pair's chosen
/// and rejected responses, a prompt's samples). The same numbers as [`response_logprobs`]
/// summed per row, up to rounding, for fewer tokens: a DPO batch of prompts of 32 tokens and
/// responses of 64 runs 640 positions instead of 768. Differentiable when the model is; at
/// least one row must have a non-empty response.
pub fn shared_prompt_logprobs(
    model: &Transformer,
    batch: &SequenceBatch,
) -> (Tensor<2>, Tensor<2>) {
    let device = model.device();
    let rows = batch.tokens.batch_size;
    let (prompts, responses): (Vec<Vec<u32>>, Vec<Vec<u32>>) = (0..rows)
        .map(|row| {
            let (p, r) = (batch.prompt_lens[row], batch.response_lens[row]);
            let ids = batch.tokens.row(row);
            (ids[..p].to_vec(), ids[p..p + r].to_vec())
        })
        .unzip();
    let (distinct, source) = distinct_rows(&prompts);
    let mut cache = model.new_cache();
    // Left padding: every prompt's last position is the chunk's last.
    let prompt_batch = TokenBatch::padded(&distinct, 0, PaddingSide::Left);
    let prompt_hidden = model.forward_hidden(&prompt_batch, &mut cache);
    // The last prompt position predicts each row's first response token.
    let mut last = prompt_hidden.narrow(1, prompt_batch.seq_len - 1, 1);
    if distinct.len() < rows {
        // Each row gets its prompt's cache rows and last hidden state.
        let index: Vec<i32> = source.iter().map(|&d| d as i32).collect();
        let index = Tensor::<1, Int>::from_data(TensorData::new(index, [rows]), &device);
        last = last.select(0, index);
        cache.retain_rows(&source);
    }
    let response_batch = TokenBatch::padded(&responses, 0, PaddingSide::Right);
    let width = response_batch.seq_len;
    assert!(width > 0, "no row has a response");
    let predicting = if width == 1 {
        last
    } else {
        let hidden = model.forward_hidden(&response_batch, &mut cache);
        Tensor::cat(vec![last, hidden.narrow(1, 0, width - 1)], 1)
    };
    let targets: Vec<i32> = response_batch.ids.iter().map(|&id| id as i32).collect();
    let mask: Vec<f32> = response_batch
        .mask
        .iter()
        .map(|&m| f32::from(u8::from(m)))
        .collect();
    let targets = Tensor::<2, Int>::from_data(TensorData::new(targets, [rows, width]), &device);
    let mask = Tensor::<2>::from_data(TensorData::new(mask, [rows, width]), &device);
    let logprobs = head_logprobs(predicting, model.head_weight(), targets);
    (logprobs * mask.clone(), mask)
}

/// Log-probabilities of one response.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ScoredResponse {
    /// Log-probability of each response token.
    pub logprobs: Vec<f32>,
    /// Their sum: `log p(response | prompt)`.
    pub sum: f32,
    /// Their mean (0 for an empty response).
    pub mean: f32,
}

/// Scores `(prompt, response)` pairs in batches of `batch_size`.
pub fn score(
    model: &Transformer,
    pairs: &[(Vec<u32>, Vec<u32>)],
    pad_id: u32,
    batch_size: usize,
) -> Result<Vec<ScoredResponse>, ModelError> {
    let vocab = model.config.vocab_size as u32;
    if let Some(&bad) = pairs
        .iter()
        .flat_map(|(p, r)| p.iter().chain(r))
        .find(|&&id| id >= vocab)
    {
        return Err(ModelError::Input(format!(
            "token id {bad} is outside the model's vocabulary of {vocab}"
        )));
    }
    for (i, (p, r)) in pairs.iter().enumerate() {
        model
            .config
            .check_length(p.len() + r.len(), &format_args!("prompt + response {i}"))?;
    }
    let mut out = Vec::with_capacity(pairs.len());
    for chunk in pairs.chunks(batch_size.max(1)) {
        let batch = SequenceBatch::new(chunk, pad_id)?;
        let (start, width) = batch.response_window();
        if width == 0 {
            let empty = ScoredResponse {
                logprobs: Vec::new(),
                sum: 0.0,
                mean: 0.0,
            };
            out.extend(std::iter::repeat_n(empty, chunk.len()));
            continue;
        }
        let (logps, _) = response_logprobs(model, &batch);
        let values = to_f32_vec(logps);
        for (row, (p, r)) in batch
            .prompt_lens
            .iter()
            .zip(&batch.response_lens)
            .enumerate()
        {
            let first = p - 1 - start;
            let logprobs = values[row * width + first..row * width + first + r].to_vec();
            let sum: f32 = logprobs.iter().sum();
            let mean = if *r == 0 { 0.0 } else { sum / *r as f32 };
            out.push(ScoredResponse {
                logprobs,
                sum,
                mean,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_covers_exactly_the_responses() {
        let pairs = vec![(vec![1, 2, 3], vec![4, 5]), (vec![6], vec![7, 8, 9])];
        let batch = SequenceBatch::new(&pairs, 0).unwrap();
        assert_eq!(batch.response_window(), (0, 4));
        let (targets, mask) = batch.window_targets();
        // Row 0: predicting tokens at 1..=4 = [2, 3, 4, 5]; responses are 4, 5.
        assert_eq!(&targets[..4], &[2, 3, 4, 5]);
        assert_eq!(&mask[..4], &[0.0, 0.0, 1.0, 1.0]);
        // Row 1: tokens [6, 7, 8, 9] -> targets 7, 8, 9, then padding.
        assert_eq!(&targets[4..], &[7, 8, 9, 0]);
        assert_eq!(&mask[4..], &[1.0, 1.0, 1.0, 0.0]);
    }

    #[test]
    fn empty_prompt_is_an_error() {
        assert!(SequenceBatch::new(&[(vec![], vec![1])], 0).is_err());
    }
}
