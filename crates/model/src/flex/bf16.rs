//! Matrix products with a frozen weight in bf16 on CPUs with AVX512-BF16 (`VDPBF16PS`): the
//! weight is packed once into bf16 panels ([`Panels`]), the activations are rounded to bf16 per
//! product, and every product of two bf16 values (exact in f32) is summed in f32.
//!
//! Layout: panels of [`PANEL`] output columns; within a panel, for each pair of input rows
//! `(2p, 2p + 1)` (an odd `k` padded with a zero row), the 64 columns' two values side by side
//! in one 32-bit word, which is what `VDPBF16PS` multiplies with a broadcast pair of activations:
//! `[n / 64][k / 2][64]` words, the last panel padded with zero columns. A tile of up to
//! [`TILE_ROWS`] rows x 64 columns keeps its 24 accumulators in registers while it walks down a
//! panel; the work splits over the rayon pool by (block of rows, panel), each output computed by
//! one tile, summed over `p = 0..k / 2` in order: the numbers do not depend on the thread count.
//!
//! Measured on SmolLM2's shapes (2 threads, AVX-512 EPYC): 1.9-2.2x `gemm`'s f32 product, the
//! largest difference 0.6-0.8% of the largest output. `benches/compare/bf16_error.py` emulates
//! what that does to a DPO step.

use rayon::prelude::*;

use super::product::View;

/// Output columns per panel: four AVX-512 vectors of f32.
const PANEL: usize = 64;
/// Rows per register tile: 6 x 4 accumulators, 4 panel vectors and a broadcast fit in 32.
const TILE_ROWS: usize = 6;
/// Rows per block of work: the block's activations and a panel stay in the L2 cache while the
/// block's tiles walk down the panel.
const BLOCK_ROWS: usize = 16 * TILE_ROWS;
/// Products of at least this many multiply-adds run on the rayon pool.
const PARALLEL_MULTIPLY_ADDS: usize = 64 * 64 * 64;

/// Whether this CPU has the instructions (AVX-512F and AVX512-BF16).
pub fn supported() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// `x` rounded to bf16 (to nearest, ties to even; as `VCVTNE2PS2BF16`, subnormals to zero and
/// NaN kept quiet), its 16 bits.
pub(super) fn bf16_bits(x: f32) -> u32 {
    let bits = x.to_bits();
    if x.is_nan() {
        (bits >> 16) | 0x40
    } else if bits & 0x7f80_0000 == 0 {
        (bits >> 16) & 0x8000
    } else {
        (bits + 0x7fff + ((bits >> 16) & 1)) >> 16
    }
}

/// A `[k, n]` weight in bf16 panels (see the module doc).
pub(super) struct Panels {
    k: usize,
    n: usize,
    /// `k.div_ceil(2)`.
    pairs: usize,
    /// The words, from `offset` on (64-byte aligned there).
    words: Vec<u32>,
    offset: usize,
}

impl std::fmt::Debug for Panels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Panels [{}, {}]", self.k, self.n)
    }
}

impl Panels {
    /// Packs the `[k, n]` matrix `w` (any strides), in parallel over panels.
    pub(super) fn pack(w: View, k: usize, n: usize) -> Self {
        let pairs = k.div_ceil(2);
        let panel_words = pairs * PANEL;
        let len = n.div_ceil(PANEL) * panel_words;
        // 15 words of slack to start on a 64-byte boundary.
        let mut words = vec![0u32; len + 15];
        let offset = words.as_ptr().align_offset(64).min(15);
        let at = |row: usize, col: usize| if row < k { w.at(row, col) } else { 0.0 };
        if len > 0 {
            words[offset..offset + len]
                .par_chunks_mut(panel_words)
                .enumerate()
                .for_each(|(panel, out)| {
                    let c0 = panel * PANEL;
                    let cols = PANEL.min(n - c0);
                    for p in 0..pairs {
                        for j in 0..cols {
                            let (lo, hi) = (at(2 * p, c0 + j), at(2 * p + 1, c0 + j));
                            out[p * PANEL + j] = bf16_bits(lo) | (bf16_bits(hi) << 16);
                        }
                    }
                });
        }
        Panels {
            k,
            n,
            pairs,
            words,
            offset,
        }
    }

    /// Input width `k`.
    pub(super) fn k(&self) -> usize {
        self.k
    }

    /// Output width `n`.
    pub(super) fn n(&self) -> usize {
        self.n
    }

    /// `x @ w` for `x` `[m, k]` (any strides; rounded to bf16), row-major `[m, n]`, each value
    /// written once (no zeroing pass first). Needs [`supported`].
    pub(super) fn product(&self, x: View, m: usize) -> Vec<f32> {
        let (k, n, pairs) = (self.k, self.n, self.pairs);
        assert!(supported(), "bf16 products need AVX512-BF16");
        if k == 0 || m * n == 0 {
            return vec![0.0; m * n];
        }
        let mut out = Vec::<f32>::with_capacity(m * n);
        let parallel = m.saturating_mul(n).saturating_mul(k) >= PARALLEL_MULTIPLY_ADDS;
        let x = activation_pairs(x, m, k, parallel);
        let panels = n.div_ceil(PANEL);
        let blocks = m.div_ceil(BLOCK_ROWS);
        let out_ptr = OutPtr(out.as_mut_ptr());
        let work = |item: usize| {
            let (block, panel) = (item / panels, item % panels);
            let (c0, r_end) = (panel * PANEL, m.min((block + 1) * BLOCK_ROWS));
            let weights = &self.words[self.offset + panel * pairs * PANEL..][..pairs * PANEL];
            for r0 in (block * BLOCK_ROWS..r_end).step_by(TILE_ROWS) {
                let rows = TILE_ROWS.min(r_end - r0);
                let cols = PANEL.min(n - c0);
                // SAFETY: the tile reads `rows` rows of `pairs` words of `x` from row `r0`
                // and the panel's words, and writes rows r0.. r0 + rows, columns c0..c0 + cols
                // of `out` (which no other item writes); `supported()` was checked above.
                unsafe {
                    let out = out_ptr.add(r0 * n + c0);
                    #[cfg(target_arch = "x86_64")]
                    kernel::tile(&x[r0 * pairs..], pairs, weights, rows, out, n, cols);
                }
            }
        };
        if parallel {
            (0..blocks * panels).into_par_iter().for_each(work);
        } else {
            (0..blocks * panels).for_each(work);
        }
        // SAFETY: the items' tiles wrote each of the m * n values.
        unsafe { out.set_len(m * n) };
        out
    }
}

/// The rows of `x` `[m, k]` rounded to bf16, as pairs of values in 32-bit words: `[m, k / 2]`
/// (an odd `k` padded with a zero).
pub(super) fn activation_pairs(x: View, m: usize, k: usize, parallel: bool) -> Vec<u32> {
    let pairs = k.div_ceil(2);
    let mut words = vec![0u32; m * pairs];
    #[cfg(target_arch = "x86_64")]
    let vector = supported();
    let convert = |(row, out): (usize, &mut [u32])| {
        #[cfg(target_arch = "x86_64")]
        if let Some(values) = x.row(row, k).filter(|_| vector) {
            // SAFETY: the CPU has the instructions (`vector`).
            unsafe { kernel::round_row(values, out) };
            return;
        }
        let at = |col: usize| if col < k { x.at(row, col) } else { 0.0 };
        for (p, word) in out.iter_mut().enumerate() {
            *word = bf16_bits(at(2 * p)) | (bf16_bits(at(2 * p + 1)) << 16);
        }
    };
    if parallel {
        words.par_chunks_mut(pairs).enumerate().for_each(convert);
    } else {
        words.chunks_mut(pairs).enumerate().for_each(convert);
    }
    words
}

/// An output pointer shared by the work items (each writes its own tiles).
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);

// SAFETY: the items write disjoint elements.
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// The address `offset` values on.
    ///
    /// # Safety
    /// It lies inside the output.
    unsafe fn add(self, offset: usize) -> *mut f32 {
        // SAFETY: the caller's contract.
        unsafe { self.0.add(offset) }
    }
}

#[cfg(target_arch = "x86_64")]
mod kernel {
    use std::arch::x86_64::*;

    use super::{PANEL, TILE_ROWS, bf16_bits};

    /// `out[r][..cols] = sum_p x[r][p] . panel[p]` for `rows` rows (up to [`TILE_ROWS`]).
    ///
    /// # Safety
    /// AVX512-BF16 is available; `x` holds `rows` rows of `pairs` words; `panel` holds
    /// `pairs * 64` words; `out` has `rows` rows of `out_stride` values with `cols` (<= 64)
    /// writable from each row's start.
    pub(super) unsafe fn tile(
        x: &[u32],
        pairs: usize,
        panel: &[u32],
        rows: usize,
        out: *mut f32,
        out_stride: usize,
        cols: usize,
    ) {
        let tile = (x, pairs, panel, out, out_stride, cols);
        // SAFETY: the caller's contract, one row count each.
        unsafe {
            match rows {
                1 => rows_tile::<1>(tile),
                2 => rows_tile::<2>(tile),
                3 => rows_tile::<3>(tile),
                4 => rows_tile::<4>(tile),
                5 => rows_tile::<5>(tile),
                TILE_ROWS => rows_tile::<TILE_ROWS>(tile),
                _ => unreachable!("a tile of {rows} rows"),
            }
        }
    }

    /// [`tile`] for `R` rows.
    #[target_feature(enable = "avx512f,avx512bf16")]
    unsafe fn rows_tile<const R: usize>(
        (x, pairs, panel, out, out_stride, cols): (&[u32], usize, &[u32], *mut f32, usize, usize),
    ) {
        assert!(x.len() >= R * pairs && panel.len() >= pairs * PANEL);
        let mut acc = [[_mm512_setzero_ps(); 4]; R];
        let (x, w) = (x.as_ptr(), panel.as_ptr());
        for p in 0..pairs {
            // SAFETY: p < pairs: inside the panel and each row (asserted above).
            unsafe {
                let w = w.add(p * PANEL);
                let b: [__m512bh; 4] = std::array::from_fn(|i| {
                    std::mem::transmute(_mm512_loadu_si512(w.add(16 * i).cast()))
                });
                for (r, acc) in acc.iter_mut().enumerate() {
                    let a: __m512bh =
                        std::mem::transmute(_mm512_set1_epi32(*x.add(r * pairs + p) as i32));
                    for i in 0..4 {
                        acc[i] = _mm512_dpbf16_ps(acc[i], a, b[i]);
                    }
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            for (i, &v) in acc.iter().enumerate() {
                let valid = cols.saturating_sub(16 * i).min(16);
                if valid > 0 {
                    let mask = ((1u32 << valid) - 1) as __mmask16;
                    // SAFETY: columns 16 i .. 16 i + valid of row r are writable.
                    unsafe { _mm512_mask_storeu_ps(out.add(r * out_stride + 16 * i), mask, v) };
                }
            }
        }
    }

    /// `out[p] = bf16(values[2p]) | bf16(values[2p + 1]) << 16`, a zero past the end.
    ///
    /// # Safety
    /// AVX512-BF16 is available.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn round_row(values: &[f32], out: &mut [u32]) {
        let whole = (values.len() / 32).min(out.len() / 16);
        for i in 0..whole {
            // SAFETY: 32 values from 32 i and 16 words from 16 i are inside the slices.
            unsafe {
                let lo = _mm512_loadu_ps(values.as_ptr().add(32 * i));
                let hi = _mm512_loadu_ps(values.as_ptr().add(32 * i + 16));
                let packed = _mm512_cvtne2ps_pbh(hi, lo);
                _mm512_storeu_si512(
                    out.as_mut_ptr().add(16 * i).cast(),
                    std::mem::transmute::<__m512bh, __m512i>(packed),
                );
            }
        }
        let at = |col: usize| values.get(col).map_or(0, |&v| bf16_bits(v));
        for (p, word) in out.iter_mut().enumerate().skip(16 * whole) {
            *word = at(2 * p) | (at(2 * p + 1) << 16);
        }
    }
}
