//! The report: `results.md` and its plots.

use std::path::{Path, PathBuf};

use crate::error::AlgoError;
use crate::eval::Interval;
use crate::experiment::config::Method;
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
            },
            Series {
                label: "BPO",
                points: per_method(Method::Bpo, &by_f, &win),
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
            },
            Series {
                label: "BPO",
                points: per_method(Method::Bpo, &kl, &gold),
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

fn interval(i: &Interval) -> String {
    format!(
        "{:.1}% [{:.1}, {:.1}]",
        100.0 * i.value,
        100.0 * i.low,
        100.0 * i.high
    )
}

/// The Markdown report.
pub fn results_markdown(results: &ExperimentResults, plots: &[PathBuf]) -> String {
    let config = &results.config;
    let mut md = String::new();
    md.push_str("# bpo experiment\n\n");
    md.push_str(&format!(
        "Model `{}`, prompts `{}`, gold annotator {}, held-out judge {}. Budget {} annotated pairs per run, {} seed(s), evaluated on {} prompts of `{}` (greedy, {} new tokens; ties lose). Wall time {:.0} s.\n\n",
        config.online.model,
        config.online.prompts,
        results.gold,
        results.heldout.as_deref().unwrap_or("none"),
        config.online.budget,
        config.seeds,
        results.initial.prompts,
        config.eval.prompts,
        config.eval.settings.max_new_tokens,
        results.seconds
    ));
    for &loss in &config.losses {
        md.push_str(&format!("## {}\n\n", loss.name()));
        md.push_str("| method | F | win rate vs reference (95% CI) | gold score | held-out judge win rate | mean length | distinct-2 | KL to initial | budget | train time (s) |\n");
        md.push_str("|---|---|---|---|---|---|---|---|---|---|\n");
        for row in results.rows.iter().filter(|r| r.loss == loss) {
            let (method, f) = match row.method {
                Some(m) => (m.label().to_owned(), row.phases.to_string()),
                None => ("initial policy".to_owned(), "-".to_owned()),
            };
            md.push_str(&format!(
                "| {method} | {f} | {} | {:.3} | {} | {:.1} | {:.3} | {} | {} | {:.0} |\n",
                interval(&row.win_rate),
                row.gold_score,
                row.heldout_win_rate
                    .as_ref()
                    .map(interval)
                    .unwrap_or_else(|| "-".into()),
                row.mean_tokens,
                row.distinct_2,
                row.kl_initial
                    .map(|k| format!("{k:.3}"))
                    .unwrap_or_else(|| "-".into()),
                row.budget,
                row.train_seconds
            ));
        }
        md.push('\n');
        for c in results.comparisons.iter().filter(|c| c.loss == loss) {
            md.push_str(&format!(
                "- {}: win-rate difference {:+.1} points [{:+.1}, {:+.1}], paired bootstrap p = {:.3}\n",
                c.label,
                100.0 * c.difference.value,
                100.0 * c.difference.low,
                100.0 * c.difference.high,
                c.p_value
            ));
        }
        md.push('\n');
    }
    if !plots.is_empty() {
        md.push_str("## Plots\n\n");
        for p in plots {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            md.push_str(&format!("![{name}]({name})\n\n"));
        }
    }
    md
}
