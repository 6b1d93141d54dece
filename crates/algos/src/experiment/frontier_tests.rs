use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;

const PROMPTS: usize = 200;

/// A cell whose every seed wins each prompt with probability `rate` (or exactly `rate` on
/// every prompt when `exact`) and whose KL samples (every other prompt) average `kl[s]` for
/// seed `s`.
fn cell(rate: f64, kl: &[f64], exact: bool, rng: &mut ChaCha8Rng) -> CellOutcomes {
    let wins = kl
        .iter()
        .map(|_| {
            (0..PROMPTS)
                .map(|_| match exact {
                    true => rate,
                    false => f64::from(u8::from(rng.random::<f64>() < rate)),
                })
                .collect()
        })
        .collect();
    let kl = kl
        .iter()
        .map(|&k| (0..PROMPTS).step_by(2).map(|p| (p, k)).collect())
        .collect();
    CellOutcomes { wins, kl }
}

/// A frontier along `win = offset + slope * KL` through the given KLs, two seeds per cell,
/// seed KLs `k - spread` and `k + spread`.
fn line(
    offset: f64,
    slope: f64,
    kls: &[f64],
    spread: f64,
    exact: bool,
    rng: &mut ChaCha8Rng,
) -> Vec<CellOutcomes> {
    kls.iter()
        .map(|&k| cell(offset + slope * k, &[k - spread, k + spread], exact, rng))
        .collect()
}

#[test]
fn curves_interpolate_linearly_inside_their_range_only() {
    let points = [(1.0, 0.2), (3.0, 0.6), (7.0, 0.4)];
    assert_eq!(interpolate(&points, 1.0), Some(0.2));
    assert!((interpolate(&points, 2.0).unwrap() - 0.4).abs() < 1e-12);
    assert!((interpolate(&points, 5.0).unwrap() - 0.5).abs() < 1e-12);
    assert_eq!(interpolate(&points, 7.0), Some(0.4));
    assert_eq!(interpolate(&points, 0.5), None);
    assert_eq!(interpolate(&points, 7.5), None);
    assert_eq!(interpolate(&[], 1.0), None);
    // Flat 0.5 against 0.25 + 0.025 KL on [0, 20]: they cross at KL 10, the mean gap is 0.
    let flat = [(0.0, 0.5), (20.0, 0.5)];
    let rising = [(0.0, 0.25), (20.0, 0.75)];
    let crossed = crossings(&flat, &rising);
    assert_eq!(crossed.len(), 1);
    assert!((crossed[0] - 10.0).abs() < 1e-12);
    assert!(mean_gap(&flat, &rising, (0.0, 20.0)).unwrap().abs() < 1e-12);
    // Over [0, 10]: gap 0.25 - 0.025 KL, mean 0.125; a curve that stops at 10 has no mean
    // gap over [0, 20].
    let short = [(0.0, 0.25), (10.0, 0.5)];
    assert!((mean_gap(&flat, &short, (0.0, 10.0)).unwrap() - 0.125).abs() < 1e-12);
    assert!((mean_gap(&flat, &rising, (0.0, 10.0)).unwrap() - 0.125).abs() < 1e-12);
    assert_eq!(mean_gap(&flat, &short, (0.0, 20.0)), None);
    // A gap of exactly zero at a breakpoint, between gaps of opposite signs: one crossing there.
    let kinked = [(0.0, 0.25), (10.0, 0.5), (20.0, 0.75)];
    assert_eq!(crossings(&flat, &kinked), vec![10.0]);
    // Touching without changing sign is no crossing.
    let touching = [(0.0, 0.25), (10.0, 0.5), (20.0, 0.25)];
    assert!(crossings(&flat, &touching).is_empty());
    // Curves that cover no common KL range are not compared.
    assert_eq!(
        common_range(&[(0.0, 0.1), (1.0, 0.2)], &[(2.0, 0.1), (3.0, 0.2)]),
        None
    );
}

#[test]
fn a_known_gap_at_matched_kl_is_found_exactly() {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    // win = 0.3 + 0.02 KL at KL 5, 10, 20 against win = 0.2 + 0.02 KL at KL 4, 12, 25: the
    // points sit at different KL (no beta matches), yet at any common KL the gap is 0.1.
    let a = line(0.3, 0.02, &[5.0, 10.0, 20.0], 0.0, true, &mut rng);
    let b = line(0.2, 0.02, &[4.0, 12.0, 25.0], 0.0, true, &mut rng);
    let gap = compare_frontiers(&a, &b, None, 500, 1).unwrap();
    assert_eq!(gap.range, (5.0, 20.0));
    let kls: Vec<f64> = gap.at.iter().map(|g| g.kl).collect();
    assert_eq!(kls, vec![6.875, 10.625, 14.375, 18.125]);
    for g in &gap.at {
        assert!((g.a - g.b - 0.1).abs() < 1e-12, "{g:?}");
        assert!((g.gap.value - 0.1).abs() < 1e-12);
        // No spread anywhere: every resample finds the same gap.
        assert!((g.gap.low - 0.1).abs() < 1e-12 && (g.gap.high - 0.1).abs() < 1e-12);
        assert_eq!(g.defined, 1.0);
    }
    assert_eq!(gap.mean_range, (6.875, 18.125));
    assert!((gap.mean.value - 0.1).abs() < 1e-12);
    assert_eq!(gap.mean_defined, 1.0);
    assert!(gap.crossings.is_empty());
    // Asked-for KL values outside the common range are left out.
    let asked = compare_frontiers(&a, &b, Some(&[2.0, 8.0, 30.0]), 100, 1).unwrap();
    assert_eq!(asked.at.len(), 1);
    assert_eq!(asked.at[0].kl, 8.0);
    // Frontiers that never meet in KL.
    let far = line(0.2, 0.02, &[30.0, 40.0], 0.0, true, &mut rng);
    assert_eq!(compare_frontiers(&a, &far, None, 100, 1), None);
}

#[test]
fn the_bootstrap_covers_the_true_gap_and_counts_seed_spread() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    // Wide enough that curves moved by 3 nats still cover the range of the mean gap.
    let kls = [2.0, 8.0, 16.0, 28.0];
    // 0/1 outcomes drawn with the rates of the lines above: the true gap is 0.1 everywhere.
    let a = line(0.3, 0.02, &kls, 0.0, false, &mut rng);
    let b = line(0.2, 0.02, &kls, 0.0, false, &mut rng);
    let same_kl = compare_frontiers(&a, &b, None, 1000, 3).unwrap();
    let m = same_kl.mean;
    assert!(m.low < 0.1 && 0.1 < m.high, "{m:?}");
    assert!(m.low < m.value && m.value < m.high);
    assert!(m.high - m.low > 0.02 && m.high - m.low < 0.2, "{m:?}");
    // The same outcomes, but the two seeds of every cell land 6 nats apart in KL (means
    // unchanged), seed 0 below the mean for `a` and above it for `b`: a resample that draws
    // one seed index twice moves the curves apart, so the interval widens.
    let spread = |cells: &[CellOutcomes], d: f64| -> Vec<CellOutcomes> {
        cells
            .iter()
            .map(|c| {
                let shift = |s: usize, d: f64| c.kl[s].iter().map(|&(p, k)| (p, k + d)).collect();
                CellOutcomes {
                    wins: c.wins.clone(),
                    kl: vec![shift(0, -d), shift(1, d)],
                }
            })
            .collect()
    };
    let apart = compare_frontiers(&spread(&a, 3.0), &spread(&b, -3.0), None, 1000, 3).unwrap();
    assert!((apart.mean.value - m.value).abs() < 1e-12);
    assert!(apart.mean.high - apart.mean.low > m.high - m.low);
    assert!(apart.mean_defined > 0.9);
}

#[test]
fn a_draw_weights_prompts_and_seeds_by_how_often_they_were_drawn() {
    // Two seeds, four prompts; KL samples on prompts 0 and 2 only.
    let cell = CellOutcomes {
        wins: vec![vec![1.0, 0.0, 0.0, 1.0], vec![0.0, 0.0, 1.0, 1.0]],
        kl: vec![vec![(0, 2.0), (2, 6.0)], vec![(0, 10.0), (2, f64::NAN)]],
    };
    // Prompt 0 drawn twice, prompt 3 twice; seed 0 twice (seed 1, whose KL is not a number on
    // prompt 2, not at all).
    let draw = Draw {
        prompts: vec![2.0, 0.0, 0.0, 2.0],
        seeds: vec![2.0, 0.0],
        drawn: 4.0,
    };
    let (kl, win) = draw.point(&cell);
    assert_eq!(win, 1.0);
    assert_eq!(kl, 2.0);
    // Prompts 0, 1, 2 and 2; seeds 0 and 1 once each: wins (1 + 0 + 0 + 0) / 4 and
    // (0 + 0 + 1 + 1) / 4; KLs (2 + 2 x 6) / 3 and (10 + 2 x NaN) / 3.
    let draw = Draw {
        prompts: vec![1.0, 1.0, 2.0, 0.0],
        seeds: vec![1.0, 1.0],
        drawn: 4.0,
    };
    let (kl, win) = draw.point(&cell);
    assert!((win - (0.25 + 0.5) / 2.0).abs() < 1e-12);
    assert!(kl.is_nan());
    let without_nan = CellOutcomes {
        kl: vec![cell.kl[0].clone(), vec![(0, 10.0), (2, 1.0)]],
        ..cell
    };
    let (kl, _) = draw.point(&without_nan);
    assert!((kl - ((2.0 + 12.0) / 3.0 + (10.0 + 2.0) / 3.0) / 2.0).abs() < 1e-12);
}

#[test]
fn pairing_by_prompt_narrows_the_interval_of_a_constant_gap() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let kls = [4.0, 8.0, 16.0, 24.0];
    let a = line(0.4, 0.02, &kls, 0.0, false, &mut rng);
    // `b` wins exactly where `a` does, except on every tenth prompt that `a` wins: the gap is
    // near 0.1 x a's win rate on every resample that keeps the prompts paired.
    let b: Vec<CellOutcomes> = a
        .iter()
        .map(|c| CellOutcomes {
            wins: c
                .wins
                .iter()
                .map(|w| {
                    w.iter()
                        .enumerate()
                        .map(|(p, v)| if p % 10 == 0 { 0.0 } else { *v })
                        .collect()
                })
                .collect(),
            kl: c.kl.clone(),
        })
        .collect();
    let paired = compare_frontiers(&a, &b, None, 1000, 5).unwrap().mean;
    let independent = line(0.4, 0.02, &kls, 0.0, false, &mut rng);
    let unpaired = compare_frontiers(&independent, &b, None, 1000, 5)
        .unwrap()
        .mean;
    assert!(paired.low > 0.0, "{paired:?}");
    assert!(
        (paired.high - paired.low) < 0.8 * (unpaired.high - unpaired.low),
        "{paired:?} {unpaired:?}"
    );
}
