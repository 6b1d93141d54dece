//! Frontiers: where each method lands in (KL to the initial policy, win rate) space over a grid
//! of betas, and two methods compared at matched KL. A method's frontier at one F is the
//! piecewise-linear curve through its cells ordered by KL (each cell: one beta, its seeds
//! averaged). Two frontiers are compared where both are defined: the win-rate gap at chosen KL
//! values inside the KL range both cover, and its mean from the first to the last of them.
//! Intervals come from a bootstrap that resamples prompts (one draw shared by every cell, so
//! comparisons stay paired by prompt) and training seeds (one draw of seed indices shared by
//! every cell: runs with the same seed index start from the same samples); each resample
//! recomputes every cell's KL and win rate, the curves and the gaps.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::eval::Interval;

/// One cell's outcomes, seed by seed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CellOutcomes {
    /// `wins[s][p]`: seed `s`'s outcome on prompt `p` (by the judge compared).
    pub(crate) wins: Vec<Vec<f64>>,
    /// `kl[s]`: seed `s`'s KL samples, `(prompt index, log-ratio)`.
    pub(crate) kl: Vec<Vec<(usize, f64)>>,
}

/// One draw of the bootstrap: how often each prompt and each seed index was drawn.
struct Draw {
    prompts: Vec<f64>,
    seeds: Vec<f64>,
    /// The number of prompts drawn (the sum of `prompts`).
    drawn: f64,
}

impl Draw {
    fn identity(prompts: usize, seeds: usize) -> Self {
        Draw {
            prompts: vec![1.0; prompts],
            seeds: vec![1.0; seeds],
            drawn: prompts as f64,
        }
    }

    fn random(prompts: usize, seeds: usize, rng: &mut ChaCha8Rng) -> Self {
        let mut draw = Draw {
            prompts: vec![0.0; prompts],
            seeds: vec![0.0; seeds],
            drawn: prompts as f64,
        };
        for _ in 0..prompts {
            draw.prompts[rng.random_range(0..prompts)] += 1.0;
        }
        for _ in 0..seeds {
            draw.seeds[rng.random_range(0..seeds)] += 1.0;
        }
        draw
    }

    /// The mean over the drawn seeds of `per_seed` (seeds not drawn are not evaluated).
    fn over_seeds(&self, per_seed: impl Fn(usize) -> f64) -> f64 {
        let (sum, weight) = (self.seeds.iter().enumerate())
            .filter(|(_, k)| **k > 0.0)
            .fold((0.0, 0.0), |(s, w), (i, &k)| (s + k * per_seed(i), w + k));
        sum / weight
    }

    /// The cell's `(KL, win rate)` under this draw: each seed's means over the drawn prompts
    /// (the KL over those with a KL sample; not a number when none was drawn), averaged over
    /// the drawn seeds.
    fn point(&self, cell: &CellOutcomes) -> (f64, f64) {
        let win = self.over_seeds(|s| {
            let wins = &cell.wins[s];
            wins.iter()
                .zip(&self.prompts)
                .map(|(v, k)| v * k)
                .sum::<f64>()
                / self.drawn
        });
        let kl = self.over_seeds(|s| {
            let (sum, weight) = cell.kl[s].iter().fold((0.0, 0.0), |(sum, w), &(p, v)| {
                (sum + self.prompts[p] * v, w + self.prompts[p])
            });
            sum / weight
        });
        (kl, win)
    }
}

/// The curve through `points` at `x` (linear between the two points around it); none outside
/// the points' range of x. Points must be sorted by x.
pub(crate) fn interpolate(points: &[(f64, f64)], x: f64) -> Option<f64> {
    let first = points.first()?;
    let last = points.last()?;
    if !(first.0..=last.0).contains(&x) {
        return None;
    }
    let i = points.partition_point(|p| p.0 < x);
    if points[i].0 == x || i == 0 {
        return Some(points[i].1);
    }
    let (a, b) = (points[i - 1], points[i]);
    Some(a.1 + (b.1 - a.1) * (x - a.0) / (b.0 - a.0))
}

/// The KL range both curves cover, when it has a width.
pub(crate) fn common_range(a: &[(f64, f64)], b: &[(f64, f64)]) -> Option<(f64, f64)> {
    let low = a.first()?.0.max(b.first()?.0);
    let high = a.last()?.0.min(b.last()?.0);
    (high > low).then_some((low, high))
}

/// Every x where either curve has a point, inside `range`, with the range's ends.
fn breakpoints(a: &[(f64, f64)], b: &[(f64, f64)], (low, high): (f64, f64)) -> Vec<f64> {
    let mut xs: Vec<f64> = a
        .iter()
        .chain(b)
        .map(|p| p.0)
        .filter(|x| (low..=high).contains(x))
        .chain([low, high])
        .collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    xs
}

/// The mean of `a - b` over `range` (exact for piecewise-linear curves); none unless both
/// curves cover the whole range.
pub(crate) fn mean_gap(a: &[(f64, f64)], b: &[(f64, f64)], range: (f64, f64)) -> Option<f64> {
    let gap = |x| Some(interpolate(a, x)? - interpolate(b, x)?);
    let xs = breakpoints(a, b, range);
    if range.1 <= range.0 {
        return gap(range.0);
    }
    let mut area = 0.0;
    for w in xs.windows(2) {
        area += (w[1] - w[0]) * (gap(w[0])? + gap(w[1])?) / 2.0;
    }
    Some(area / (range.1 - range.0))
}

/// The KL values inside the common range where `a - b` changes sign (a gap of exactly zero at
/// a breakpoint between gaps of opposite signs is a crossing there).
pub(crate) fn crossings(a: &[(f64, f64)], b: &[(f64, f64)]) -> Vec<f64> {
    let Some(range) = common_range(a, b) else {
        return Vec::new();
    };
    let gap = |x| interpolate(a, x).unwrap_or(f64::NAN) - interpolate(b, x).unwrap_or(f64::NAN);
    let mut found = Vec::new();
    let mut last: Option<(f64, f64)> = None;
    let mut zero_at = None;
    for x in breakpoints(a, b, range) {
        let g = gap(x);
        if g == 0.0 {
            zero_at = zero_at.or(Some(x));
            continue;
        }
        if let Some((x0, g0)) = last
            && g0 * g < 0.0
        {
            found.push(zero_at.unwrap_or(x0 + (x - x0) * g0 / (g0 - g)));
        }
        (last, zero_at) = (Some((x, g)), None);
    }
    found
}

/// The gap between two frontiers at one KL value.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GapAt {
    /// The KL value (nats).
    pub kl: f64,
    /// The first frontier's win rate there.
    pub a: f64,
    /// The second's.
    pub b: f64,
    /// `a - b` with its 95% bootstrap interval over the resamples where both frontiers reach
    /// this KL (the others are left out, which favours resamples whose frontiers reach far:
    /// see `defined`).
    pub gap: Interval,
    /// Share of resamples where both frontiers reached this KL (an interval from less than
    /// [`RELIABLE`] of them is not read).
    pub defined: f64,
}

/// Two frontiers compared at matched KL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrontierGap {
    /// The KL range both frontiers cover (point estimate).
    pub range: (f64, f64),
    /// The gap at each compared KL value inside the range.
    pub at: Vec<GapAt>,
    /// The range the mean gap is taken over: from the first to the last compared KL value.
    pub mean_range: (f64, f64),
    /// The mean gap over `mean_range`, with its 95% interval over the resamples whose frontiers
    /// cover all of it.
    pub mean: Interval,
    /// Share of resamples whose frontiers covered `mean_range`.
    pub mean_defined: f64,
    /// Where the point-estimate frontiers cross (KL values).
    pub crossings: Vec<f64>,
}

/// The share of resamples an interval must come from to be read as one.
pub const RELIABLE: f64 = 0.9;

/// The 95% percentile interval of `samples` around `value` (the value itself when empty: see
/// the shares of defined resamples).
fn percentile_interval(value: f64, mut samples: Vec<f64>) -> Interval {
    if samples.is_empty() {
        return Interval {
            value,
            low: value,
            high: value,
        };
    }
    samples.sort_by(f64::total_cmp);
    let n = samples.len();
    let at = |q: f64| samples[((q * (n - 1) as f64).round() as usize).min(n - 1)];
    Interval {
        value,
        low: at(0.025),
        high: at(0.975),
    }
}

/// A frontier's points under one draw, sorted by KL (cells without a KL left out).
fn curve(draw: &Draw, cells: &[CellOutcomes]) -> Vec<(f64, f64)> {
    let mut points: Vec<(f64, f64)> = cells
        .iter()
        .map(|c| draw.point(c))
        .filter(|p| p.0.is_finite())
        .collect();
    points.sort_by(|x, y| x.0.total_cmp(&y.0));
    points
}

fn shape(cells: &[CellOutcomes]) -> (usize, usize) {
    let first = cells.first().map(|c| (c.wins[0].len(), c.wins.len()));
    first.unwrap_or((0, 0))
}

/// Compares frontier `a` with frontier `b` (each a list of cells over the same prompts and seed
/// indices) at the KL values `kl` (none: the midpoints of four equal parts of the range both
/// cover); none when they cover no common KL range or none of the KL values asked for is
/// inside it.
pub(crate) fn compare_frontiers(
    a: &[CellOutcomes],
    b: &[CellOutcomes],
    kl: Option<&[f64]>,
    resamples: usize,
    seed: u64,
) -> Option<FrontierGap> {
    let (prompts, seeds) = shape(a);
    let identity = Draw::identity(prompts, seeds);
    let (curve_a, curve_b) = (curve(&identity, a), curve(&identity, b));
    let range = common_range(&curve_a, &curve_b)?;
    let at: Vec<f64> = match kl {
        Some(values) => values
            .iter()
            .copied()
            .filter(|x| (range.0..=range.1).contains(x))
            .collect(),
        None => (0..4)
            .map(|i| range.0 + (range.1 - range.0) * (i as f64 + 0.5) / 4.0)
            .collect(),
    };
    if at.is_empty() {
        return None;
    }
    let first = at.iter().copied().fold(f64::INFINITY, f64::min);
    let last = at.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mean_range = if at.len() >= 2 { (first, last) } else { range };
    let mut at_samples = vec![Vec::with_capacity(resamples); at.len()];
    let mut mean_samples = Vec::with_capacity(resamples);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for _ in 0..resamples {
        let draw = Draw::random(prompts, seeds, &mut rng);
        let (ra, rb) = (curve(&draw, a), curve(&draw, b));
        for (x, samples) in at.iter().zip(&mut at_samples) {
            if let (Some(wa), Some(wb)) = (interpolate(&ra, *x), interpolate(&rb, *x)) {
                samples.push(wa - wb);
            }
        }
        mean_samples.extend(mean_gap(&ra, &rb, mean_range));
    }
    let share = |n: usize| n as f64 / resamples.max(1) as f64;
    let at = at
        .iter()
        .zip(at_samples)
        .map(|(&x, samples)| {
            let (wa, wb) = (
                interpolate(&curve_a, x).expect("in range"),
                interpolate(&curve_b, x).expect("in range"),
            );
            GapAt {
                kl: x,
                a: wa,
                b: wb,
                defined: share(samples.len()),
                gap: percentile_interval(wa - wb, samples),
            }
        })
        .collect();
    Some(FrontierGap {
        range,
        at,
        mean_range,
        mean_defined: share(mean_samples.len()),
        mean: percentile_interval(mean_gap(&curve_a, &curve_b, mean_range)?, mean_samples),
        crossings: crossings(&curve_a, &curve_b),
    })
}

#[cfg(test)]
#[path = "frontier_tests.rs"]
mod tests;
