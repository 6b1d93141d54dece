//! Training batches of pairs, and length-bucketed, seeded batch order.

use bpo_model::{SequenceBatch, TokenBatch};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::error::DataError;
use crate::tokenize::TokenizedPair;

/// Pairs stacked for one forward pass: rows `0..n` hold the chosen responses and rows
/// `n..2n` the rejected ones, each after its prompt, right-padded, with response masks.
#[derive(Debug, Clone, PartialEq)]
pub struct PairBatch {
    /// `2 * num_pairs` prompt + response rows.
    pub sequences: SequenceBatch,
    /// Number of pairs.
    pub num_pairs: usize,
    /// Per-token behavior log-probs of every row, when every pair carries them.
    pub behavior_logps: Option<Vec<Vec<f32>>>,
}

impl PairBatch {
    /// Stacks `pairs` (chosen rows first, then rejected rows).
    pub fn new(pairs: &[TokenizedPair], pad_id: u32) -> Result<Self, DataError> {
        let rows: Vec<(Vec<u32>, Vec<u32>)> = pairs
            .iter()
            .map(|p| (p.prompt.clone(), p.chosen.clone()))
            .chain(pairs.iter().map(|p| (p.prompt.clone(), p.rejected.clone())))
            .collect();
        let behavior_logps = pairs
            .iter()
            .map(|p| p.chosen_logps.clone())
            .chain(pairs.iter().map(|p| p.rejected_logps.clone()))
            .collect::<Option<Vec<_>>>();
        Ok(PairBatch {
            sequences: SequenceBatch::new(&rows, pad_id)?,
            num_pairs: pairs.len(),
            behavior_logps,
        })
    }

    /// Summed behavior log-probs per row (`2 * num_pairs`), when present.
    pub fn behavior_logp_sums(&self) -> Option<Vec<f32>> {
        self.behavior_logps
            .as_ref()
            .map(|rows| rows.iter().map(|r| r.iter().sum()).collect())
    }

    /// Number of padding tokens in the batch (what bucketing saves).
    pub fn padding_tokens(&self) -> usize {
        self.sequences.tokens.mask.iter().filter(|m| !**m).count()
    }
}

/// Prompts left-padded for generation.
pub fn prompt_batch(prompts: &[Vec<u32>], pad_id: u32) -> TokenBatch {
    TokenBatch::padded(prompts, pad_id, bpo_model::PaddingSide::Left)
}

/// Batches of record indices with similar lengths, in a seeded random order.
///
/// Indices are shuffled, cut into pools of `batch_size * pool_batches`, sorted by length within
/// each pool, cut into batches, and the batches shuffled. The same seed gives the same batches.
pub fn bucketed_batches(
    lengths: &[usize],
    batch_size: usize,
    pool_batches: usize,
    seed: u64,
) -> Vec<Vec<usize>> {
    let batch_size = batch_size.max(1);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.shuffle(&mut rng);
    let mut batches: Vec<Vec<usize>> = Vec::new();
    for pool in order.chunks(batch_size * pool_batches.max(1)) {
        let mut pool = pool.to_vec();
        pool.sort_by_key(|&i| (lengths[i], i));
        batches.extend(pool.chunks(batch_size).map(<[usize]>::to_vec));
    }
    batches.shuffle(&mut rng);
    batches
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(p: usize, c: usize, r: usize) -> TokenizedPair {
        TokenizedPair {
            prompt: vec![1; p],
            chosen: vec![2; c],
            rejected: vec![3; r],
            chosen_logps: Some(vec![-0.5; c]),
            rejected_logps: Some(vec![-1.0; r]),
            truncated: false,
        }
    }

    #[test]
    fn masks_select_exactly_the_response_tokens() {
        let batch = PairBatch::new(&[pair(2, 3, 1), pair(1, 1, 4)], 0).unwrap();
        assert_eq!(batch.sequences.tokens.batch_size, 4);
        let (start, width) = batch.sequences.response_window();
        let (targets, mask) = batch.sequences.window_targets();
        for row in 0..4 {
            let selected: Vec<i32> = (0..width)
                .filter(|&c| mask[row * width + c] == 1.0)
                .map(|c| targets[row * width + c])
                .collect();
            let want = match row {
                0 => vec![2; 3],
                1 => vec![2; 1],
                2 => vec![3; 1],
                _ => vec![3; 4],
            };
            assert_eq!(selected, want, "row {row} (window start {start})");
        }
        assert_eq!(
            batch.behavior_logp_sums(),
            Some(vec![-1.5, -0.5, -1.0, -4.0])
        );
    }

    #[test]
    fn bucketing_is_seeded_complete_and_cuts_padding() {
        let lengths: Vec<usize> = (0..200).map(|i| (i * 37) % 97 + 1).collect();
        let a = bucketed_batches(&lengths, 8, 8, 1);
        assert_eq!(a, bucketed_batches(&lengths, 8, 8, 1));
        assert_ne!(a, bucketed_batches(&lengths, 8, 8, 2));
        let mut all: Vec<usize> = a.iter().flatten().copied().collect();
        all.sort();
        assert_eq!(all, (0..200).collect::<Vec<_>>());
        let padding = |batches: &[Vec<usize>]| -> usize {
            batches
                .iter()
                .map(|b| {
                    let max = b.iter().map(|&i| lengths[i]).max().unwrap();
                    b.iter().map(|&i| max - lengths[i]).sum::<usize>()
                })
                .sum()
        };
        let random = bucketed_batches(&lengths, 8, 1, 1);
        assert!(
            padding(&a) * 2 < padding(&random),
            "{} vs {}",
            padding(&a),
            padding(&random)
        );
    }
}
