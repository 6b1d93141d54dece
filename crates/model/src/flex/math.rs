//! Elementwise math that the compiler vectorises: `exp` and the logistic sigmoid without calls
//! into libm (whose scalar `expf` was 6-9% of a training step), and a splitter that runs an
//! elementwise loop on the rayon pool.

use std::mem::MaybeUninit;

use rayon::prelude::*;

/// Lanes of [`lane_sum`].
const LANES: usize = 16;

/// Elements per parallel chunk: enough to amortise a task, small enough to balance 2-16 cores.
const CHUNK: usize = 1 << 14;

/// `e^x`, Cephes' single-precision algorithm: `x = n ln2 + r` with `|r| <= ln2 / 2`, a degree-5
/// polynomial for `e^r`, the exponent bits for `2^n`. Within 2 ulp of `f32::exp` on
/// [-87, 88]; clamped outside it (`e^-87.3 ~ 1e-38`, `e^88 ~ 1.6e38`), NaN stays NaN.
#[inline(always)]
pub(super) fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split in two so that `n * LN2_HI` is exact.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5 * 2^23: adding it rounds to an integer held in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.3, 88.0);
    let shifted = x * LOG2E + ROUND;
    let n = shifted - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_1e-4;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 0.166_666_65;
    let p = p * r + 0.5;
    let e_r = p * r * r + r + 1.0;
    // The integer n sits in the low bits of `shifted`'s mantissa (offset by 2^22).
    let n_bits = shifted.to_bits().wrapping_sub(ROUND.to_bits()) as i32;
    let two_n = f32::from_bits(((n_bits + 127) as u32) << 23);
    e_r * two_n
}

/// The logistic sigmoid `1 / (1 + e^-x)`.
#[inline(always)]
pub(super) fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// `term(0) + ... + term(len - 1)`, accumulated in 16 fixed lanes (element `i` in lane
/// `i % 16`) and then lane by lane: vectorisable, and the same bits with any vector width.
#[inline(always)]
pub(super) fn lane_sum(len: usize, term: impl Fn(usize) -> f32) -> f32 {
    let mut lanes = [0.0f32; LANES];
    for block in 0..len / LANES {
        for (j, lane) in lanes.iter_mut().enumerate() {
            *lane += term(block * LANES + j);
        }
    }
    let full = len / LANES * LANES;
    for (j, lane) in lanes.iter_mut().enumerate().take(len - full) {
        *lane += term(full + j);
    }
    lanes.iter().sum()
}

/// `ln(e^row[0] + ... + e^row[n - 1])`: the largest value plus the log of the [`lane_sum`] of
/// `e^(x - max)`, so that no term overflows.
#[inline(always)]
pub(super) fn log_sum_exp(row: &[f32]) -> f32 {
    let max = row.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
    max + lane_sum(row.len(), |i| exp(row[i] - max)).ln()
}

/// Runs `f` compiled for the widest vector unit of the CPU (AVX-512, else AVX2 with FMA, else
/// the build's baseline). `f` must be an `#[inline(always)]` closure, so that its loop is
/// compiled inside the wrapper with the wrapper's instruction set. The arithmetic is the same
/// IEEE operations on every path (no fused multiply-adds), so the results are too.
#[inline(always)]
pub(super) fn vectorised<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has the wrapper's instruction set.
            return unsafe { avx512(f) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: as above.
            return unsafe { avx2(f) };
        }
    }
    f()
}

/// [`vectorised`] with AVX-512.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn avx512<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// [`vectorised`] with AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// Fills a new vector of `len` values chunk by chunk on the rayon pool: `fill(offset, chunk)`
/// writes the elements `offset..offset + chunk.len()`. Each element is computed by one call
/// whatever the thread count, so the values do not depend on it.
///
/// # Safety
/// `fill` must write every element of each chunk it is given.
pub(super) unsafe fn filled(
    len: usize,
    fill: impl Fn(usize, &mut [MaybeUninit<f32>]) + Sync,
) -> Vec<f32> {
    let mut out = Vec::with_capacity(len);
    out.spare_capacity_mut()[..len]
        .par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(i, chunk)| fill(i * CHUNK, chunk));
    // SAFETY: `fill` wrote each of the `len` elements (the caller's contract).
    unsafe { out.set_len(len) };
    out
}

/// Two vectors of `len` values filled together, as [`filled`] does one.
///
/// # Safety
/// `fill` must write every element of both chunks it is given.
pub(super) unsafe fn filled_pair(
    len: usize,
    fill: impl Fn(usize, &mut [MaybeUninit<f32>], &mut [MaybeUninit<f32>]) + Sync,
) -> (Vec<f32>, Vec<f32>) {
    let (mut a, mut b) = (Vec::with_capacity(len), Vec::with_capacity(len));
    a.spare_capacity_mut()[..len]
        .par_chunks_mut(CHUNK)
        .zip(b.spare_capacity_mut()[..len].par_chunks_mut(CHUNK))
        .enumerate()
        .for_each(|(i, (x, y))| fill(i * CHUNK, x, y));
    // SAFETY: `fill` wrote each of the `len` elements of both (the caller's contract).
    unsafe {
        a.set_len(len);
        b.set_len(len);
    }
    (a, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulps(a: f32, b: f32) -> u32 {
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
    }

    #[test]
    fn exp_is_within_two_ulp_of_std_and_clamps_outside_the_normal_range() {
        let mut worst = 0;
        for i in 0..=1_000_000 {
            let x = -87.0 + 175.0 * i as f32 / 1e6;
            worst = worst.max(ulps(exp(x), x.exp()));
        }
        assert!(worst <= 2, "{worst} ulp");
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(-1000.0) > 0.0 && exp(-1000.0) < 1.3e-38);
        assert!(exp(1000.0).is_finite() && exp(1000.0) > 1e38);
        assert!(exp(f32::NAN).is_nan());
    }

    #[test]
    fn sigmoid_matches_its_definition_and_saturates() {
        for i in -2000..=2000 {
            let x = i as f32 / 40.0;
            let exact = 1.0 / (1.0 + (-(x as f64)).exp());
            assert!(
                (sigmoid(x) as f64 - exact).abs() <= 4e-7 * exact.max(1e-30),
                "{x}"
            );
        }
        assert_eq!(sigmoid(200.0), 1.0);
        assert!(sigmoid(-200.0) >= 0.0 && sigmoid(-200.0) < 1e-37);
    }

    #[test]
    fn lane_sum_adds_every_term() {
        for len in [0, 1, 15, 16, 17, 100] {
            let sum = lane_sum(len, |i| i as f32);
            assert_eq!(sum, (len * len.saturating_sub(1) / 2) as f32, "{len}");
        }
    }

    #[test]
    fn filled_writes_every_element_from_its_offset() {
        for len in [0, 1, CHUNK, CHUNK + 1, 5 * CHUNK + 17] {
            let fill = |offset: usize, chunk: &mut [MaybeUninit<f32>]| {
                for (i, x) in chunk.iter_mut().enumerate() {
                    x.write((offset + i) as f32);
                }
            };
            let expected: Vec<f32> = (0..len).map(|i| i as f32).collect();
            // SAFETY: `fill` writes every element of its chunk.
            assert_eq!(unsafe { filled(len, fill) }, expected);
            // SAFETY: as above, for both chunks.
            let (a, b) = unsafe {
                filled_pair(len, |offset, x, y| {
                    fill(offset, x);
                    fill(offset, y);
                })
            };
            assert_eq!((a, b), (expected.clone(), expected));
        }
    }
}
