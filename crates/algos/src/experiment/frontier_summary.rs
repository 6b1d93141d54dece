//! The frontier section of an experiment's results: each method's points (one per beta) in
//! (KL to the initial policy, win rate) space, and every pair of methods at each F compared at
//! matched KL ([`crate::experiment::frontier`]), by the gold and the held-out judge.

use crate::experiment::config::{ExperimentConfig, Method};
use crate::experiment::frontier::{CellOutcomes, compare_frontiers};
use crate::experiment::results::{
    Frontier, FrontierComparison, FrontierCurve, FrontierPoint, RunResult,
};
use crate::experiment::stats::{Cell, cells_of, mean};

fn point(cell: &Cell<'_>) -> FrontierPoint {
    let kl_per_seed: Vec<f64> = cell
        .runs
        .iter()
        .map(|r| r.report.kl_initial.unwrap_or(f64::NAN))
        .collect();
    let win_rate_per_seed: Vec<f64> = cell.runs.iter().map(|r| r.report.win_rate.value).collect();
    let heldout_per_seed: Vec<f64> = cell
        .runs
        .iter()
        .filter_map(|r| r.report.heldout.as_ref().map(|h| h.1.value))
        .collect();
    FrontierPoint {
        beta: cell.settings.beta,
        kl: mean(kl_per_seed.iter().copied()),
        win_rate: mean(win_rate_per_seed.iter().copied()),
        heldout_win_rate: (!heldout_per_seed.is_empty())
            .then(|| mean(heldout_per_seed.iter().copied())),
        kl_per_seed,
        win_rate_per_seed,
        heldout_per_seed,
    }
}

/// The outcomes of `cells` by the gold (`heldout` false) or the held-out judge.
fn outcomes(cells: &[&Cell<'_>], heldout: bool) -> Vec<CellOutcomes> {
    cells
        .iter()
        .map(|c| CellOutcomes {
            wins: if heldout { c.heldout() } else { c.wins() },
            kl: c
                .runs
                .iter()
                .map(|r| r.report.kl_log_ratios.clone())
                .collect(),
        })
        .collect()
}

fn kl_estimator(config: &ExperimentConfig, runs: &[RunResult]) -> String {
    let settings = &config.eval.settings;
    let samples: Vec<usize> = runs.iter().map(|r| r.report.kl_log_ratios.len()).collect();
    let (fewest, most) = (
        samples.iter().copied().min().unwrap_or(0),
        samples.iter().copied().max().unwrap_or(0),
    );
    let prompts = runs.first().map_or(0, |r| r.report.prompt_texts.len());
    let count = match fewest == most {
        true => format!("{most}"),
        false => format!("{fewest}-{most}"),
    };
    let per_prompt = settings.kl_samples.max(1);
    let subset = match most / per_prompt >= prompts {
        true => format!("every one of the {prompts} evaluated prompts"),
        false => format!("an evenly spaced subset of the {prompts} evaluated prompts"),
    };
    format!(
        "KL(policy || initial) of a run: the mean of log policy(y|x) - log initial(y|x) over \
         {count} responses y sampled from the policy at temperature 1 (at most {} new tokens, \
         {per_prompt} per prompt, on {subset}); a cell's KL is the mean over its seeds",
        settings.max_new_tokens
    )
}

/// The frontier section of `runs`, when `config` is a frontier experiment and every run kept
/// its KL samples.
pub(crate) fn summarise_frontier(
    config: &ExperimentConfig,
    runs: &[RunResult],
) -> Option<Frontier> {
    let frontier = config.frontier.as_ref()?;
    if runs.iter().any(|r| r.report.kl_log_ratios.is_empty()) {
        return None;
    }
    let settings = &config.eval.settings;
    let mut curves = Vec::new();
    let mut comparisons = Vec::new();
    for &loss in &config.losses {
        let cells = cells_of(config, loss, runs);
        let mut groups: Vec<(Method, usize)> = Vec::new();
        for c in &cells {
            if !groups.contains(&(c.method, c.phases)) {
                groups.push((c.method, c.phases));
            }
        }
        let of = |method: Method, phases: usize| -> Vec<&Cell<'_>> {
            cells
                .iter()
                .filter(|c| (c.method, c.phases) == (method, phases))
                .collect()
        };
        for &(method, phases) in &groups {
            let mut points: Vec<FrontierPoint> =
                of(method, phases).into_iter().map(point).collect();
            points.sort_by(|a, b| a.kl.total_cmp(&b.kl));
            curves.push(FrontierCurve {
                loss,
                method,
                phases,
                points,
            });
        }
        let mut pairs = Vec::new();
        for &f in config.phases.iter().filter(|&&f| f > 1) {
            pairs.push(((Method::Bpo, f), (Method::OnlineDap, f)));
            pairs.push(((Method::Bpo, f), (Method::Offline, 1)));
            pairs.push(((Method::OnlineDap, f), (Method::Offline, 1)));
        }
        let judges: &[(&str, bool)] = match config.eval.heldout {
            Some(_) => &[("gold", false), ("held-out", true)],
            None => &[("gold", false)],
        };
        for ((ma, fa), (mb, fb)) in pairs {
            let (a, b) = (of(ma, fa), of(mb, fb));
            if a.is_empty() || b.is_empty() {
                continue;
            }
            for &(judge, heldout) in judges {
                comparisons.push(FrontierComparison {
                    loss,
                    first: ma.label_at(fa),
                    second: mb.label_at(fb),
                    judge: judge.into(),
                    gap: compare_frontiers(
                        &outcomes(&a, heldout),
                        &outcomes(&b, heldout),
                        frontier.kl.as_deref(),
                        settings.bootstrap,
                        settings.seed,
                    ),
                });
            }
        }
    }
    Some(Frontier {
        kl_estimator: kl_estimator(config, runs),
        curves,
        comparisons,
    })
}
