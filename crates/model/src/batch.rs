//! Host-side token batches: padded token ids with a mask of the real (non-padding) tokens.

/// Which side of a sequence receives the padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaddingSide {
    /// Padding before the tokens (generation: the last real token ends every row).
    Left,
    /// Padding after the tokens (training and scoring).
    Right,
}

/// A rectangular batch of token ids, row-major `[batch_size, seq_len]`, with `mask[i]` true for
/// real tokens and false for padding. Any padding pattern is valid: positions are counted over
/// the real tokens of each row, so left, right and no padding give the same per-token results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenBatch {
    /// Token ids, `batch_size * seq_len` of them.
    pub ids: Vec<u32>,
    /// True where `ids` holds a real token.
    pub mask: Vec<bool>,
    /// Number of rows.
    pub batch_size: usize,
    /// Number of columns.
    pub seq_len: usize,
}

impl TokenBatch {
    /// Pads `sequences` to the longest one with `pad_id` on the given side.
    pub fn padded(sequences: &[Vec<u32>], pad_id: u32, side: PaddingSide) -> Self {
        let seq_len = sequences.iter().map(Vec::len).max().unwrap_or(0);
        let batch_size = sequences.len();
        let mut ids = Vec::with_capacity(batch_size * seq_len);
        let mut mask = Vec::with_capacity(batch_size * seq_len);
        for seq in sequences {
            let pad = seq_len - seq.len();
            let push_pad = |ids: &mut Vec<u32>, mask: &mut Vec<bool>| {
                ids.extend(std::iter::repeat_n(pad_id, pad));
                mask.extend(std::iter::repeat_n(false, pad));
            };
            if side == PaddingSide::Left {
                push_pad(&mut ids, &mut mask);
            }
            ids.extend_from_slice(seq);
            mask.extend(std::iter::repeat_n(true, seq.len()));
            if side == PaddingSide::Right {
                push_pad(&mut ids, &mut mask);
            }
        }
        TokenBatch {
            ids,
            mask,
            batch_size,
            seq_len,
        }
    }

    /// A batch of one new token per row, all real (one decoding step).
    pub fn single_step(tokens: &[u32]) -> Self {
        TokenBatch {
            ids: tokens.to_vec(),
            mask: vec![true; tokens.len()],
            batch_size: tokens.len(),
            seq_len: 1,
        }
    }

    /// The ids of row `row`, padding included.
    pub fn row(&self, row: usize) -> &[u32] {
        &self.ids[row * self.seq_len..(row + 1) * self.seq_len]
    }

    /// The mask of row `row`.
    pub fn row_mask(&self, row: usize) -> &[bool] {
        &self.mask[row * self.seq_len..(row + 1) * self.seq_len]
    }
}

/// The distinct sequences of `sequences` in order of first appearance, and for every sequence
/// the index of its distinct copy.
pub(crate) fn distinct_rows(sequences: &[Vec<u32>]) -> (Vec<Vec<u32>>, Vec<usize>) {
    let mut index: std::collections::HashMap<&[u32], usize> = std::collections::HashMap::new();
    let mut distinct = Vec::new();
    let source = sequences
        .iter()
        .map(|s| {
            *index.entry(s).or_insert_with(|| {
                distinct.push(s.clone());
                distinct.len() - 1
            })
        })
        .collect();
    (distinct, source)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn left_and_right_padding() {
        let seqs = vec![vec![1, 2, 3], vec![4]];
        let left = TokenBatch::padded(&seqs, 0, PaddingSide::Left);
        assert_eq!(left.ids, vec![1, 2, 3, 0, 0, 4]);
        assert_eq!(left.mask, vec![true, true, true, false, false, true]);
        let right = TokenBatch::padded(&seqs, 0, PaddingSide::Right);
        assert_eq!(right.ids, vec![1, 2, 3, 4, 0, 0]);
        assert_eq!(right.row_mask(1), &[true, false, false]);
    }
}
