//! The frontier part of the report: the points of every frontier, the matched-KL table, a
//! reading of which frontier is higher where, and the plots (win rate against KL, one curve per
//! method, each seed as a ring around its mean).

use std::fmt::Write;
use std::path::{Path, PathBuf};

use crate::error::AlgoError;
use crate::eval::Interval;
use crate::experiment::frontier::RELIABLE;
use crate::experiment::results::{Frontier, FrontierComparison, FrontierPoint};
use crate::loss::LossKind;
use crate::metrics::{Series, line_plot};

fn per_seed(values: &[f64], digits: usize, scale: f64) -> String {
    let parts: Vec<String> = values
        .iter()
        .map(|v| format!("{:.*}", digits, scale * v))
        .collect();
    parts.join(" / ")
}

fn points_table(md: &mut String, frontier: &Frontier, loss: LossKind) {
    md.push_str("| method | beta | KL to initial | per seed | gold win rate | per seed | held-out win rate | per seed |\n|---|---|---|---|---|---|---|---|\n");
    for curve in frontier.curves.iter().filter(|c| c.loss == loss) {
        for p in &curve.points {
            let heldout = |p: &FrontierPoint| {
                p.heldout_win_rate
                    .map(|h| format!("{:.1}%", 100.0 * h))
                    .unwrap_or_else(|| "-".into())
            };
            let _ = writeln!(
                md,
                "| {} | {} | {:.2} | {} | {:.1}% | {} | {} | {} |",
                curve.label(),
                p.beta,
                p.kl,
                per_seed(&p.kl_per_seed, 1, 1.0),
                100.0 * p.win_rate,
                per_seed(&p.win_rate_per_seed, 1, 100.0),
                heldout(p),
                per_seed(&p.heldout_per_seed, 1, 100.0),
            );
        }
    }
}

/// `+10.0 [+5.2, +14.1]` in points; `+10.0 (too few resamples)` when fewer than
/// [`RELIABLE`] of them gave a value.
fn gap(interval: &Interval, defined: f64) -> String {
    let points = |v: f64| format!("{:+.1}", 100.0 * v);
    match defined >= RELIABLE {
        true => format!(
            "{} [{}, {}]",
            points(interval.value),
            points(interval.low),
            points(interval.high)
        ),
        false => format!("{} (too few resamples)", points(interval.value)),
    }
}

fn gap_table(md: &mut String, comparisons: &[&FrontierComparison]) {
    md.push_str("| comparison | judge | at KL | first | second | gap, points [95% CI] | resamples where both reach it |\n|---|---|---|---|---|---|---|\n");
    for c in comparisons {
        let label = c.label();
        let Some(g) = &c.gap else {
            let _ = writeln!(md, "| {label} | {} | no common KL range | | | | |", c.judge);
            continue;
        };
        for at in &g.at {
            let _ = writeln!(
                md,
                "| {label} | {} | {:.2} | {:.1}% | {:.1}% | {} | {:.0}% |",
                c.judge,
                at.kl,
                100.0 * at.a,
                100.0 * at.b,
                gap(&at.gap, at.defined),
                100.0 * at.defined
            );
        }
        let _ = writeln!(
            md,
            "| {label} | {} | mean over {:.2}-{:.2} | | | {} | {:.0}% |",
            c.judge,
            g.mean_range.0,
            g.mean_range.1,
            gap(&g.mean, g.mean_defined),
            100.0 * g.mean_defined
        );
    }
}

/// One sentence per comparison: which frontier is higher over the compared KL range (when the
/// mean gap's interval excludes zero and enough resamples gave it), and where they cross.
fn reading(c: &FrontierComparison) -> String {
    let Some(gap) = &c.gap else {
        return format!(
            "{} ({}): the frontiers cover no common KL range.",
            c.label(),
            c.judge
        );
    };
    let m = gap.mean;
    let verdict = if gap.mean_defined < RELIABLE {
        "too few resamples cover this range to say which is higher".to_owned()
    } else if m.low > 0.0 {
        format!("{} is higher", c.first)
    } else if m.high < 0.0 {
        format!("{} is higher", c.second)
    } else {
        "neither is higher beyond the interval".into()
    };
    let within = format!("within KL {:.1}-{:.1}", gap.range.0, gap.range.1);
    let crossing = match gap.crossings.as_slice() {
        [] => format!("{within} they do not cross"),
        xs => {
            let at: Vec<String> = xs.iter().map(|x| format!("{x:.1}")).collect();
            format!("{within} they cross at KL {}", at.join(", "))
        }
    };
    format!(
        "{} ({}): over KL {:.1}-{:.1}, {verdict} (mean gap {}); {crossing}.",
        c.label(),
        c.judge,
        gap.mean_range.0,
        gap.mean_range.1,
        self::gap(&m, gap.mean_defined),
    )
}

/// Appends the frontier section of `loss` to `md`.
pub(crate) fn frontier_markdown(md: &mut String, frontier: &Frontier, loss: LossKind) {
    let _ = writeln!(
        md,
        "### Frontiers\n\nEach method ran at each beta of its frontier (`frontier.betas`; F values after the first at `frontier.more_phases_betas` when given), at its own learning rate. {}.\n",
        frontier.kl_estimator
    );
    points_table(md, frontier, loss);
    md.push_str("\nMatched KL: each frontier is the piecewise-linear curve through its points ordered by KL; two frontiers are compared only where both are defined (no extrapolation), at the midpoints of four equal parts of the KL range both cover (or at `frontier.kl`), and by the mean gap from the first to the last of those KL values. Intervals: 95% percentile bootstrap that resamples prompts and training-seed indices (each draw shared by every cell, so comparisons stay paired), recomputing every KL, win rate and curve; a resample whose frontiers do not reach a KL value (or cover the mean's range) gives no value there and is left out, which favours resamples whose frontiers reach far; the last column says how many gave one, and an interval from fewer than 90% of them is not read. With 2-3 seeds the resampling of seeds is coarse.\n\n");
    let comparisons: Vec<&FrontierComparison> = frontier
        .comparisons
        .iter()
        .filter(|c| c.loss == loss)
        .collect();
    gap_table(md, &comparisons);
    md.push('\n');
    for c in &comparisons {
        let _ = writeln!(md, "- {}", reading(c));
    }
    md.push('\n');
}

/// Draws win rate against KL for every method, by the gold and by the held-out judge.
pub(crate) fn frontier_plots(
    frontier: &Frontier,
    loss: LossKind,
    out: &Path,
) -> Result<Vec<PathBuf>, AlgoError> {
    let curves: Vec<_> = frontier.curves.iter().filter(|c| c.loss == loss).collect();
    let labels: Vec<String> = curves.iter().map(|c| c.label()).collect();
    let mut written = Vec::new();
    type Pick = fn(&FrontierPoint) -> (Option<f64>, &[f64]);
    let judges: [(&str, &str, Pick); 2] = [
        ("gold", "gold judge", |p| {
            (Some(p.win_rate), p.win_rate_per_seed.as_slice())
        }),
        ("heldout", "held-out judge", |p| {
            (p.heldout_win_rate, p.heldout_per_seed.as_slice())
        }),
    ];
    for (slug, judge, pick) in judges {
        let series: Vec<Series<'_>> = curves
            .iter()
            .zip(&labels)
            .map(|(curve, label)| Series {
                label,
                points: curve
                    .points
                    .iter()
                    .filter_map(|p| Some((p.kl, pick(p).0?)))
                    .collect(),
                cloud: curve
                    .points
                    .iter()
                    .flat_map(|p| p.kl_per_seed.iter().copied().zip(pick(p).1.iter().copied()))
                    .collect(),
            })
            .collect();
        if series.iter().all(|s| s.points.is_empty()) {
            continue;
        }
        let path = out.join(format!("frontier_{slug}_{}.png", loss.name()));
        line_plot(
            &path,
            &format!(
                "{}: win rate ({judge}) vs KL to the initial policy",
                loss.name()
            ),
            "KL(policy || initial), nats",
            "win rate vs reference",
            &series,
        )?;
        written.push(path);
    }
    Ok(written)
}
