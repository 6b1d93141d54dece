//! The key/value cache of incremental decoding, and the positions and attention mask that a
//! chunk of new tokens sees given what the cache already holds.
//!
//! The full-sequence forward pass is the incremental one run on an empty cache, so training,
//! scoring and generation share one code path.

use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::batch::TokenBatch;
use crate::mask::{KeyRanges, LayerMask};

/// Cached keys and values of every layer, `[batch, kv_heads, cached_len, head_dim]` each, with
/// the padding mask and the next position of every row.
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    layers: Vec<Option<(Tensor<4>, Tensor<4>)>>,
    /// `key_real[row][j]`: whether cached key `j` of `row` is a real token.
    key_real: Vec<Vec<bool>>,
    /// `key_position[row][j]`: the position of cached key `j` of `row`.
    key_position: Vec<Vec<usize>>,
    /// Position id the next real token of each row gets.
    next_position: Vec<usize>,
}

/// What one forward chunk needs besides the token ids: their position ids `[batch, len]` and
/// which keys each query attends to ([`LayerMask`]).
#[derive(Debug, Clone)]
pub struct ChunkInputs {
    /// Token ids `[batch, len]`.
    pub ids: Tensor<2, Int>,
    /// Position ids `[batch, len]`.
    pub positions: Tensor<2, Int>,
    /// Attention mask of the full-attention layers; none when the chunk was begun without them
    /// (every layer windowed).
    pub mask: Option<LayerMask>,
    /// The mask of the sliding-window layers, when the chunk was begun with a window.
    pub window_mask: Option<LayerMask>,
}

impl ChunkInputs {
    /// The mask of a layer with sliding window `window` (`None`: full attention).
    pub fn mask_for(&self, window: Option<usize>) -> &LayerMask {
        match (window, &self.window_mask) {
            (Some(_), Some(mask)) => mask,
            _ => self
                .mask
                .as_ref()
                .expect("a chunk of a model with full-attention layers has their mask"),
        }
    }
}

impl KvCache {
    /// An empty cache for a model with `num_layers` blocks.
    pub fn new(num_layers: usize) -> Self {
        KvCache {
            layers: vec![None; num_layers],
            key_real: Vec::new(),
            key_position: Vec::new(),
            next_position: Vec::new(),
        }
    }

    /// Number of cached key positions (padding included).
    pub fn len(&self) -> usize {
        self.key_real.first().map_or(0, Vec::len)
    }

    /// True before the first chunk.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of rows the cache holds.
    pub fn batch_size(&self) -> usize {
        self.key_real.len()
    }

    /// Registers a chunk of new tokens and returns its position ids and attention masks.
    ///
    /// Positions count the real tokens of each row (padding does not advance them), so a row
    /// gets the same positions whatever padding surrounds it. A query attends to the real keys
    /// at or before itself, and with a `window` (the sliding-window layers' mask) only to those
    /// less than `window` positions before it; a padding query attends to itself only, which
    /// keeps its (unused) output finite. The full-attention mask is built only when `full`
    /// (some layer attends to every earlier key): a model whose layers all slide needs none.
    pub fn begin_chunk(
        &mut self,
        batch: &TokenBatch,
        heads: (usize, usize),
        max_position: usize,
        (window, full): (Option<usize>, bool),
        device: &Device,
    ) -> ChunkInputs {
        let full = full || window.is_none();
        let (rows, len) = (batch.batch_size, batch.seq_len);
        if self.key_real.is_empty() {
            self.key_real = vec![Vec::new(); rows];
            self.key_position = vec![Vec::new(); rows];
            self.next_position = vec![0; rows];
        }
        assert_eq!(
            self.key_real.len(),
            rows,
            "a KvCache keeps the batch size of its first chunk"
        );
        let mut positions = Vec::with_capacity(rows * len);
        for row in 0..rows {
            let real = batch.row_mask(row);
            let first = positions.len();
            for &is_real in real {
                let pos = self.next_position[row];
                if is_real {
                    // Every entry point rejects longer sequences with a message first
                    // (`ModelConfig::check_length`); a real token is never silently clamped.
                    assert!(
                        pos < max_position,
                        "a token at position {pos} is past the model's {max_position} positions"
                    );
                    self.next_position[row] += 1;
                }
                // Padding after a row's end reuses its last position (its output is unused).
                positions.push(pos.min(max_position.saturating_sub(1)) as i32);
            }
            let chunk_positions = positions[first..].iter().map(|&p| p as usize);
            self.key_real[row].extend_from_slice(real);
            self.key_position[row].extend(chunk_positions);
        }
        let mask = |window| {
            let ranges = KeyRanges::new(len, &self.key_real, &self.key_position, window);
            LayerMask::new(ranges, heads, device)
        };
        let ids: Vec<i32> = batch.ids.iter().map(|&id| id as i32).collect();
        ChunkInputs {
            ids: Tensor::from_data(TensorData::new(ids, [rows, len]), device),
            positions: Tensor::from_data(TensorData::new(positions, [rows, len]), device),
            mask: full.then(|| mask(None)),
            window_mask: window.map(|w| mask(Some(w))),
        }
    }

    /// Appends a layer's new keys and values and returns all of them, cached ones first.
    pub fn append(&mut self, layer: usize, k: Tensor<4>, v: Tensor<4>) -> (Tensor<4>, Tensor<4>) {
        let (k, v) = match self.layers[layer].take() {
            Some((past_k, past_v)) => (
                Tensor::cat(vec![past_k, k], 2),
                Tensor::cat(vec![past_v, v], 2),
            ),
            None => (k, v),
        };
        self.layers[layer] = Some((k.clone(), v.clone()));
        (k, v)
    }

    /// Keeps the given rows, in that order (a row may repeat): drops finished sequences from a
    /// batch, or copies a prompt's row to each of its samples.
    pub fn retain_rows(&mut self, rows: &[usize]) {
        let Some(device) = self.layers.iter().flatten().map(|(k, _)| k.device()).next() else {
            return;
        };
        let index: Vec<i32> = rows.iter().map(|&r| r as i32).collect();
        let index = Tensor::<1, Int>::from_data(TensorData::new(index, [rows.len()]), &device);
        for (k, v) in self.layers.iter_mut().flatten() {
            *k = k.clone().select(0, index.clone());
            *v = v.clone().select(0, index.clone());
        }
        self.key_real = rows.iter().map(|&r| self.key_real[r].clone()).collect();
        self.key_position = rows.iter().map(|&r| self.key_position[r].clone()).collect();
        self.next_position = rows.iter().map(|&r| self.next_position[r]).collect();
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::Bool;

    use super::*;
    use crate::batch::{PaddingSide, TokenBatch};

    #[test]
    fn the_full_mask_is_built_only_for_full_attention_layers() {
        let device = Device::flex();
        let batch = TokenBatch::padded(&[vec![5, 6, 7], vec![8]], 0, PaddingSide::Left);
        let begin = |masks| KvCache::new(1).begin_chunk(&batch, (1, 2), 64, masks, &device);
        // Every layer windowed: the windowed mask only.
        let windowed = begin((Some(2), false));
        assert!(windowed.mask.is_none());
        let window_mask = windowed.mask_for(Some(2)).dense();
        // Some layers full: both; the windowed one masks more (keys 2 positions back).
        let both = begin((Some(2), true));
        let masked = |m: &Tensor<4, Bool>| {
            let data = m.clone().into_data();
            data.iter::<bool>().filter(|b| *b).count()
        };
        let (full, slid) = (
            masked(&both.mask_for(None).dense()),
            masked(&both.mask_for(Some(2)).dense()),
        );
        assert!(slid > full, "{slid} {full}");
        assert_eq!(
            both.mask_for(Some(2)).dense().into_data(),
            window_mask.into_data()
        );
        // No window: the full mask, whatever is asked.
        assert!(begin((None, false)).mask.is_some());
    }
}
