//! Which keys each query of a forward chunk may attend to, held compactly: per row of the batch
//! which keys are real tokens, and per query an interval of keys. That is all of causality,
//! left and right padding (with holes where chunks were concatenated) and a sliding window,
//! because a row's key positions never decrease (padding repeats the row's next position).
//!
//! The fused CPU attention ([`crate::flex::attention`]) reads the intervals; every other path
//! takes the dense boolean mask built from them ([`LayerMask::dense`]), only when asked.

use std::cell::OnceCell;
use std::sync::Arc;

use burn::tensor::{Bool, Device, Tensor, TensorData};

/// The keys a chunk's queries may attend to: query `t` of row `b` attends to key `j` when `j`
/// lies in its interval and is a real token; a padding query attends to itself only (its
/// interval is just itself), which keeps its unused output finite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRanges {
    /// Rows of the batch.
    pub batch: usize,
    /// Queries (new tokens) per row.
    pub len: usize,
    /// Cached keys before the chunk's own: the chunk's query `t` is key `past + t`.
    pub past: usize,
    /// `key_real[b * keys + j]`: whether key `j` of row `b` is a real token.
    pub key_real: Vec<bool>,
    /// `query_real[b * len + t]`: whether query `t` of row `b` is a real token.
    pub query_real: Vec<bool>,
    /// `ranges[b * len + t]`: the first and last key (inclusive) query `t` of row `b` may see.
    pub ranges: Vec<(usize, usize)>,
}

impl KeyRanges {
    /// Keys per row: the cached ones and the chunk's.
    pub fn keys(&self) -> usize {
        self.past + self.len
    }

    /// The ranges of a chunk of `len` new tokens per row after `past` cached ones, from the
    /// rows' `key_real` and `key_position` over all keys (`past + len` each), with an optional
    /// sliding `window` (a query sees keys less than `window` positions before it).
    pub fn new(
        len: usize,
        key_real: &[Vec<bool>],
        key_position: &[Vec<usize>],
        window: Option<usize>,
    ) -> Self {
        let batch = key_real.len();
        let keys = key_real.first().map_or(len, Vec::len);
        let past = keys - len;
        let mut ranges = Vec::with_capacity(batch * len);
        let mut query_real = Vec::with_capacity(batch * len);
        for (real, position) in key_real.iter().zip(key_position) {
            assert!(
                real.len() == keys && position.len() == keys,
                "one length per row"
            );
            let first_real = real.iter().position(|&r| r).unwrap_or(keys);
            for query in past..keys {
                query_real.push(real[query]);
                if !real[query] {
                    ranges.push((query, query));
                    continue;
                }
                let first = match window {
                    // Positions never decrease along a row: the keys in the window are a suffix.
                    Some(window) => position[..=query]
                        .partition_point(|&p| p.saturating_add(window) <= position[query]),
                    None => 0,
                };
                ranges.push((first.max(first_real), query));
            }
        }
        KeyRanges {
            batch,
            len,
            past,
            key_real: key_real.concat(),
            query_real,
            ranges,
        }
    }

    /// Whether query `t` of row `b` attends to key `j`.
    pub fn allowed(&self, b: usize, t: usize, j: usize) -> bool {
        let (first, last) = self.ranges[b * self.len + t];
        first <= j
            && j <= last
            && (self.key_real[b * self.keys() + j] || !self.query_real[b * self.len + t])
    }

    /// The dense mask (`true`: not attended) laid out for grouped-query attention with the
    /// `group` query heads of each of `kv_heads` stacked along the query axis:
    /// `[batch, kv_heads, group * len, keys]`.
    pub fn dense(&self, (kv_heads, group): (usize, usize), device: &Device) -> Tensor<4, Bool> {
        let keys = self.keys();
        let mut mask = Vec::with_capacity(self.batch * kv_heads * group * self.len * keys);
        for b in 0..self.batch {
            let row: Vec<bool> = (0..self.len)
                .flat_map(|t| (0..keys).map(move |j| !self.allowed(b, t, j)))
                .collect();
            for _ in 0..kv_heads * group {
                mask.extend_from_slice(&row);
            }
        }
        let shape = [self.batch, kv_heads, group * self.len, keys];
        Tensor::from_data(TensorData::new(mask, shape), device)
    }
}

/// The mask one layer of a chunk uses: its key ranges, and the dense form built the first time
/// a layer asks for it (never on the fused CPU path).
#[derive(Debug, Clone)]
pub struct LayerMask {
    ranges: Arc<KeyRanges>,
    heads: (usize, usize),
    device: Device,
    dense: OnceCell<Tensor<4, Bool>>,
}

impl LayerMask {
    /// The mask of `ranges` for `heads` = (key/value heads, query heads per key/value head) on
    /// `device`.
    pub fn new(ranges: KeyRanges, heads: (usize, usize), device: &Device) -> Self {
        LayerMask {
            ranges: Arc::new(ranges),
            heads,
            device: device.clone(),
            dense: OnceCell::new(),
        }
    }

    /// The key ranges.
    pub fn ranges(&self) -> &Arc<KeyRanges> {
        &self.ranges
    }

    /// The dense mask, `[batch, kv_heads, group * len, keys]` ([`KeyRanges::dense`]).
    pub fn dense(&self) -> Tensor<4, Bool> {
        self.dense
            .get_or_init(|| self.ranges.dense(self.heads, &self.device))
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The predicate the dense mask was first written with: a real query sees the real keys at
    /// or before it and less than `window` positions back, a padding query only itself.
    fn masked(
        real: &[bool],
        position: &[usize],
        query: usize,
        key: usize,
        window: Option<usize>,
    ) -> bool {
        let window = window.unwrap_or(usize::MAX);
        if real[query] {
            !(real[key] && key <= query && position[query] - position[key] < window)
        } else {
            key != query
        }
    }

    /// Positions as `KvCache` gives them: real tokens count up, padding repeats the next one.
    fn positions(real: &[bool]) -> Vec<usize> {
        let mut next = 0;
        real.iter()
            .map(|&r| {
                let p = next;
                next += usize::from(r);
                p
            })
            .collect()
    }

    #[test]
    fn ranges_mask_exactly_what_the_dense_predicate_masks() {
        // Rows of 0/1 digits: left and right padding, holes between chunks, all padding.
        let patterns = [
            "1111111", "0001111", "1111000", "0011100", "0110110", "0000000", "1000001", "1", "0",
        ];
        for pattern in patterns {
            let real: Vec<bool> = pattern.chars().map(|c| c == '1').collect();
            for past in 0..real.len() {
                let len = real.len() - past;
                for window in [None, Some(1), Some(2), Some(3), Some(100)] {
                    let rows = [real.clone(), real.iter().map(|r| !r).collect()];
                    let row_positions = rows.iter().map(|r| positions(r)).collect::<Vec<_>>();
                    let ranges = KeyRanges::new(len, &rows, &row_positions, window);
                    assert_eq!(
                        (ranges.batch, ranges.past, ranges.keys()),
                        (2, past, real.len())
                    );
                    for (b, (row, position)) in rows.iter().zip(&row_positions).enumerate() {
                        for t in 0..len {
                            for j in 0..real.len() {
                                assert_eq!(
                                    !ranges.allowed(b, t, j),
                                    masked(row, position, past + t, j, window),
                                    "{pattern} row {b} past {past} query {t} key {j} {window:?}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn the_dense_mask_repeats_each_row_for_every_stacked_head() {
        let rows = [vec![false, true, true], vec![true, true, false]];
        let row_positions: Vec<_> = rows.iter().map(|r| positions(r)).collect();
        let ranges = KeyRanges::new(3, &rows, &row_positions, None);
        let dense = LayerMask::new(ranges.clone(), (2, 3), &Device::flex()).dense();
        assert_eq!(dense.dims(), [2, 2, 9, 3]);
        let values: Vec<bool> = dense.into_data().iter::<bool>().collect();
        for b in 0..2 {
            for stacked in 0..18 {
                let t = stacked % 3;
                for j in 0..3 {
                    assert_eq!(values[(b * 18 + stacked) * 3 + j], !ranges.allowed(b, t, j));
                }
            }
        }
    }
}
