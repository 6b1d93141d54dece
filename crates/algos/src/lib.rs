//! `bpo-algos`: the loss zoo of direct alignment from preferences, reference policies, LoRA,
//! the offline trainer (`bpo train`, `bpo sft`) with checkpoints, metrics and plots.

pub mod annotate;
pub mod checkpoint;
pub mod config;
pub mod ensemble;
pub mod error;
pub mod eval;
pub mod experiment;
pub mod logps;
pub mod lora;
pub mod loss;
pub mod metrics;
pub mod online;
pub mod optim;
pub mod reference;
pub mod rm;
pub mod train;

pub use config::{LoraConfig, ReferenceMode, SftConfig, TrainConfig, load_config};
pub use error::AlgoError;
pub use loss::{LossConfig, LossKind, LossStats, PairLogps, dap_loss};
pub use metrics::MetricsRecord;
pub use online::{OnlineConfig, OnlineOutcome, train_online};
pub use train::{Observer, Silent, TrainOutcome, train_dap, train_sft};
