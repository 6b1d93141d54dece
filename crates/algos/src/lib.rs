//! `bpo-algos`: the loss zoo of direct alignment from preferences, reference policies, LoRA,
//! the one trainer behind offline DAP (`bpo train`), SFT (`bpo sft`), online DAP and BPO
//! (`bpo online`) and reward models (`bpo rm train`), annotators, evaluation and the
//! experiment (`bpo experiment`).

pub mod annotate;
pub mod checkpoint;
pub mod config;
pub mod dap;
pub mod ensemble;
pub mod error;
pub mod eval;
pub mod experiment;
pub mod logps;
pub mod lora;
pub mod loss;
pub mod metrics;
pub mod offline;
pub mod online;
pub mod optim;
pub mod reference;
pub mod rm;
pub mod sft;
pub mod trainer;

pub use config::{LoraConfig, ReferenceMode, SftConfig, TrainConfig, load_config};
pub use error::AlgoError;
pub use loss::{LossConfig, LossKind, LossStats, PairLogps, dap_loss};
pub use metrics::MetricsRecord;
pub use offline::{TrainOutcome, train_dap};
pub use online::{OnlineConfig, OnlineOutcome, train_online};
pub use sft::train_sft;
pub use trainer::{Observer, Silent};
