//! The experiment's plots: win rate against pairs used, against F, and gold score against KL;
//! with `--frontier`, the frontiers instead.

use std::path::{Path, PathBuf};

use crate::error::AlgoError;
use crate::experiment::config::Method;
use crate::experiment::frontier_report::frontier_plots;
use crate::experiment::results::{ExperimentResults, Row, RunResult};
use crate::experiment::stats::mean;
use crate::metrics::{Series, line_plot};

pub(crate) fn plot_results(
    results: &ExperimentResults,
    out: &Path,
) -> Result<Vec<PathBuf>, AlgoError> {
    let mut written = Vec::new();
    let config = &results.config;
    for &loss in &config.losses {
        if config.frontier.is_some() {
            // One curve per method and F; the plots by F and by pairs would mix betas.
            if let Some(frontier) = &results.frontier {
                written.extend(frontier_plots(frontier, loss, out)?);
            }
            continue;
        }
        let name = loss.name();
        // Win rate against pairs used, per method and F (mean over seeds).
        let mut curves: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
        for row in results
            .rows
            .iter()
            .filter(|r| r.loss == loss && r.method.is_some())
        {
            let method = row.method.expect("filtered");
            let runs: Vec<&RunResult> = results
                .runs
                .iter()
                .filter(|r| r.loss == loss && r.method == method && r.phases == row.phases)
                .collect();
            let Some(first) = runs.first() else { continue };
            let points = first
                .curve
                .iter()
                .enumerate()
                .map(|(i, &(pairs, _))| {
                    let w = mean(runs.iter().filter_map(|r| r.curve.get(i).map(|p| p.1)));
                    (pairs as f64, w)
                })
                .collect();
            curves.push((format!("{} F={}", method.label(), row.phases), points));
        }
        let series: Vec<Series<'_>> = curves
            .iter()
            .map(|(label, points)| Series {
                label,
                points: points.clone(),
                cloud: Vec::new(),
            })
            .collect();
        let path = out.join(format!("win_rate_vs_pairs_{name}.png"));
        line_plot(
            &path,
            &format!("{name}: win rate (curve prompts) vs pairs used"),
            "annotated pairs used",
            "win rate vs reference",
            &series,
        )?;
        written.push(path);
        // Win rate and gold score against F / KL, one line per method.
        let per_method =
            |method: Method, x: &dyn Fn(&Row) -> Option<f64>, y: &dyn Fn(&Row) -> f64| {
                let mut points: Vec<(f64, f64)> = results
                    .rows
                    .iter()
                    .filter(|r| r.loss == loss)
                    .filter(|r| r.method == Some(method) || (r.method == Some(Method::Offline)))
                    .filter_map(|r| Some((x(r)?, y(r))))
                    .collect();
                points.sort_by(|a, b| a.0.total_cmp(&b.0));
                points
            };
        let by_f = |r: &Row| Some(r.phases as f64);
        let win = |r: &Row| r.win_rate.value;
        let f_series = [
            Series {
                label: "online DAP",
                points: per_method(Method::OnlineDap, &by_f, &win),
                cloud: Vec::new(),
            },
            Series {
                label: "BPO",
                points: per_method(Method::Bpo, &by_f, &win),
                cloud: Vec::new(),
            },
        ];
        let path = out.join(format!("win_rate_vs_f_{name}.png"));
        line_plot(
            &path,
            &format!("{name}: win rate vs collection phases F (F=1: offline)"),
            "F",
            "win rate vs reference",
            &f_series,
        )?;
        written.push(path);
        let kl = |r: &Row| r.kl_initial;
        let gold = |r: &Row| r.gold_score;
        let kl_series = [
            Series {
                label: "online DAP",
                points: per_method(Method::OnlineDap, &kl, &gold),
                cloud: Vec::new(),
            },
            Series {
                label: "BPO",
                points: per_method(Method::Bpo, &kl, &gold),
                cloud: Vec::new(),
            },
        ];
        let path = out.join(format!("gold_vs_kl_{name}.png"));
        line_plot(
            &path,
            &format!("{name}: gold score vs KL to the initial model"),
            "KL(policy || initial), nats",
            "mean gold score",
            &kl_series,
        )?;
        written.push(path);
    }
    Ok(written.into_iter().filter(|p| p.exists()).collect())
}
