//! The statistics of the results table: each cell's seeds pooled, and BPO compared with the
//! baselines on paired outcomes.

use crate::eval::{EvalReport, bootstrap_mean, paired_bootstrap};
use crate::experiment::config::{ExperimentConfig, Method};
use crate::experiment::results::{Comparison, Row, RunResult};

pub(crate) fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    sum / n.max(1) as f64
}

/// Pools each cell's seeds into a row and compares BPO with the two baselines.
pub(crate) fn summarise(
    config: &ExperimentConfig,
    initial: &EvalReport,
    runs: &[RunResult],
) -> (Vec<Row>, Vec<Comparison>) {
    let settings = &config.eval.settings;
    let mut rows = Vec::new();
    let mut comparisons = Vec::new();
    for &loss in &config.losses {
        rows.push(Row {
            loss,
            method: None,
            phases: 0,
            win_rate: initial.win_rate,
            gold_score: initial.gold_score,
            heldout_win_rate: initial.heldout.as_ref().map(|h| h.1),
            mean_tokens: initial.mean_tokens,
            distinct_2: initial.distinct_2,
            kl_initial: initial.kl_initial,
            budget: 0,
            train_seconds: 0.0,
            seeds: 1,
        });
        let cell = |method: Method, phases: usize| -> Vec<&RunResult> {
            runs.iter()
                .filter(|r| r.loss == loss && r.method == method && r.phases == phases)
                .collect()
        };
        let pooled = |cell: &[&RunResult]| -> Vec<f64> {
            cell.iter()
                .flat_map(|r| r.report.wins.iter().copied())
                .collect()
        };
        let mut cells = vec![(Method::Offline, 1)];
        for &f in config.phases.iter().filter(|&&f| f > 1) {
            cells.push((Method::OnlineDap, f));
            cells.push((Method::Bpo, f));
        }
        for (method, phases) in cells {
            let c = cell(method, phases);
            if c.is_empty() {
                continue;
            }
            let heldout: Vec<f64> = c
                .iter()
                .flat_map(|r| r.report.heldout_wins.iter().copied())
                .collect();
            let heldout_win_rate = (!heldout.is_empty())
                .then(|| bootstrap_mean(&heldout, settings.bootstrap, settings.seed ^ 1));
            let kl: Vec<f64> = c.iter().filter_map(|r| r.report.kl_initial).collect();
            rows.push(Row {
                loss,
                method: Some(method),
                phases,
                win_rate: bootstrap_mean(&pooled(&c), settings.bootstrap, settings.seed),
                gold_score: mean(c.iter().map(|r| r.report.gold_score)),
                heldout_win_rate,
                mean_tokens: mean(c.iter().map(|r| r.report.mean_tokens)),
                distinct_2: mean(c.iter().map(|r| r.report.distinct_2)),
                kl_initial: (!kl.is_empty()).then(|| mean(kl.into_iter())),
                budget: c[0].budget,
                train_seconds: mean(c.iter().map(|r| r.train_seconds)),
                seeds: c.len(),
            });
        }
        for &f in config.phases.iter().filter(|&&f| f > 1) {
            let bpo = pooled(&cell(Method::Bpo, f));
            for (other, label) in [
                (cell(Method::Offline, 1), "offline DAP"),
                (cell(Method::OnlineDap, f), "online DAP"),
            ] {
                let other = pooled(&other);
                if other.len() == bpo.len() && !bpo.is_empty() {
                    let c = paired_bootstrap(&bpo, &other, settings.bootstrap, settings.seed);
                    comparisons.push(Comparison {
                        loss,
                        phases: f,
                        label: format!("BPO (F={f}) vs {label}"),
                        difference: c.difference,
                        p_value: c.p_value,
                    });
                }
            }
        }
    }
    (rows, comparisons)
}
