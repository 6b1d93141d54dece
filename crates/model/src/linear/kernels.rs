//! The kernels of packed products ([`super::packed`]): each adds `x @ panels` to an output
//! block, for the instruction sets this CPU has.

use super::packed::PANEL;

/// The kernels this CPU can run, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kernel {
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
    pub(super) fn detect() -> Self {
        static BEST: std::sync::OnceLock<Kernel> = std::sync::OnceLock::new();
        *BEST.get_or_init(|| {
            Self::available()
                .into_iter()
                .next()
                .unwrap_or(Kernel::Portable)
        })
    }

    /// Every kernel this CPU runs, best first.
    pub(super) fn available() -> Vec<Kernel> {
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
    pub(super) fn panels(self, x: &[f32], m: usize, k: usize, panels: &[f32], out: &mut [f32]) {
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
