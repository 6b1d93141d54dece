//! `bpo experiment`: the paper's question on one task. At the same annotation budget and seeds
//! it trains offline DAP (F = 1, reference = initial), online DAP (F phases, reference =
//! initial) and BPO (F phases, reference = behavior), for each loss and F asked for, evaluates
//! every final policy (and the initial one) against the references with a gold and a held-out
//! judge, and writes `results.md`, `results.json` and plots.

//!
//! - [`config`]: the grid and the evaluation settings;
//! - [`run`]: training and evaluating every run;
//! - [`stats`]: pooling seeds and paired comparisons;
//! - [`results`]: what is found; [`report`]: `results.md` and plots.

pub mod config;
pub mod report;
pub mod results;
pub mod run;
pub mod stats;

pub use config::{ExperimentConfig, ExperimentEval, Method};
pub use report::results_markdown;
pub use results::{Comparison, ExperimentResults, Row, RunResult};
pub use run::{ExperimentObserver, run_experiment};
