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
//! (q, k, v; gate, up) pack side by side into one, so that they make one product.
//!
//! Each output is a sum over `p = 0..k` in order, computed by one thread: the numbers do not
//! depend on the thread count. `benches/decode_products.rs` times the products on SmolLM2's
//! shapes.

use rayon::prelude::*;

/// Output columns per panel: four AVX-512 vectors.
const PANEL: usize = 64;
/// The most activation rows a packed product takes; larger products are compute-bound, and
/// there the `gemm` crate's kernels are faster.
pub const MAX_ROWS: usize = 64;

/// A `[k, n]` weight packed into panels of 64 columns (see the module doc).
#[derive(Debug, Clone)]
pub struct PackedWeight {
    data: Vec<f32>,
    k: usize,
    n: usize,
}

impl PackedWeight {
    /// Packs row-major weights `[k, n_i]` (`(values, n_i)`) side by side, as one `[k, sum n_i]`.
    pub fn side_by_side(parts: &[(&[f32], usize)], k: usize) -> Self {
        for (i, (values, n)) in parts.iter().enumerate() {
            assert_eq!(values.len(), k * n, "part {i} is not [{k}, {n}]");
        }
        let n = parts.iter().map(|(_, n)| n).sum();
        Self::fill(k, n, |c0, out| {
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
        })
    }

    /// Packs the `[k, n]` weight whose transpose `values` holds row-major (`[n, k]`: a tied
    /// output head is the token embedding transposed).
    pub fn from_transposed(values: &[f32], k: usize, n: usize) -> Self {
        assert_eq!(values.len(), n * k, "the transpose is not [{n}, {k}]");
        Self::fill(k, n, |c0, out| {
            let columns = values[c0 * k..(c0 + PANEL).min(n) * k].chunks_exact(k.max(1));
            for (c, column) in columns.enumerate() {
                for (p, &value) in column.iter().enumerate() {
                    out[p * PANEL + c] = value;
                }
            }
        })
    }

    /// A `[k, n]` packed weight whose panels `fill(first column, panel)` writes, in parallel.
    fn fill(k: usize, n: usize, fill: impl Fn(usize, &mut [f32]) + Sync) -> Self {
        let mut data = vec![0.0; n.div_ceil(PANEL) * k * PANEL];
        data.par_chunks_mut((k * PANEL).max(1))
            .enumerate()
            .for_each(|(panel, out)| fill(panel * PANEL, out));
        PackedWeight { data, k, n }
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
    /// split over the rayon pool.
    pub fn product(&self, x: &[f32], m: usize) -> Vec<f32> {
        self.product_with(Kernel::detect(), x, m)
    }

    fn product_with(&self, kernel: Kernel, x: &[f32], m: usize) -> Vec<f32> {
        let (k, n) = (self.k, self.n);
        assert!(
            m <= MAX_ROWS,
            "a packed product takes at most {MAX_ROWS} rows, not {m}"
        );
        assert_eq!(x.len(), m * k, "x is not [{m}, {k}]");
        let panels = n.div_ceil(PANEL);
        let threads = rayon::current_num_threads().clamp(1, panels.max(1));
        let per_thread = panels.div_ceil(threads).max(1);
        let ranges: Vec<(usize, usize)> = (0..threads)
            .map(|t| {
                (
                    (t * per_thread).min(panels),
                    ((t + 1) * per_thread).min(panels),
                )
            })
            .filter(|(first, end)| first < end)
            .collect();
        // Each thread fills `[m, its panels * PANEL]`, then the columns that exist are copied.
        let parts: Vec<Vec<f32>> = ranges
            .par_iter()
            .map(|&(first, end)| {
                let width = (end - first) * PANEL;
                let mut part = vec![0.0; m * width];
                let panels = &self.data[first * k * PANEL..end * k * PANEL];
                kernel.panels(x, m, k, panels, &mut part);
                part
            })
            .collect();
        let mut y = vec![0.0; m * n];
        for (&(first, end), part) in ranges.iter().zip(&parts) {
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

/// The kernels this CPU can run, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kernel {
    /// AVX-512F intrinsics, blocks of up to six output rows in registers.
    #[cfg(target_arch = "x86_64")]
    Avx512,
    /// The portable kernel compiled for AVX2 and FMA.
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// The portable kernel: loops the compiler vectorises.
    Portable,
}

impl Kernel {
    /// The best kernel of this CPU (detected once).
    fn detect() -> Self {
        static BEST: std::sync::OnceLock<Kernel> = std::sync::OnceLock::new();
        *BEST.get_or_init(|| {
            Self::available()
                .into_iter()
                .next()
                .unwrap_or(Kernel::Portable)
        })
    }

    /// Every kernel this CPU runs, best first.
    fn available() -> Vec<Kernel> {
        let mut kernels = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                kernels.push(Kernel::Avx512);
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                kernels.push(Kernel::Avx2);
            }
        }
        kernels.push(Kernel::Portable);
        kernels
    }

    /// Adds `x @ panels` to `out` (`[m, panels * PANEL]`), `panels` packed `[_, k, PANEL]`.
    /// `self` comes from [`Kernel::available`] (the only place that makes the x86 variants), so
    /// the CPU has its instructions.
    fn panels(self, x: &[f32], m: usize, k: usize, panels: &[f32], out: &mut [f32]) {
        let count = panels.len() / (k * PANEL).max(1);
        assert!(x.len() >= m * k && out.len() >= m * count * PANEL);
        match self {
            // SAFETY: `available()`, which alone makes these variants, found the features each
            // kernel is compiled for.
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => unsafe { avx512::panels(x, m, k, panels, out) },
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => unsafe { portable::panels_avx2(x, m, k, panels, out) },
            _ => portable::panels(x, m, k, panels, out),
        }
    }
}

/// The kernel in plain Rust: one output row at a time down a panel, its 64 sums in an array
/// the compiler keeps in vector registers.
mod portable {
    use super::PANEL;

    /// [`panels`] compiled for AVX2 with fused multiply-adds.
    ///
    /// # Safety
    /// The CPU has AVX2 and FMA.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn panels_avx2(x: &[f32], m: usize, k: usize, w: &[f32], out: &mut [f32]) {
        walk(x, m, k, w, out, f32::mul_add);
    }

    /// Adds `x @ w` to `out` for packed panels `w`.
    pub(super) fn panels(x: &[f32], m: usize, k: usize, w: &[f32], out: &mut [f32]) {
        // Without FMA (an x86-64 CPU before AVX2) a fused multiply-add is a slow library call;
        // other targets (aarch64 above all) have the instruction.
        #[cfg(target_arch = "x86_64")]
        let madd = |a: f32, b: f32, c: f32| a * b + c;
        #[cfg(not(target_arch = "x86_64"))]
        let madd = f32::mul_add;
        walk(x, m, k, w, out, madd);
    }

    /// Panel by panel, output row by output row; `madd(a, b, c)` is `a * b + c`.
    #[inline(always)]
    fn walk(
        x: &[f32],
        m: usize,
        k: usize,
        w: &[f32],
        out: &mut [f32],
        madd: impl Fn(f32, f32, f32) -> f32 + Copy,
    ) {
        let width = w.len() / (k * PANEL).max(1) * PANEL;
        for (panel, w) in w.chunks_exact((k * PANEL).max(1)).enumerate() {
            for j in 0..m {
                let o = j * width + panel * PANEL;
                let mut acc: [f32; PANEL] = out[o..o + PANEL].try_into().expect("a panel");
                for (row, &a) in w.chunks_exact(PANEL).zip(&x[j * k..(j + 1) * k]) {
                    for (acc, &w) in acc.iter_mut().zip(row) {
                        *acc = madd(w, a, *acc);
                    }
                }
                out[o..o + PANEL].copy_from_slice(&acc);
            }
        }
    }
}

/// The kernel with AVX-512 intrinsics: a block of up to six output rows x 64 columns stays in
/// 24 registers while it walks down a panel, four vector loads and up to 24 fused multiply-adds
/// per weight row.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::{
        __m512, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_set1_ps, _mm512_storeu_ps,
    };

    use super::PANEL;

    /// 16-float vectors per panel row.
    const VECTORS: usize = PANEL / 16;
    /// Output rows kept in registers at once.
    const ROW_BLOCK: usize = 6;
    // `panels` names the blocks of 1 to 5 rows left over one by one.
    const _: () = assert!(ROW_BLOCK == 6);

    /// Adds `x @ w` to `out` (`[m, panels * PANEL]`) for packed panels `w`: panel by panel,
    /// in blocks of `ROW_BLOCK` output rows and then the rows left over.
    ///
    /// # Safety
    /// The CPU has AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn panels(x: &[f32], m: usize, k: usize, w: &[f32], out: &mut [f32]) {
        let count = w.len() / (k * PANEL).max(1);
        let width = count * PANEL;
        assert!(x.len() >= m * k && out.len() >= m * width && w.len() == count * k * PANEL);
        for panel in 0..count {
            let at = |j: usize| Block {
                x: j * k,
                w: panel * k * PANEL,
                out: j * width + panel * PANEL,
                k,
                width,
            };
            let mut j = 0;
            // SAFETY (every call): rows `j..j + R <= m` of `x` and `out`, this panel of `w`,
            // and the panel's columns of `out` (asserted above).
            while j + ROW_BLOCK <= m {
                unsafe { block::<ROW_BLOCK>(x, w, out, at(j)) };
                j += ROW_BLOCK;
            }
            match m - j {
                0 => {}
                1 => unsafe { block::<1>(x, w, out, at(j)) },
                2 => unsafe { block::<2>(x, w, out, at(j)) },
                3 => unsafe { block::<3>(x, w, out, at(j)) },
                4 => unsafe { block::<4>(x, w, out, at(j)) },
                5 => unsafe { block::<5>(x, w, out, at(j)) },
                rest => unreachable!("{rest} rows left over with blocks of {ROW_BLOCK}"),
            }
        }
    }

    /// Where one block starts in `x`, `w` and `out`, and their row widths.
    struct Block {
        x: usize,
        w: usize,
        out: usize,
        k: usize,
        width: usize,
    }

    /// Adds `x[R rows from b.x] @ w[the panel at b.w]` to `out[R rows from b.out, PANEL]`.
    ///
    /// # Safety
    /// The CPU has AVX-512F; `R` rows of `k` floats from `b.x` in `x`, `k * PANEL` floats
    /// from `b.w` in `w`, and `R` rows of `width` floats from
    /// `b.out` (the first `PANEL` of each) in `out`.
    #[target_feature(enable = "avx512f")]
    unsafe fn block<const R: usize>(x: &[f32], w: &[f32], out: &mut [f32], b: Block) {
        // SAFETY: the caller's bounds (see # Safety) cover every pointer below.
        unsafe {
            let out = out.as_mut_ptr().add(b.out);
            let mut acc: [[__m512; VECTORS]; R] = std::array::from_fn(|r| {
                std::array::from_fn(|v| _mm512_loadu_ps(out.add(r * b.width + 16 * v)))
            });
            let (x, w) = (x.as_ptr().add(b.x), w.as_ptr().add(b.w));
            for p in 0..b.k {
                let row = w.add(p * PANEL);
                let weights: [__m512; VECTORS] =
                    std::array::from_fn(|v| _mm512_loadu_ps(row.add(16 * v)));
                for (r, acc) in acc.iter_mut().enumerate() {
                    let a = _mm512_set1_ps(*x.add(r * b.k + p));
                    for (acc, &weight) in acc.iter_mut().zip(&weights) {
                        *acc = _mm512_fmadd_ps(weight, a, *acc);
                    }
                }
            }
            for (r, acc) in acc.iter().enumerate() {
                for (v, &acc) in acc.iter().enumerate() {
                    _mm512_storeu_ps(out.add(r * b.width + 16 * v), acc);
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
    fn every_kernel_equals_the_reference_product_for_any_shape_and_thread_count() {
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
                for threads in [1, 2, 3, 7] {
                    let pool = rayon::ThreadPoolBuilder::new()
                        .num_threads(threads)
                        .build()
                        .unwrap();
                    let y = pool.install(|| packed.product_with(kernel, &x, m));
                    let diff = max_abs_diff(&y, &expected);
                    assert!(
                        diff <= 1e-4,
                        "{kernel:?} {m}x{k}x{n}, {threads} threads: {diff}"
                    );
                    let first = first.get_or_insert_with(|| y.clone());
                    assert_eq!(&y, first, "{kernel:?} {m}x{k}x{n}: {threads} threads");
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
            assert_eq!(from_transposed.data, packed.data, "{k}x{n}");
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
}
