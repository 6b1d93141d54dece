//! `bpo experiment`: the paper's question on one task. At the same annotation budget and seeds
//! it trains offline DAP (F = 1, reference = initial), online DAP (F phases, reference =
//! initial) and BPO (F phases, reference = behavior), for each loss and F asked for, evaluates
//! every final policy (and the initial one) against the references with a gold and a held-out
//! judge, and writes `results.md`, `results.json` and plots.

//!
//! - [`config`]: the grid and the evaluation settings;
//! - [`run`]: training and evaluating every run;
//! - [`stats`]: seeds pooled by prompt, cluster-bootstrap intervals, paired comparisons;
//! - `tune`: the equal dev-split grid of `--tune`; `progress`: the estimate and ETA;
//! - [`results`]: what is found; [`report`]: `results.md` and plots.

pub mod config;
mod evaluator;
mod plots;
mod progress;
pub mod report;
pub mod results;
pub mod run;
mod runner;
pub mod stats;
mod tune;

pub use config::{ExperimentConfig, ExperimentEval, Method, MethodSettings, TuneConfig};
pub use report::results_markdown;
pub use results::{Comparison, ExperimentResults, Row, RunResult, Timing, TuneCell, Tuning};
pub use run::{rewrite_report, run_experiment};
pub use runner::ExperimentObserver;
