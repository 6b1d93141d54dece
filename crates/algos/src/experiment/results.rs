//! What `bpo experiment` found: every run, the table rows, the paired comparisons and, with
//! `--tune`, the dev-split grid that chose each method's settings.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::eval::{EvalReport, Interval};
use crate::experiment::config::{ExperimentConfig, Method, MethodSettings};
use crate::experiment::frontier::FrontierGap;
use crate::loss::LossKind;
use crate::online::phase::PhaseRecord;

/// Where a run's wall-clock time went, in seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Timing {
    /// Sampling and annotating the pairs.
    pub sampling: f64,
    /// The initial model's pass over the pairs (online and offline DAP; none for BPO).
    pub reference: f64,
    /// Optimizer steps.
    pub training: f64,
    /// Evaluating the final policy on the test prompts.
    pub evaluation: f64,
    /// Learning-curve evaluations after each phase (not part of training).
    pub curves: f64,
}

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
    /// Learning rate and beta it ran at.
    pub settings: MethodSettings,
    /// The run directory.
    pub dir: PathBuf,
    /// Annotated comparisons spent.
    pub budget: usize,
    /// Pairs kept and trained on.
    pub pairs: usize,
    /// Comparisons dropped because both responses were the same tokens.
    pub dropped_identical: usize,
    /// Comparisons dropped as ties.
    pub dropped_ties: usize,
    /// Optimizer steps taken.
    pub steps: usize,
    /// Where the time went.
    pub timing: Timing,
    /// The evaluation of the final policy.
    pub report: EvalReport,
    /// Win rate on the curve prompts after each phase: `(pairs used, win rate)`.
    pub curve: Vec<(usize, f64)>,
    /// Per-phase metrics of the run.
    pub phase_metrics: Vec<PhaseRecord>,
}

/// One row of a results table: a cell of the grid, its seeds pooled by prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// The loss.
    pub loss: LossKind,
    /// Method (none for the initial policy).
    pub method: Option<Method>,
    /// Collection phases.
    pub phases: usize,
    /// Learning rate and beta (none for the initial policy).
    pub settings: Option<MethodSettings>,
    /// Gold win rate against the references: the mean over prompts of each prompt's mean over
    /// seeds, with its cluster-bootstrap interval (prompts resampled with all their seeds).
    pub win_rate: Interval,
    /// The win rate of each seed on its own.
    pub per_seed: Vec<f64>,
    /// Mean gold score.
    pub gold_score: f64,
    /// Held-out judge's win rate (cluster bootstrap as above).
    pub heldout_win_rate: Option<Interval>,
    /// Mean response tokens.
    pub mean_tokens: f64,
    /// Share of responses cut at the token limit.
    pub capped: f64,
    /// Distinct bigrams share.
    pub distinct_2: f64,
    /// KL to the initial model.
    pub kl_initial: Option<f64>,
    /// Mean pairs kept per run.
    pub pairs: f64,
    /// Mean optimizer steps per run.
    pub steps: f64,
    /// Mean timing per run.
    pub timing: Timing,
    /// Seeds pooled.
    pub seeds: usize,
}

/// A paired comparison of two cells on the same prompts (cluster bootstrap over prompts).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// The loss.
    pub loss: LossKind,
    /// What is compared, e.g. "BPO (F=2) vs offline DAP".
    pub label: String,
    /// Mean win-rate difference with its 95% interval.
    pub difference: Interval,
    /// Two-sided p-value of "no difference".
    pub p_value: f64,
    /// The same difference over training seeds: the mean of the per-seed win-rate differences
    /// (seed s against seed s; the initial policy's one outcome against every seed) with a 95%
    /// t-interval over seeds. Unlike `difference`, it includes how much training runs differ;
    /// none with one seed.
    #[serde(default)]
    pub over_seeds: Option<Interval>,
}

/// One setting of the dev-split grid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TuneCell {
    /// The method.
    pub method: Method,
    /// Collection phases.
    pub phases: usize,
    /// The setting tried.
    pub settings: MethodSettings,
    /// Dev win rate (mean over tuning seeds) with its cluster-bootstrap interval.
    pub win_rate: Interval,
    /// Mean dev gold score.
    pub gold_score: f64,
    /// Mean KL to the initial model, when measured.
    pub kl_initial: Option<f64>,
}

/// The dev-split grid and what it chose.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tuning {
    /// Dev prompts evaluated.
    pub prompts: usize,
    /// Every setting tried.
    pub cells: Vec<TuneCell>,
    /// Each method's chosen setting (the best dev win rate; ties go to the smaller lr, then
    /// beta).
    pub chosen: Vec<(Method, MethodSettings)>,
    /// Seconds spent tuning.
    pub seconds: f64,
}

/// Everything `bpo experiment` found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentResults {
    /// The configuration (with the tuned `per_method` settings).
    pub config: ExperimentConfig,
    /// The gold annotator's name.
    pub gold: String,
    /// The held-out judge's name.
    pub heldout: Option<String>,
    /// The evaluated prompts, with their genres.
    pub prompts: Vec<(String, String)>,
    /// The initial policy's evaluation.
    pub initial: EvalReport,
    /// Every run.
    pub runs: Vec<RunResult>,
    /// The tables' rows.
    #[serde(default)]
    pub rows: Vec<Row>,
    /// Paired comparisons: every method against the initial policy and against each other.
    #[serde(default)]
    pub comparisons: Vec<Comparison>,
    /// The dev-split grid, with `--tune`.
    pub tuning: Option<Tuning>,
    /// The frontiers and their matched-KL comparisons, with `--frontier`.
    #[serde(default)]
    pub frontier: Option<Frontier>,
    /// Wall-clock seconds of the whole experiment.
    pub seconds: f64,
}

/// One cell of a frontier: a method at one beta, its seeds averaged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrontierPoint {
    /// The loss's beta.
    pub beta: f64,
    /// KL to the initial policy: the mean over seeds.
    pub kl: f64,
    /// Each seed's KL.
    pub kl_per_seed: Vec<f64>,
    /// Gold win rate: the mean over seeds.
    pub win_rate: f64,
    /// Each seed's gold win rate.
    pub win_rate_per_seed: Vec<f64>,
    /// Held-out judge's win rate (mean over seeds), when there is a held-out judge.
    pub heldout_win_rate: Option<f64>,
    /// Each seed's held-out win rate.
    pub heldout_per_seed: Vec<f64>,
}

/// A method's frontier at one F: its points ordered by KL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrontierCurve {
    /// The loss.
    pub loss: LossKind,
    /// The method.
    pub method: Method,
    /// Collection phases.
    pub phases: usize,
    /// One point per beta, ordered by KL.
    pub points: Vec<FrontierPoint>,
}

impl FrontierCurve {
    /// `BPO (F=2)`, `offline DAP`.
    pub fn label(&self) -> String {
        self.method.label_at(self.phases)
    }
}

/// Two frontiers compared at matched KL by one judge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrontierComparison {
    /// The loss.
    pub loss: LossKind,
    /// The first frontier, e.g. `BPO (F=2)`.
    pub first: String,
    /// The second, e.g. `online DAP (F=2)`.
    pub second: String,
    /// `gold` or `held-out`.
    pub judge: String,
    /// The gap, where the frontiers cover a common KL range.
    pub gap: Option<FrontierGap>,
}

impl FrontierComparison {
    /// `BPO (F=2) - online DAP (F=2)`.
    pub fn label(&self) -> String {
        format!("{} - {}", self.first, self.second)
    }
}

/// The frontiers and their comparisons.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Frontier {
    /// How the KL is estimated, in words.
    pub kl_estimator: String,
    /// Every method's frontier at every F.
    pub curves: Vec<FrontierCurve>,
    /// The pairs of frontiers compared.
    pub comparisons: Vec<FrontierComparison>,
}
