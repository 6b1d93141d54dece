//! The CPU kernel of few-row weight products: `y = x @ w` for a handful of activation rows `x`
//! `[m, k]` and a row-major weight `w` `[k, n]`, both plain host slices.
//!
//! Decoding is bound by how fast the weights stream from memory, so the kernel reads every
//! weight row once, front to back, and keeps the outputs it updates in the L1 cache: for a
//! chunk of output columns it walks the weight rows four at a time (a "pass") and adds
//! `x[j, p..p + 4] * w[p..p + 4, chunk]` to each output row `j`. On x86-64 with AVX2 and FMA
//! the pass is written with intrinsics and prefetches the next pass's rows; elsewhere it is a
//! loop the compiler vectorises. A general matrix kernel instead walks down a narrow strip of
//! columns, which jumps a whole weight row (often more than a page) per step.
//!
//! In debug builds the standard library checks the preconditions of every unsafe pointer
//! operation, which halves the speed of the intrinsics: the workspace builds this crate without
//! debug assertions (`Cargo.toml`, `[profile.dev.package.bpo-model]`).
//!
//! Threads split the weight's rows into contiguous blocks (one per thread, each streamed by one
//! core); their partial products are added in block order, so a given number of blocks always
//! gives the same numbers.

use std::ops::Range;

use rayon::prelude::*;

/// Floats of output kept hot per column chunk, all rows together: 32 KiB, a typical L1 data
/// cache (measured with `benches/decode_products.rs`: 8, 16 and 32 KiB).
const CHUNK_FLOATS: usize = 8192;
/// The widest chunk: a longer stretch of one weight row gains nothing.
const MAX_CHUNK_COLUMNS: usize = 4096;
/// Weight rows combined per pass over the outputs.
const ROWS_PER_PASS: usize = 4;

/// `x @ w` for `x` `[m, k]` and `w` `[k, n]` (row-major), as `[m, n]` row-major, with the
/// weight's rows split into `blocks` contiguous blocks that run in parallel on the rayon pool.
pub fn product(x: &[f32], w: &[f32], m: usize, k: usize, n: usize, blocks: usize) -> Vec<f32> {
    assert_eq!(x.len(), m * k, "x is not [{m}, {k}]");
    assert_eq!(w.len(), k * n, "w is not [{k}, {n}]");
    let blocks = blocks.clamp(1, k.max(1));
    let depth = k.div_ceil(blocks);
    let block_rows = |b: usize| (b * depth).min(k)..((b + 1) * depth).min(k);
    if blocks == 1 {
        let mut y = vec![0.0; m * n];
        accumulate(x, w, m, k, n, block_rows(0), &mut y);
        return y;
    }
    let partials: Vec<Vec<f32>> = (0..blocks)
        .into_par_iter()
        .map(|b| {
            let mut y = vec![0.0; m * n];
            accumulate(x, w, m, k, n, block_rows(b), &mut y);
            y
        })
        .collect();
    // Added in block order, so the rounding does not depend on which thread finished first.
    let mut partials = partials.into_iter();
    let mut y = partials.next().expect("at least one block");
    for partial in partials {
        for (sum, value) in y.iter_mut().zip(&partial) {
            *sum += value;
        }
    }
    y
}

/// Adds `x[.., rows] @ w[rows, ..]` to `y`, with AVX2 and fused multiply-adds where the CPU
/// has them.
fn accumulate(
    x: &[f32],
    w: &[f32],
    m: usize,
    k: usize,
    n: usize,
    rows: Range<usize>,
    y: &mut [f32],
) {
    let product = Product { x, w, m, k, n };
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports the features `avx2::accumulate` is compiled for.
        unsafe { avx2::accumulate(&product, rows, y) };
        return;
    }
    accumulate_portable(&product, rows, y);
}

/// [`accumulate`] without intrinsics.
fn accumulate_portable(product: &Product, rows: Range<usize>, y: &mut [f32]) {
    // Without FMA (an x86-64 CPU before AVX2) a fused multiply-add is a slow library call;
    // other targets (aarch64 above all) have the instruction.
    #[cfg(target_arch = "x86_64")]
    let madd = |a: f32, b: f32, c: f32| a * b + c;
    #[cfg(not(target_arch = "x86_64"))]
    let madd = f32::mul_add;
    product.accumulate(rows, y, madd, |product, at, y| product.pass(at, y, madd));
}

/// The operands of `x @ w`: `x` `[m, k]` and `w` `[k, n]`, row-major.
struct Product<'a> {
    x: &'a [f32],
    w: &'a [f32],
    m: usize,
    k: usize,
    n: usize,
}

/// Where one pass writes: columns `c0..c0 + width` of every output row, from the weight rows
/// `p..p + ROWS_PER_PASS`.
#[derive(Clone, Copy)]
struct PassAt {
    p: usize,
    c0: usize,
    width: usize,
}

impl Product<'_> {
    /// `w[p, c0..c0 + width]`.
    fn weight_row(&self, p: usize, c0: usize, width: usize) -> &[f32] {
        &self.w[p * self.n + c0..p * self.n + c0 + width]
    }

    /// The loop nest: column chunks whose outputs stay in L1, then passes of four weight rows
    /// (run by `pass`), then the rows left over one at a time. `madd(a, b, c)` is `a * b + c`.
    #[inline(always)]
    fn accumulate(
        &self,
        rows: Range<usize>,
        y: &mut [f32],
        madd: impl Fn(f32, f32, f32) -> f32 + Copy,
        pass: impl Fn(&Self, PassAt, &mut [f32]),
    ) {
        let (m, k, n) = (self.m, self.k, self.n);
        let chunk = (CHUNK_FLOATS / m.max(1))
            .clamp(64, MAX_CHUNK_COLUMNS)
            .min(n.max(1));
        for c0 in (0..n).step_by(chunk) {
            let width = chunk.min(n - c0);
            let mut p = rows.start;
            while p + ROWS_PER_PASS <= rows.end {
                pass(self, PassAt { p, c0, width }, y);
                p += ROWS_PER_PASS;
            }
            for p in p..rows.end {
                let weights = self.weight_row(p, c0, width);
                for j in 0..m {
                    let a = self.x[j * k + p];
                    let out = &mut y[j * n + c0..j * n + c0 + width];
                    for (o, &b) in out.iter_mut().zip(weights) {
                        *o = madd(b, a, *o);
                    }
                }
            }
        }
    }

    /// One pass, portable: output row by output row, a loop the compiler vectorises.
    #[inline(always)]
    fn pass(&self, at: PassAt, y: &mut [f32], madd: impl Fn(f32, f32, f32) -> f32) {
        let (k, n) = (self.k, self.n);
        let w: [&[f32]; ROWS_PER_PASS] =
            std::array::from_fn(|i| self.weight_row(at.p + i, at.c0, at.width));
        for j in 0..self.m {
            let a = &self.x[j * k + at.p..j * k + at.p + ROWS_PER_PASS];
            let out = &mut y[j * n + at.c0..j * n + at.c0 + at.width];
            for (c, o) in out.iter_mut().enumerate() {
                *o = w
                    .iter()
                    .zip(a)
                    .fold(*o, |sum, (row, &a)| madd(row[c], a, sum));
            }
        }
    }
}

/// The pass written with AVX2 intrinsics: sixteen columns of the four weight rows stay in
/// registers while every output row takes them in, so the weights stream from memory at a
/// steady pace instead of in bursts between output rows.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::{
        _MM_HINT_T0, _mm_prefetch, _mm256_broadcast_ss, _mm256_fmadd_ps, _mm256_loadu_ps,
        _mm256_storeu_ps,
    };
    use std::ops::Range;

    use super::{PassAt, Product, ROWS_PER_PASS};

    /// Columns per step: two vectors of eight.
    const STEP: usize = 16;
    // The pass below names its four weight rows one by one.
    const _: () = assert!(ROWS_PER_PASS == 4);

    /// [`Product::accumulate`] with the AVX2 pass.
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn accumulate(product: &Product, rows: Range<usize>, y: &mut [f32]) {
        product.accumulate(rows, y, f32::mul_add, |product, at, y| pass(product, at, y));
    }

    /// One pass: weight rows `p..p + 4` times `x[.., p..p + 4]`, added to columns
    /// `c0..c0 + width` of every output row.
    #[target_feature(enable = "avx2,fma")]
    fn pass(product: &Product, at: PassAt, y: &mut [f32]) {
        let (m, k, n) = (product.m, product.k, product.n);
        // Every pointer below stays inside these bounds.
        assert!(at.p + ROWS_PER_PASS <= k && at.c0 + at.width <= n);
        assert!(product.x.len() >= m * k && product.w.len() >= k * n && y.len() >= m * n);
        let vectorised = at.width - at.width % STEP;
        // The next pass's rows, one cache line per row and step, so that they stream in while
        // this pass computes.
        let prefetch = at.p + 2 * ROWS_PER_PASS <= k;
        let w = product.w[at.p * n + at.c0..].as_ptr();
        let (x, out) = (product.x[at.p..].as_ptr(), y[at.c0..].as_mut_ptr());
        for c in (0..vectorised).step_by(STEP) {
            // SAFETY: rows `p..p + 4` of `w` and `m` rows of `x` and `y`; columns `c0 + c` to
            // `c0 + c + 16 <= c0 + width <= n` (asserted above).
            unsafe {
                let row = |i: usize| w.add(i * n + c);
                let lo = [row(0), row(1), row(2), row(3)].map(|r| _mm256_loadu_ps(r));
                let hi = [row(0), row(1), row(2), row(3)].map(|r| _mm256_loadu_ps(r.add(8)));
                if prefetch {
                    for i in ROWS_PER_PASS..2 * ROWS_PER_PASS {
                        _mm_prefetch::<_MM_HINT_T0>(row(i).cast());
                    }
                }
                for j in 0..m {
                    let (a, o) = (x.add(j * k), out.add(j * n + c));
                    let (mut sum_lo, mut sum_hi) = (_mm256_loadu_ps(o), _mm256_loadu_ps(o.add(8)));
                    for (i, (&lo, &hi)) in lo.iter().zip(&hi).enumerate() {
                        let b = _mm256_broadcast_ss(&*a.add(i));
                        sum_lo = _mm256_fmadd_ps(lo, b, sum_lo);
                        sum_hi = _mm256_fmadd_ps(hi, b, sum_hi);
                    }
                    _mm256_storeu_ps(o, sum_lo);
                    _mm256_storeu_ps(o.add(8), sum_hi);
                }
            }
        }
        // The columns left over, fewer than one step.
        let tail = PassAt {
            c0: at.c0 + vectorised,
            width: at.width - vectorised,
            ..at
        };
        product.pass(tail, y, f32::mul_add);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bpo_testkit::{hashed_values, max_abs_diff, reference_product};

    #[test]
    fn equals_the_reference_product_for_any_shape_and_block_count() {
        for (m, k, n) in [
            (1, 1, 1),
            (1, 7, 3),
            (3, 9, 130),
            (8, 576, 70),
            (5, 130, 4099),
            (16, 64, 64),
        ] {
            let (x, w) = (hashed_values(m * k, 1), hashed_values(k * n, 2));
            let expected = reference_product(&x, &w, m, k, n);
            for blocks in [1, 2, 3, 7, 1000] {
                let y = product(&x, &w, m, k, n, blocks);
                let diff = max_abs_diff(&y, &expected);
                assert!(diff <= 1e-4, "{m}x{k}x{n}, {blocks} blocks: {diff}");
                assert_eq!(y, product(&x, &w, m, k, n, blocks), "repeats exactly");
            }
        }
    }

    #[test]
    fn portable_pass_equals_the_reference_product() {
        for (m, k, n) in [(1, 7, 3), (3, 9, 130), (5, 130, 4099), (16, 64, 64)] {
            let (x, w) = (hashed_values(m * k, 3), hashed_values(k * n, 4));
            let expected = reference_product(&x, &w, m, k, n);
            let mut y = vec![0.0; m * n];
            accumulate_portable(
                &Product {
                    x: &x,
                    w: &w,
                    m,
                    k,
                    n,
                },
                0..k,
                &mut y,
            );
            let diff = max_abs_diff(&y, &expected);
            assert!(diff <= 1e-4, "{m}x{k}x{n}: {diff}");
        }
    }

    #[test]
    fn empty_inner_dimension_gives_zeros() {
        assert_eq!(product(&[], &[], 2, 0, 3, 2), vec![0.0; 6]);
    }
}
