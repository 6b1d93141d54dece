//! Weights packed for products with a few activation rows (a decoding step: 1 row per
//! sequence): `y = x @ w` for `x` `[m, k]` with at most [`MAX_ROWS`] rows.
//!
//! Such a product streams the whole weight from memory for little arithmetic. Read in place,
//! a row-major `[k, n]` weight serves it badly: a kernel that keeps a block of outputs in
//! registers walks down a strip of columns whose rows lie a weight row apart (no hardware
//! prefetch across them, and where the row stride is a multiple of 2 or 4 KiB, as for
//! SmolLM2's 1536-wide MLP and 49152-wide head, all of them fall into a few sets of the L1
//! cache), and a kernel that streams whole rows needs partial sums per thread. Packed, the
//! weight is a sequence of panels of [`PANEL`] columns, each panel's `k` rows contiguous
//! (`[n / 64, k, 64]`, the last panel padded with zeros): every thread streams its own panels
//! front to back, and a panel (147 KiB for 576 rows) stays in the L2 cache while every block
//! of output rows walks down it. (Tiles of 64 or 128 rows kept in L1 were slower, 9-12% at 32
//! rows, measured with `benches/decode_products.rs`.) Several weights that read the same input
//! (q, k, v; gate, up) pack side by side into one, so that they make one product; a model's
//! weights pack into one allocation ([`PackedWeight::pack_all`], on huge pages: `pages.rs`).
//! The panels split over the product team (`team.rs`), the kernels are in `kernels.rs`.
//!
//! Each output is a sum over `p = 0..k` in order, computed by one thread: the numbers do not
//! depend on the thread count. `benches/decode_products.rs` times the products on SmolLM2's
//! shapes.

use std::sync::{Arc, OnceLock};

use super::kernels::Kernel;
use super::pages::PageMemory;
use super::team;

/// Output columns per panel: four AVX-512 vectors.
pub(super) const PANEL: usize = 64;
/// The most activation rows a packed product takes; larger products are compute-bound, and
/// there the `gemm` crate's kernels are faster.
pub const MAX_ROWS: usize = 64;

/// A `[k, n]` weight packed into panels of 64 columns (see the module doc), in memory it may
/// share with the other weights it was packed with ([`PackedWeight::pack_all`]).
#[derive(Debug, Clone)]
pub struct PackedWeight {
    memory: Arc<PageMemory>,
    /// Where its panels start in `memory`.
    start: usize,
    k: usize,
    n: usize,
}

/// A weight to pack, as row-major values.
#[derive(Debug, Clone)]
pub enum Unpacked<'a> {
    /// Weights `[k, n_i]` (`(values, n_i)`) that read the same input, side by side as one
    /// `[k, sum n_i]`.
    SideBySide {
        /// Each weight's values and width.
        parts: Vec<(&'a [f32], usize)>,
        /// Their input width.
        k: usize,
    },
    /// The `[k, n]` weight whose transpose `[n, k]` `values` holds (a tied output head is the
    /// token embedding transposed).
    Transposed {
        /// The transpose's values.
        values: &'a [f32],
        /// Input width.
        k: usize,
        /// Output width.
        n: usize,
    },
}

impl Unpacked<'_> {
    /// `(k, n)` of the packed weight; panics when the values do not have that shape.
    fn shape(&self) -> (usize, usize) {
        match self {
            Unpacked::SideBySide { parts, k } => {
                for (i, (values, n)) in parts.iter().enumerate() {
                    assert_eq!(values.len(), k * n, "part {i} is not [{k}, {n}]");
                }
                (*k, parts.iter().map(|(_, n)| n).sum())
            }
            Unpacked::Transposed { values, k, n } => {
                assert_eq!(values.len(), n * k, "the transpose is not [{n}, {k}]");
                (*k, *n)
            }
        }
    }

    /// Writes the panel of columns from `c0` into `out` (`[k, PANEL]`, zeros).
    fn fill_panel(&self, c0: usize, out: &mut [f32]) {
        match *self {
            Unpacked::SideBySide { ref parts, k } => {
                let mut offset = 0;
                for &(values, width) in parts {
                    let (lo, hi) = (c0.max(offset), (c0 + PANEL).min(offset + width));
                    if lo < hi {
                        for p in 0..k {
                            out[p * PANEL + lo - c0..p * PANEL + hi - c0].copy_from_slice(
                                &values[p * width + lo - offset..p * width + hi - offset],
                            );
                        }
                    }
                    offset += width;
                }
            }
            Unpacked::Transposed { values, k, n } => {
                let columns = values[c0 * k..(c0 + PANEL).min(n) * k].chunks_exact(k.max(1));
                for (c, column) in columns.enumerate() {
                    for (p, &value) in column.iter().enumerate() {
                        out[p * PANEL + c] = value;
                    }
                }
            }
        }
    }
}

impl PackedWeight {
    /// Packs `weights` one after the other into one allocation (on huge pages where the system
    /// gives them, `PageMemory`), every panel in parallel: a decoding step streams them in
    /// this order.
    pub fn pack_all(weights: &[Unpacked]) -> Vec<PackedWeight> {
        let shapes: Vec<(usize, usize)> = weights.iter().map(Unpacked::shape).collect();
        // Every panel as (weight, first column), and its length.
        let panels: Vec<(usize, usize)> = shapes
            .iter()
            .enumerate()
            .flat_map(|(i, &(_, n))| (0..n.div_ceil(PANEL)).map(move |p| (i, p * PANEL)))
            .collect();
        let lengths: Vec<usize> = panels.iter().map(|&(i, _)| shapes[i].0 * PANEL).collect();
        let memory = Arc::new(PageMemory::filled(&lengths, |panel, out| {
            let (i, c0) = panels[panel];
            weights[i].fill_panel(c0, out);
        }));
        let mut start = 0;
        shapes
            .into_iter()
            .map(|(k, n)| {
                let weight = PackedWeight {
                    memory: memory.clone(),
                    start,
                    k,
                    n,
                };
                start += n.div_ceil(PANEL) * k * PANEL;
                weight
            })
            .collect()
    }

    /// Packs row-major weights `[k, n_i]` (`(values, n_i)`) side by side, as one `[k, sum n_i]`.
    #[cfg(test)]
    pub(crate) fn side_by_side(parts: &[(&[f32], usize)], k: usize) -> Self {
        let parts = parts.to_vec();
        Self::pack_one(Unpacked::SideBySide { parts, k })
    }

    /// Packs the `[k, n]` weight whose transpose `values` holds row-major (`[n, k]`).
    #[cfg(test)]
    fn from_transposed(values: &[f32], k: usize, n: usize) -> Self {
        Self::pack_one(Unpacked::Transposed { values, k, n })
    }

    #[cfg(test)]
    fn pack_one(weight: Unpacked) -> Self {
        Self::pack_all(&[weight]).pop().expect("one weight")
    }

    /// The panels, `[n / PANEL, k, PANEL]`.
    fn panels(&self) -> &[f32] {
        &self.memory[self.start..self.start + self.n.div_ceil(PANEL) * self.k * PANEL]
    }

    /// Input width `k`.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Output width `n`.
    pub fn n(&self) -> usize {
        self.n
    }

    /// `x @ w` for `x` `[m, k]` row-major (`m <= MAX_ROWS`), as `[m, n]` row-major; the panels
    /// split over the threads of the product team (`team.rs`).
    pub fn product(&self, x: &[f32], m: usize) -> Vec<f32> {
        self.product_with(Kernel::detect(), x, m, team::size())
    }

    /// The product in `parts` runs of whole panels.
    fn product_with(&self, kernel: Kernel, x: &[f32], m: usize, parts: usize) -> Vec<f32> {
        let (k, n) = (self.k, self.n);
        assert!(
            m <= MAX_ROWS,
            "a packed product takes at most {MAX_ROWS} rows, not {m}"
        );
        assert_eq!(x.len(), m * k, "x is not [{m}, {k}]");
        let panels = n.div_ceil(PANEL);
        let parts = parts.clamp(1, panels.max(1));
        let per_part = panels.div_ceil(parts).max(1);
        let ranges: Vec<(usize, usize)> = (0..parts)
            .map(|t| ((t * per_part).min(panels), ((t + 1) * per_part).min(panels)))
            .filter(|(first, end)| first < end)
            .collect();
        // Each part fills `[m, its panels * PANEL]`, then the columns that exist are copied.
        let parts: Vec<OnceLock<Vec<f32>>> = ranges.iter().map(|_| OnceLock::new()).collect();
        team::run(ranges.len(), &|part| {
            let (first, end) = ranges[part];
            let width = (end - first) * PANEL;
            let mut out = vec![0.0; m * width];
            let panels = &self.panels()[first * k * PANEL..end * k * PANEL];
            kernel.panels(x, m, k, panels, &mut out);
            parts[part].set(out).expect("each part runs once");
        });
        let parts = parts
            .into_iter()
            .map(|p| p.into_inner().expect("every part ran"));
        let mut y = vec![0.0; m * n];
        for (&(first, end), part) in ranges.iter().zip(parts) {
            let (c0, width) = (first * PANEL, (end - first) * PANEL);
            let used = (end * PANEL).min(n) - c0;
            for j in 0..m {
                y[j * n + c0..j * n + c0 + used]
                    .copy_from_slice(&part[j * width..j * width + used]);
            }
        }
        y
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bpo_testkit::{hashed_values, max_abs_diff, reference_product};

    #[test]
    fn every_kernel_equals_the_reference_product_for_any_shape_and_part_count() {
        for (m, k, n) in [
            (1, 1, 1),
            (1, 7, 3),
            (2, 130, 65),
            (5, 64, 128),
            (6, 65, 700),
            (7, 200, 64),
            (17, 5, 33),
            (32, 96, 700),
            (41, 1, 31),
            (64, 576, 97),
        ] {
            let (x, w) = (hashed_values(m * k, 1), hashed_values(k * n, 2));
            let expected = reference_product(&x, &w, m, k, n);
            let packed = PackedWeight::side_by_side(&[(&w, n)], k);
            for kernel in Kernel::available() {
                let mut first = None;
                for parts in [1, 2, 3, 7] {
                    let y = packed.product_with(kernel, &x, m, parts);
                    let diff = max_abs_diff(&y, &expected);
                    assert!(
                        diff <= 1e-4,
                        "{kernel:?} {m}x{k}x{n}, {parts} parts: {diff}"
                    );
                    let first = first.get_or_insert_with(|| y.clone());
                    assert_eq!(&y, first, "{kernel:?} {m}x{k}x{n}: {parts} parts");
                }
            }
        }
    }

    #[test]
    fn a_weight_packed_from_its_transpose_equals_it_packed_in_place() {
        for (k, n) in [(1, 1), (7, 3), (70, 130), (64, 64)] {
            let w = hashed_values(k * n, 4);
            let transpose: Vec<f32> = (0..n * k).map(|i| w[(i % k) * n + i / k]).collect();
            let packed = PackedWeight::side_by_side(&[(&w, n)], k);
            let from_transposed = PackedWeight::from_transposed(&transpose, k, n);
            assert_eq!(from_transposed.panels(), packed.panels(), "{k}x{n}");
            assert_eq!((from_transposed.k(), from_transposed.n()), (k, n));
        }
    }

    #[test]
    fn weights_packed_side_by_side_give_their_products_side_by_side() {
        let (m, k) = (3, 70);
        let widths = [5, 64, 130, 1];
        let weights: Vec<Vec<f32>> = widths
            .iter()
            .enumerate()
            .map(|(i, &n)| hashed_values(k * n, 10 + i as u32))
            .collect();
        let parts: Vec<(&[f32], usize)> = weights
            .iter()
            .zip(widths)
            .map(|(w, n)| (w.as_slice(), n))
            .collect();
        let packed = PackedWeight::side_by_side(&parts, k);
        let n: usize = widths.iter().sum();
        assert_eq!((packed.k(), packed.n()), (k, n));
        let x = hashed_values(m * k, 3);
        let y = packed.product(&x, m);
        let mut c0 = 0;
        for (w, width) in weights.iter().zip(widths) {
            let expected = reference_product(&x, w, m, k, width);
            for j in 0..m {
                let ours = &y[j * n + c0..j * n + c0 + width];
                let diff = max_abs_diff(ours, &expected[j * width..(j + 1) * width]);
                assert!(diff <= 1e-4, "part of width {width}, row {j}: {diff}");
            }
            c0 += width;
        }
    }

    #[test]
    fn weights_packed_together_equal_each_packed_alone() {
        let (a, b, c) = (
            hashed_values(70 * 130, 5),
            hashed_values(3 * 5, 6),
            hashed_values(64 * 64, 7),
        );
        let weights = [
            Unpacked::SideBySide {
                parts: vec![(&a, 130)],
                k: 70,
            },
            Unpacked::Transposed {
                values: &b,
                k: 5,
                n: 3,
            },
            Unpacked::SideBySide {
                parts: vec![(&c, 64)],
                k: 64,
            },
        ];
        let together = PackedWeight::pack_all(&weights);
        assert_eq!(together.len(), 3);
        for (packed, weight) in together.iter().zip(&weights) {
            let alone = PackedWeight::pack_all(std::slice::from_ref(weight)).remove(0);
            assert_eq!((packed.k(), packed.n()), (alone.k(), alone.n()));
            assert_eq!(
                packed.panels(),
                alone.panels(),
                "{}x{}",
                alone.k(),
                alone.n()
            );
            let x = hashed_values(2 * packed.k(), 8);
            assert_eq!(packed.product(&x, 2), alone.product(&x, 2));
        }
        assert!(PackedWeight::pack_all(&[]).is_empty());
    }
}
