//! The statistics of the results table. Each cell's seeds are averaged per prompt and prompts
//! are resampled with all their seeds (cluster bootstrap); every method is compared with the
//! initial policy and with every other method, paired by prompt.

use crate::error::AlgoError;
use crate::eval::{EvalReport, Interval, cluster_bootstrap, paired_cluster_bootstrap};
use crate::experiment::config::{ExperimentConfig, Method, MethodSettings};
use crate::experiment::results::{Comparison, Row, RunResult, Timing};
use crate::loss::LossKind;

/// Two-sided 95% quantiles of Student's t for 1 to 30 degrees of freedom.
const T95: [f64; 30] = [
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
    2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
    2.052, 2.048, 2.045, 2.042,
];

/// Mean of `values` with its 95% t-interval (none for fewer than two values; the normal
/// quantile past 31 values).
pub(crate) fn t_interval(values: &[f64]) -> Option<Interval> {
    let n = values.len();
    if n < 2 {
        return None;
    }
    let value = mean(values.iter().copied());
    let variance = values.iter().map(|v| (v - value).powi(2)).sum::<f64>() / (n - 1) as f64;
    let quantile = T95.get(n - 2).copied().unwrap_or(1.96);
    let half = quantile * (variance / n as f64).sqrt();
    Some(Interval {
        value,
        low: value - half,
        high: value + half,
    })
}

/// The mean of `values` (0 when there are none).
pub(crate) fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    sum / n.max(1) as f64
}

/// A cell of the grid: its runs ordered by seed.
pub(crate) struct Cell<'a> {
    /// The method.
    pub(crate) method: Method,
    /// Collection phases.
    pub(crate) phases: usize,
    /// Learning rate and beta.
    pub(crate) settings: MethodSettings,
    /// One run per seed, by seed.
    pub(crate) runs: Vec<&'a RunResult>,
}

impl Cell<'_> {
    /// `BPO (F=2)`; with `beta`, `BPO (F=2, beta 0.1)`.
    fn label(&self, beta: bool) -> String {
        let label = self.method.label_at(self.phases);
        match (beta, label.strip_suffix(')')) {
            (false, _) => label,
            (true, Some(open)) => format!("{open}, beta {})", self.settings.beta),
            (true, None) => format!("{label} (beta {})", self.settings.beta),
        }
    }

    /// Gold outcomes: `[seed][prompt]`.
    pub(crate) fn wins(&self) -> Vec<Vec<f64>> {
        self.runs.iter().map(|r| r.report.wins.clone()).collect()
    }

    /// Held-out judge's outcomes: `[seed][prompt]` (empty per seed without a held-out judge).
    pub(crate) fn heldout(&self) -> Vec<Vec<f64>> {
        self.runs
            .iter()
            .map(|r| r.report.heldout_wins.clone())
            .collect()
    }
}

/// Every run must have evaluated the initial policy's prompts, in the same order, and each cell
/// must have one run per seed: otherwise outcomes would pair the wrong prompts or seeds.
fn check_pairing(initial: &EvalReport, runs: &[RunResult], seeds: usize) -> Result<(), AlgoError> {
    for run in runs {
        if run.report.prompt_texts != initial.prompt_texts {
            return Err(AlgoError::Config(format!(
                "run {} evaluated other prompts than the initial policy: outcomes cannot be paired by prompt",
                run.dir.display()
            )));
        }
    }
    let mut cells: Vec<(&RunResult, Vec<usize>)> = Vec::new();
    for run in runs {
        match cells.iter_mut().find(|(c, _)| {
            (c.loss, c.method, c.phases, c.settings)
                == (run.loss, run.method, run.phases, run.settings)
        }) {
            Some(cell) => cell.1.push(run.seed),
            None => cells.push((run, vec![run.seed])),
        }
    }
    for (run, mut found) in cells {
        found.sort_unstable();
        if found != (0..seeds).collect::<Vec<_>>() {
            return Err(AlgoError::Config(format!(
                "{} {} F={} lr {} beta {}: seeds {found:?}, expected 0..{seeds}: outcomes cannot be paired by seed",
                run.loss.name(),
                run.method.label(),
                run.phases,
                run.settings.lr,
                run.settings.beta
            )));
        }
    }
    Ok(())
}

fn row(loss: LossKind, cell: &Cell<'_>, config: &ExperimentConfig) -> Row {
    let settings = &config.eval.settings;
    let c = &cell.runs;
    let heldout = cell.heldout();
    let kl: Vec<f64> = c.iter().filter_map(|r| r.report.kl_initial).collect();
    let timing = Timing {
        sampling: mean(c.iter().map(|r| r.timing.sampling)),
        reference: mean(c.iter().map(|r| r.timing.reference)),
        training: mean(c.iter().map(|r| r.timing.training)),
        evaluation: mean(c.iter().map(|r| r.timing.evaluation)),
        curves: mean(c.iter().map(|r| r.timing.curves)),
    };
    Row {
        loss,
        method: Some(cell.method),
        phases: cell.phases,
        settings: Some(c[0].settings),
        win_rate: cluster_bootstrap(&cell.wins(), settings.bootstrap, settings.seed),
        per_seed: c.iter().map(|r| r.report.win_rate.value).collect(),
        gold_score: mean(c.iter().map(|r| r.report.gold_score)),
        heldout_win_rate: (!heldout[0].is_empty())
            .then(|| cluster_bootstrap(&heldout, settings.bootstrap, settings.seed ^ 1)),
        mean_tokens: mean(c.iter().map(|r| r.report.mean_tokens)),
        capped: mean(c.iter().map(|r| r.report.capped)),
        distinct_2: mean(c.iter().map(|r| r.report.distinct_2)),
        kl_initial: (!kl.is_empty()).then(|| mean(kl.into_iter())),
        pairs: mean(c.iter().map(|r| r.pairs as f64)),
        steps: mean(c.iter().map(|r| r.steps as f64)),
        timing,
        seeds: c.len(),
    }
}

fn initial_row(loss: LossKind, initial: &EvalReport) -> Row {
    Row {
        loss,
        method: None,
        phases: 0,
        settings: None,
        win_rate: initial.win_rate,
        per_seed: vec![initial.win_rate.value],
        gold_score: initial.gold_score,
        heldout_win_rate: initial.heldout.as_ref().map(|h| h.1),
        mean_tokens: initial.mean_tokens,
        capped: initial.capped,
        distinct_2: initial.distinct_2,
        kl_initial: initial.kl_initial,
        pairs: 0.0,
        steps: 0.0,
        timing: Timing::default(),
        seeds: 1,
    }
}

/// The cells of `loss`'s runs in the order of the grid (offline DAP, then online DAP and BPO
/// per F; each by beta), their runs ordered by seed.
pub(crate) fn cells_of<'a>(
    config: &ExperimentConfig,
    loss: LossKind,
    runs: &'a [RunResult],
) -> Vec<Cell<'a>> {
    let mut order = vec![(Method::Offline, 1)];
    for &f in config.phases.iter().filter(|&&f| f > 1) {
        order.extend([(Method::OnlineDap, f), (Method::Bpo, f)]);
    }
    let position = |c: &Cell<'_>| {
        let at = order.iter().position(|&o| o == (c.method, c.phases));
        (at.unwrap_or(order.len()), c.settings.beta, c.settings.lr)
    };
    let mut cells: Vec<Cell<'a>> = Vec::new();
    for run in runs.iter().filter(|r| r.loss == loss) {
        let key = (run.method, run.phases, run.settings);
        match cells
            .iter_mut()
            .find(|c| (c.method, c.phases, c.settings) == key)
        {
            Some(cell) => cell.runs.push(run),
            None => cells.push(Cell {
                method: run.method,
                phases: run.phases,
                settings: run.settings,
                runs: vec![run],
            }),
        }
    }
    for cell in &mut cells {
        cell.runs.sort_by_key(|r| r.seed);
    }
    cells.sort_by(|a, b| {
        position(a)
            .partial_cmp(&position(b))
            .expect("finite settings")
    });
    cells
}

/// The rows of the tables and the paired comparisons: every method against the initial policy
/// (greedy decoding is deterministic: one outcome per prompt) and every pair of methods.
pub(crate) fn summarise(
    config: &ExperimentConfig,
    initial: &EvalReport,
    runs: &[RunResult],
) -> Result<(Vec<Row>, Vec<Comparison>), AlgoError> {
    check_pairing(initial, runs, config.seeds)?;
    let settings = &config.eval.settings;
    let mut rows = Vec::new();
    let mut comparisons = Vec::new();
    for &loss in &config.losses {
        rows.push(initial_row(loss, initial));
        let cells = cells_of(config, loss, runs);
        let initial_wins = vec![initial.wins.clone()];
        let mut compare = |label: String, a: &[Vec<f64>], b: &[Vec<f64>]| {
            let c = paired_cluster_bootstrap(a, b, settings.bootstrap, settings.seed);
            // Seed s against seed s; a single outcome (the initial policy) against every seed.
            let rate = |w: &Vec<f64>| mean(w.iter().copied());
            let per_seed: Vec<f64> = a
                .iter()
                .enumerate()
                .map(|(s, w)| rate(w) - rate(&b[s.min(b.len() - 1)]))
                .collect();
            comparisons.push(Comparison {
                loss,
                label,
                difference: c.difference,
                p_value: c.p_value,
                over_seeds: t_interval(&per_seed),
            });
        };
        let frontier = config.frontier.is_some();
        for cell in &cells {
            rows.push(row(loss, cell, config));
            compare(
                format!("{} vs initial policy", cell.label(frontier)),
                &cell.wins(),
                &initial_wins,
            );
        }
        // Every pair of methods, the later (more online) one first; on a frontier, the pairs
        // at the same beta (the frontiers themselves are compared at matched KL).
        for (i, later) in cells.iter().enumerate().rev() {
            for earlier in cells[..i].iter().rev() {
                if frontier && earlier.settings.beta != later.settings.beta {
                    continue;
                }
                compare(
                    format!("{} vs {}", later.label(frontier), earlier.label(frontier)),
                    &later.wins(),
                    &earlier.wins(),
                );
            }
        }
    }
    Ok((rows, comparisons))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::experiment::config::MethodSettings;

    fn report(prompts: &[&str], wins: &[f64]) -> EvalReport {
        let value = wins.iter().sum::<f64>() / wins.len() as f64;
        EvalReport {
            prompts: prompts.len(),
            gold: "gold".into(),
            win_rate: Interval {
                value,
                low: value,
                high: value,
            },
            gold_score: 0.0,
            reference_score: 0.0,
            heldout: None,
            mean_tokens: 1.0,
            capped: 0.0,
            distinct_1: 1.0,
            distinct_2: 1.0,
            kl_initial: None,
            kl_log_ratios: Vec::new(),
            wins: wins.to_vec(),
            heldout_wins: Vec::new(),
            responses: vec![String::new(); prompts.len()],
            prompt_texts: prompts.iter().map(|p| p.to_string()).collect(),
        }
    }

    fn run(method: Method, seed: usize, prompts: &[&str], wins: &[f64]) -> RunResult {
        RunResult {
            loss: LossKind::Dpo,
            method,
            phases: if method == Method::Offline { 1 } else { 2 },
            seed,
            settings: MethodSettings { lr: 1.0, beta: 0.1 },
            dir: PathBuf::from(format!("{}-{seed}", method.slug())),
            budget: 4,
            pairs: 4,
            dropped_identical: 0,
            dropped_ties: 0,
            steps: 1,
            timing: Timing::default(),
            report: report(prompts, wins),
            curve: Vec::new(),
            phase_metrics: Vec::new(),
        }
    }

    fn config(seeds: usize) -> ExperimentConfig {
        ExperimentConfig {
            seeds,
            ..ExperimentConfig::default()
        }
    }

    #[test]
    fn summarise_pairs_outcomes_by_seed_and_prompt() {
        let prompts = ["a", "b", "c", "d"];
        let initial = report(&prompts, &[0.0, 0.0, 1.0, 0.0]);
        // BPO wins every prompt in both seeds; offline and online win one prompt per seed.
        let mut runs = Vec::new();
        for seed in 0..2 {
            runs.push(run(Method::Offline, seed, &prompts, &[1.0, 0.0, 0.0, 0.0]));
            runs.push(run(
                Method::OnlineDap,
                seed,
                &prompts,
                &[0.0, 1.0, 0.0, 0.0],
            ));
            runs.push(run(Method::Bpo, seed, &prompts, &[1.0; 4]));
        }
        let (rows, comparisons) = summarise(&config(2), &initial, &runs).unwrap();
        assert_eq!(rows.len(), 4);
        let bpo = rows.iter().find(|r| r.method == Some(Method::Bpo)).unwrap();
        assert_eq!(bpo.per_seed, vec![1.0, 1.0]);
        let find = |label: &str| comparisons.iter().find(|c| c.label == label).unwrap();
        // Paired by prompt: BPO - initial = (1, 1, 0, 1).
        assert!((find("BPO (F=2) vs initial policy").difference.value - 0.75).abs() < 1e-12);
        assert!((find("BPO (F=2) vs offline DAP").difference.value - 0.75).abs() < 1e-12);
        // Over seeds: 1.0 - 0.25 in both seeds, no spread.
        let over_seeds = find("BPO (F=2) vs initial policy").over_seeds.unwrap();
        assert!((over_seeds.value - 0.75).abs() < 1e-12);
        assert!((over_seeds.high - over_seeds.low).abs() < 1e-12);
        // Offline and online each win one prompt, different ones: no difference on average.
        assert!(
            find("online DAP (F=2) vs offline DAP")
                .difference
                .value
                .abs()
                < 1e-12
        );
        assert_eq!(comparisons.len(), 6);
    }

    #[test]
    fn summarise_refuses_outcomes_that_do_not_pair() {
        let prompts = ["a", "b"];
        let initial = report(&prompts, &[0.0, 1.0]);
        let good = || {
            vec![
                run(Method::Offline, 0, &prompts, &[1.0, 0.0]),
                run(Method::OnlineDap, 0, &prompts, &[1.0, 0.0]),
                run(Method::Bpo, 0, &prompts, &[1.0, 0.0]),
            ]
        };
        assert!(summarise(&config(1), &initial, &good()).is_ok());
        // A run evaluated on other prompts.
        let mut other = good();
        other[2] = run(Method::Bpo, 0, &["a", "z"], &[1.0, 0.0]);
        let err = summarise(&config(1), &initial, &other)
            .unwrap_err()
            .to_string();
        assert!(err.contains("other prompts"), "{err}");
        // A seed missing from a cell.
        let err = summarise(&config(2), &initial, &good())
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot be paired by seed"), "{err}");
    }

    #[test]
    fn seed_level_interval_is_the_t_interval_of_the_per_seed_differences() {
        assert_eq!(t_interval(&[0.5]), None);
        // Mean 2, sample sd 1, t(2) = 4.303: half-width 4.303 / sqrt(3).
        let i = t_interval(&[1.0, 2.0, 3.0]).unwrap();
        let half = 4.303 / 3f64.sqrt();
        assert!((i.value - 2.0).abs() < 1e-12);
        assert!((i.low - (2.0 - half)).abs() < 1e-12 && (i.high - (2.0 + half)).abs() < 1e-12);
        // Identical seeds: no spread, a zero-width interval.
        let same = t_interval(&[0.25; 5]).unwrap();
        assert_eq!((same.low, same.high), (0.25, 0.25));
    }
}
