//! The report: `results.md` (tables with cluster-bootstrap intervals, per-seed win rates,
//! paired comparisons, where the time went, the tuning grid, example continuations) and the
//! short summary printed at the end.

use std::fmt::Write;
use std::path::PathBuf;

use crate::eval::Interval;
use crate::experiment::frontier_report::frontier_markdown;
use crate::experiment::results::{ExperimentResults, Row};

fn interval(i: &Interval) -> String {
    format!(
        "{:.1}% [{:.1}, {:.1}]",
        100.0 * i.value,
        100.0 * i.low,
        100.0 * i.high
    )
}

/// `p = 0.012`, or `p <= 0.001` where no resample fell on the other side of zero (the smallest
/// p-value `resamples` bootstrap means can give is 2 / resamples).
fn p_value(p: f64, resamples: usize) -> String {
    let floor = 2.0 / resamples.max(1) as f64;
    if p <= floor * (1.0 + 1e-9) {
        format!("p <= {floor:.3}")
    } else {
        format!("p = {p:.3}")
    }
}

fn name(row: &Row) -> String {
    match row.method {
        Some(m) => m.label().to_owned(),
        None => "initial policy".into(),
    }
}

fn phases(row: &Row) -> String {
    match row.method {
        Some(_) => row.phases.to_string(),
        None => "-".into(),
    }
}

fn rows_table(md: &mut String, rows: &[&Row]) {
    md.push_str("| method | F | lr | beta | win rate vs reference (95% CI) | win rate per seed | gold score | held-out judge win rate | mean length | no sentence end within the limit | distinct-2 | KL to initial | pairs kept | steps |\n");
    md.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for row in rows {
        let (lr, beta) = row
            .settings
            .map(|s| (format!("{}", s.lr), format!("{}", s.beta)))
            .unwrap_or(("-".into(), "-".into()));
        let per_seed: Vec<String> = row
            .per_seed
            .iter()
            .map(|w| format!("{:.1}", 100.0 * w))
            .collect();
        let _ = writeln!(
            md,
            "| {} | {} | {lr} | {beta} | {} | {} | {:.3} | {} | {:.1} | {:.0}% | {:.3} | {} | {:.0} | {:.0} |",
            name(row),
            phases(row),
            interval(&row.win_rate),
            per_seed.join(" / "),
            row.gold_score,
            row.heldout_win_rate
                .as_ref()
                .map(interval)
                .unwrap_or_else(|| "-".into()),
            row.mean_tokens,
            100.0 * row.capped,
            row.distinct_2,
            // The initial policy's KL to itself is zero by definition.
            row.kl_initial
                .filter(|_| row.method.is_some())
                .map(|k| format!("{k:.2}"))
                .unwrap_or_else(|| "-".into()),
            row.pairs,
            row.steps,
        );
    }
}

fn timing_table(md: &mut String, rows: &[&Row]) {
    md.push_str("| method | F | sampling (s) | reference pass (s) | training (s) | evaluation (s) | learning curves (s) |\n");
    md.push_str("|---|---|---|---|---|---|---|\n");
    for row in rows.iter().filter(|r| r.method.is_some()) {
        let t = &row.timing;
        let _ = writeln!(
            md,
            "| {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} |",
            name(row),
            phases(row),
            t.sampling,
            t.reference,
            t.training,
            t.evaluation,
            t.curves
        );
    }
}

fn examples(md: &mut String, results: &ExperimentResults, count: usize) {
    let n = results.initial.responses.len();
    if n == 0 {
        return;
    }
    md.push_str("## What the policies write\n\nGreedy continuations of evenly spaced test prompts (seed 0 of each method):\n\n");
    for p in (0..count.min(n)).map(|i| i * n / count.min(n)) {
        let (prompt, genre) = &results.prompts[p];
        let _ = writeln!(md, "**{prompt}** ({genre})\n");
        let _ = writeln!(md, "- initial policy: {:?}", results.initial.responses[p]);
        for run in results.runs.iter().filter(|r| r.seed == 0) {
            let _ = writeln!(
                md,
                "- {} (F={}, beta {}): {:?}",
                run.method.label(),
                run.phases,
                run.settings.beta,
                run.report.responses[p]
            );
        }
        md.push('\n');
    }
}

/// The Markdown report.
pub fn results_markdown(results: &ExperimentResults, plots: &[PathBuf]) -> String {
    let config = &results.config;
    let mut md = String::new();
    md.push_str("# bpo experiment\n\n");
    let _ = writeln!(
        md,
        "Model `{}`, training prompts `{}`, gold annotator {}, held-out judge {}. Budget {} annotated pairs per run, {} seed(s) per method. Evaluated on {} prompts of `{}` ({}; greedy, at most {} new tokens; ties lose). Wall time {:.0} s.\n",
        config.online.model,
        config.online.prompts,
        results.gold,
        results.heldout.as_deref().unwrap_or("none"),
        config.online.budget,
        config.seeds,
        results.initial.prompts,
        config.eval.prompts,
        match config.eval.limit {
            Some(n) => format!(
                "a sample of {n} stratified by genre, seed {}",
                config.eval.sample_seed
            ),
            None => "every prompt".into(),
        },
        config.eval.settings.max_new_tokens,
        results.seconds
    );
    md.push_str("Intervals and p-values come from a cluster bootstrap over prompts: each resampled prompt carries all of its seeds, whose outcomes are averaged, so seeds are not counted as independent trials. Comparisons pair the outcomes of two methods on the same prompts; the initial policy decodes greedily, so it has one outcome per prompt. These intervals describe these trained policies on this prompt population; the spread between training seeds is not part of them. The interval \"over seeds\" is: the mean of the per-seed differences with a 95% t-interval over seeds, which describes the training method. p-values are two-sided and not corrected for the number of comparisons; `p <= 2/R` means no bootstrap resample (R of them) fell on the other side of zero.\n\n");
    for &loss in &config.losses {
        let rows: Vec<&Row> = results.rows.iter().filter(|r| r.loss == loss).collect();
        let _ = writeln!(md, "## {}\n", loss.name());
        rows_table(&mut md, &rows);
        md.push('\n');
        for c in results.comparisons.iter().filter(|c| c.loss == loss) {
            let over_seeds = c
                .over_seeds
                .map(|i| {
                    format!(
                        "; over seeds [{:+.1}, {:+.1}]",
                        100.0 * i.low,
                        100.0 * i.high
                    )
                })
                .unwrap_or_default();
            let _ = writeln!(
                md,
                "- {}: win-rate difference {:+.1} points [{:+.1}, {:+.1}], {}{over_seeds}",
                c.label,
                100.0 * c.difference.value,
                100.0 * c.difference.low,
                100.0 * c.difference.high,
                p_value(c.p_value, config.eval.settings.bootstrap)
            );
        }
        if let Some(frontier) = &results.frontier {
            frontier_markdown(&mut md, frontier, loss);
        }
        md.push_str("\nWhere a run's time went (mean per run):\n\n");
        timing_table(&mut md, &rows);
        md.push('\n');
    }
    if let Some(tuning) = &results.tuning {
        let _ = writeln!(
            md,
            "## Tuning on dev\n\nEvery method ran the same grid on {} dev prompts ({:.0} s); the test prompts were evaluated only after the choice.\n",
            tuning.prompts, tuning.seconds
        );
        md.push_str("| method | lr | beta | dev win rate (95% CI) | gold score | KL to initial | chosen |\n|---|---|---|---|---|---|---|\n");
        for c in &tuning.cells {
            let chosen = tuning
                .chosen
                .iter()
                .any(|(m, s)| *m == c.method && *s == c.settings);
            let _ = writeln!(
                md,
                "| {} (F={}) | {} | {} | {} | {:.3} | {} | {} |",
                c.method.label(),
                c.phases,
                c.settings.lr,
                c.settings.beta,
                interval(&c.win_rate),
                c.gold_score,
                c.kl_initial
                    .map(|k| format!("{k:.2}"))
                    .unwrap_or_else(|| "-".into()),
                if chosen { "yes" } else { "" }
            );
        }
        md.push('\n');
    }
    examples(&mut md, results, 6);
    if !plots.is_empty() {
        md.push_str("## Plots\n\n");
        for p in plots {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            let _ = writeln!(md, "![{name}]({name})\n");
        }
    }
    md
}

/// Three lines for the end of a run: the win rates, BPO against the others, and each method
/// against the initial policy.
pub fn summary_lines(results: &ExperimentResults) -> Vec<String> {
    let loss = results.config.losses[0];
    let rows: Vec<String> = results
        .rows
        .iter()
        .filter(|r| r.loss == loss)
        .map(|r| format!("{} {:.1}%", name(r), 100.0 * r.win_rate.value))
        .collect();
    let fmt = |filter: &dyn Fn(&str) -> bool| -> String {
        let parts: Vec<String> = results
            .comparisons
            .iter()
            .filter(|c| c.loss == loss && filter(&c.label))
            .map(|c| {
                format!(
                    "{}: {:+.1} points ({})",
                    c.label,
                    100.0 * c.difference.value,
                    p_value(c.p_value, results.config.eval.settings.bootstrap)
                )
            })
            .collect();
        if parts.is_empty() {
            "-".into()
        } else {
            parts.join("; ")
        }
    };
    vec![
        format!(
            "results: {}",
            results.config.out.join("results.md").display()
        ),
        format!(
            "win rate vs reference ({}): {}",
            loss.name(),
            rows.join(", ")
        ),
        format!(
            "BPO: {}",
            fmt(&|l: &str| l.contains("BPO") && !l.ends_with("initial policy"))
        ),
        format!(
            "vs initial: {}",
            fmt(&|l: &str| l.ends_with("initial policy"))
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::p_value;

    #[test]
    fn p_values_at_the_bootstrap_floor_are_bounds() {
        assert_eq!(p_value(0.001, 2000), "p <= 0.001");
        assert_eq!(p_value(0.01, 200), "p <= 0.010");
        assert_eq!(p_value(0.02, 2000), "p = 0.020");
        assert_eq!(p_value(1.0, 2000), "p = 1.000");
    }
}
