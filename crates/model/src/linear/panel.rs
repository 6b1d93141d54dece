//! The CPU kernel of products with a few dozen activation rows (a sampling batch): `y = x @ w`
//! for `x` `[m, k]` (17 to 64 rows) and a row-major weight `w` `[k, n]`, plain host slices.
//!
//! At these sizes a product still streams a whole weight from memory for little arithmetic,
//! and Burn's matmul (the `gemm` crate) first copies ("packs") the weight into its own layout
//! on every call. This kernel reads the weight in place: for a panel of 64 columns it keeps 4
//! output rows x 64 columns in 16 AVX-512 registers and walks down a tile of 64 weight rows,
//! four vector loads and 16 fused multiply-adds per weight row; the tile (16 KiB) stays in the
//! L1 cache while the next blocks of 4 output rows take it in. Threads take contiguous ranges
//! of panels. Every output is a sum over `p = 0..k` in order, so the numbers do not depend on
//! the thread count. `benches/decode_products.rs` times it against Burn's matmul (32 and 64
//! rows); the tile and block sizes were chosen there.
//!
//! Needs AVX-512F ([`available`]); elsewhere callers use Burn's matmul.

use std::ops::Range;

use rayon::prelude::*;

/// 16-float vectors per panel row.
const VECTORS: usize = 4;
/// Output columns per panel.
const PANEL: usize = 16 * VECTORS;

/// Whether this CPU runs the kernel.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `x @ w` for `x` `[m, k]` and `w` `[k, n]` (row-major) as `[m, n]` row-major, the columns
/// split over the rayon pool. Panics when the CPU lacks AVX-512F (see [`available`]).
pub fn product(x: &[f32], w: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
    assert!(available(), "panel::product needs AVX-512F");
    assert_eq!(x.len(), m * k, "x is not [{m}, {k}]");
    assert_eq!(w.len(), k * n, "w is not [{k}, {n}]");
    let panels = n.div_ceil(PANEL);
    let threads = rayon::current_num_threads().clamp(1, panels.max(1));
    let per_thread = panels.div_ceil(threads.max(1)).max(1);
    let ranges: Vec<Range<usize>> = (0..threads)
        .map(|t| (t * per_thread * PANEL).min(n)..((t + 1) * per_thread * PANEL).min(n))
        .filter(|r| !r.is_empty())
        .collect();
    let parts: Vec<Vec<f32>> = ranges
        .par_iter()
        .map(|columns| {
            let mut part = vec![0.0; m * columns.len()];
            // SAFETY: `available()` was asserted above.
            #[cfg(target_arch = "x86_64")]
            unsafe {
                avx512::columns(x, w, m, k, n, columns.clone(), &mut part)
            };
            part
        })
        .collect();
    let mut y = vec![0.0; m * n];
    for (columns, part) in ranges.iter().zip(&parts) {
        let width = columns.len();
        for j in 0..m {
            y[j * n + columns.start..j * n + columns.end]
                .copy_from_slice(&part[j * width..(j + 1) * width]);
        }
    }
    y
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::{
        __m512, __mmask16, _mm512_fmadd_ps, _mm512_mask_storeu_ps, _mm512_maskz_loadu_ps,
        _mm512_set1_ps,
    };
    use std::ops::Range;

    use super::{PANEL, VECTORS};

    /// Output rows kept in registers at once.
    const ROW_BLOCK: usize = 4;
    // `columns` names the blocks of 1 to 3 rows left over one by one.
    const _: () = assert!(ROW_BLOCK == 4);
    /// Weight rows per tile: a tile of a panel (16 KiB) stays in the L1 cache while every block
    /// of output rows takes it in.
    const K_TILE: usize = 64;

    /// One register block: output rows `j..j + R`, panel columns `col..col + PANEL` of `w`
    /// (`out_col..` of `out`), the lanes of each vector that exist (`masks`), weight rows
    /// `depth`.
    struct Block {
        j: usize,
        col: usize,
        out_col: usize,
        masks: [__mmask16; VECTORS],
        depth: Range<usize>,
    }

    /// Columns `columns` of `x @ w` into `out` (`[m, columns.len()]` row-major): panel by
    /// panel (the last one masked to the columns that exist), tile of weight rows by tile, in
    /// blocks of `ROW_BLOCK` output rows and then the rows left over.
    #[target_feature(enable = "avx512f")]
    pub(super) fn columns(
        x: &[f32],
        w: &[f32],
        m: usize,
        k: usize,
        n: usize,
        columns: Range<usize>,
        out: &mut [f32],
    ) {
        let width = columns.len();
        assert!(columns.end <= n && x.len() >= m * k && w.len() >= k * n);
        assert!(out.len() >= m * width);
        let shape = Shape {
            k,
            n,
            out_width: width,
        };
        for c in (0..width).step_by(PANEL) {
            let cols = PANEL.min(width - c);
            let masks = std::array::from_fn(|v| {
                let lanes = cols.saturating_sub(16 * v).min(16);
                ((1u32 << lanes) - 1) as __mmask16
            });
            for p in (0..k).step_by(K_TILE) {
                let depth = p..(p + K_TILE).min(k);
                let at = |j| Block {
                    j,
                    col: columns.start + c,
                    out_col: c,
                    masks,
                    depth: depth.clone(),
                };
                let mut j = 0;
                // SAFETY (every call): rows `j..j + R <= m`, weight rows `depth.end <= k`, and
                // the masked lanes stay below column `columns.end <= n` of `w` and `width` of
                // `out` (asserted above).
                while j + ROW_BLOCK <= m {
                    unsafe { block::<ROW_BLOCK>(x, w, out, &shape, at(j)) };
                    j += ROW_BLOCK;
                }
                match m - j {
                    0 => {}
                    1 => unsafe { block::<1>(x, w, out, &shape, at(j)) },
                    2 => unsafe { block::<2>(x, w, out, &shape, at(j)) },
                    3 => unsafe { block::<3>(x, w, out, &shape, at(j)) },
                    rest => unreachable!("{rest} rows left over with blocks of {ROW_BLOCK}"),
                }
            }
        }
    }

    /// The sizes the pointers walk: `x` `[m, k]`, `w` `[k, n]`, `out` `[m, out_width]`.
    struct Shape {
        k: usize,
        n: usize,
        out_width: usize,
    }

    /// Adds `x[j..j + R, depth] @ w[depth, panel]` to `out[j..j + R, panel]`.
    ///
    /// # Safety
    /// Rows `j + R <= m` of `x`, weight rows `depth.end <= k`, and the unmasked lanes of the
    /// panel inside `w` and `out`.
    #[target_feature(enable = "avx512f")]
    unsafe fn block<const R: usize>(x: &[f32], w: &[f32], out: &mut [f32], s: &Shape, b: Block) {
        // SAFETY: the caller's bounds (see # Safety) cover every pointer below; masked lanes
        // are neither read nor written, and the vectors of the last panel that start past the
        // end of a buffer are wholly masked, their addresses formed with `wrapping_add`.
        unsafe {
            let out = out.as_mut_ptr().add(b.j * s.out_width + b.out_col);
            let mut acc: [[__m512; VECTORS]; R] = std::array::from_fn(|r| {
                std::array::from_fn(|v| {
                    _mm512_maskz_loadu_ps(b.masks[v], out.wrapping_add(r * s.out_width + 16 * v))
                })
            });
            let (x, w) = (x.as_ptr().add(b.j * s.k), w.as_ptr().add(b.col));
            for p in b.depth {
                let row = w.add(p * s.n);
                let weights: [__m512; VECTORS] = std::array::from_fn(|v| {
                    _mm512_maskz_loadu_ps(b.masks[v], row.wrapping_add(16 * v))
                });
                for (r, acc) in acc.iter_mut().enumerate() {
                    let a = _mm512_set1_ps(*x.add(r * s.k + p));
                    for (acc, &weight) in acc.iter_mut().zip(&weights) {
                        *acc = _mm512_fmadd_ps(weight, a, *acc);
                    }
                }
            }
            for (r, acc) in acc.iter().enumerate() {
                for (v, &acc) in acc.iter().enumerate() {
                    _mm512_mask_storeu_ps(
                        out.wrapping_add(r * s.out_width + 16 * v),
                        b.masks[v],
                        acc,
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bpo_testkit::{hashed_values, max_abs_diff, reference_product};

    #[test]
    fn equals_the_reference_product_for_any_shape_and_thread_count() {
        if !available() {
            eprintln!("skipped: this CPU has no AVX-512F");
            return;
        }
        for (m, k, n) in [
            (17, 5, 33),
            (18, 64, 130),
            (19, 70, 700),
            (32, 96, 700),
            (64, 33, 97),
            (24, 576, 64),
            (41, 1, 31),
        ] {
            let (x, w) = (hashed_values(m * k, 1), hashed_values(k * n, 2));
            let expected = reference_product(&x, &w, m, k, n);
            let mut first = None;
            for threads in [1, 2, 3, 7] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                let y = pool.install(|| product(&x, &w, m, k, n));
                let diff = max_abs_diff(&y, &expected);
                assert!(diff <= 1e-4, "{m}x{k}x{n}, {threads} threads: {diff}");
                let first = first.get_or_insert_with(|| y.clone());
                assert_eq!(
                    &y, first,
                    "{m}x{k}x{n}: {threads} threads changed the numbers"
                );
            }
        }
    }
}
