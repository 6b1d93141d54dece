//! `bpo experiment`: the paper's question on one task. At the same annotation budget and seeds
//! it trains offline DAP (F = 1, reference = initial), online DAP (F phases, reference =
//! initial) and BPO (F phases, reference = behavior), for each loss and F asked for, evaluates
//! every final policy (and the initial one) against the references with a gold and a held-out
//! judge, and writes `results.md`, `results.json` and plots.

//!
//! - [`config`]: the grid and the evaluation settings;
//! - [`run`]: training and evaluating every run;
//! - [`stats`]: seeds pooled by prompt, cluster-bootstrap intervals, paired comparisons;
//! - `frontier`, `frontier_summary`, `frontier_report`: with `--frontier`, every method over
//!   a grid of betas, compared at matched KL;
//! - `reuse`: finished runs kept in their directories and reused by a later experiment;
//! - `tune`: the equal dev-split grid of `--tune`; `progress`: the estimate and ETA;
//! - [`results`]: what is found; [`report`]: `results.md` and plots.

pub mod config;
mod evaluator;
mod frontier;
mod frontier_report;
mod frontier_summary;
mod plots;
mod progress;
pub mod report;
pub mod results;
mod reuse;
pub mod run;
mod runner;
pub mod stats;
mod tune;

pub use config::{
    ExperimentConfig, ExperimentEval, FrontierConfig, Method, MethodSettings, PlannedRun,
    TuneConfig,
};
pub use frontier::{FrontierGap, GapAt};
pub use report::results_markdown;
pub use results::{
    Comparison, ExperimentResults, Frontier, FrontierComparison, FrontierCurve, FrontierPoint, Row,
    RunResult, Timing, TuneCell, Tuning,
};
pub use run::{rewrite_report, run_experiment};
pub use runner::ExperimentObserver;
