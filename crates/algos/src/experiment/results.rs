//! What `bpo experiment` found: every run, the table rows and the paired comparisons.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::eval::{EvalReport, Interval};
use crate::experiment::config::{ExperimentConfig, Method};
use crate::loss::LossKind;
use crate::online::phase::PhaseRecord;

/// One trained and evaluated policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    /// The loss.
    pub loss: LossKind,
    /// How the budget was spent.
    pub method: Method,
    /// Collection phases.
    pub phases: usize,
    /// Seed index.
    pub seed: usize,
    /// The run directory.
    pub dir: PathBuf,
    /// Annotated comparisons spent.
    pub budget: usize,
    /// Pairs trained on (after dropping identical pairs and ties).
    pub pairs: usize,
    /// Seconds of training (sampling included).
    pub train_seconds: f64,
    /// The evaluation of the final policy.
    pub report: EvalReport,
    /// Win rate on the curve prompts after each phase: `(pairs used, win rate)`.
    pub curve: Vec<(usize, f64)>,
    /// Per-phase metrics of the run.
    pub phase_metrics: Vec<PhaseRecord>,
}

/// One row of a results table: a cell of the grid, pooled over seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// The loss.
    pub loss: LossKind,
    /// Method (none for the initial policy).
    pub method: Option<Method>,
    /// Collection phases.
    pub phases: usize,
    /// Gold win rate against the references, pooled over seeds, with its interval.
    pub win_rate: Interval,
    /// Mean gold score.
    pub gold_score: f64,
    /// Held-out judge's win rate.
    pub heldout_win_rate: Option<Interval>,
    /// Mean response tokens.
    pub mean_tokens: f64,
    /// Distinct bigrams share.
    pub distinct_2: f64,
    /// KL to the initial model.
    pub kl_initial: Option<f64>,
    /// Annotated comparisons per run.
    pub budget: usize,
    /// Mean training seconds per run.
    pub train_seconds: f64,
    /// Seeds pooled.
    pub seeds: usize,
}

/// A paired comparison of two cells on the same (seed, prompt) outcomes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// The loss.
    pub loss: LossKind,
    /// F of the online methods compared.
    pub phases: usize,
    /// What is compared, e.g. "BPO vs offline DAP".
    pub label: String,
    /// Mean win-rate difference with its interval.
    pub difference: Interval,
    /// Two-sided paired-bootstrap p-value.
    pub p_value: f64,
}

/// Everything `bpo experiment` found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentResults {
    /// The configuration.
    pub config: ExperimentConfig,
    /// The gold annotator and held-out judge.
    pub gold: String,
    /// The held-out judge's name.
    pub heldout: Option<String>,
    /// The initial policy's evaluation.
    pub initial: EvalReport,
    /// Every run.
    pub runs: Vec<RunResult>,
    /// The tables' rows.
    pub rows: Vec<Row>,
    /// Paired comparisons: BPO against offline and online DAP.
    pub comparisons: Vec<Comparison>,
    /// Wall-clock seconds of the whole experiment.
    pub seconds: f64,
}
