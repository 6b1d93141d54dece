//! The error type of the algorithms crate.

use std::path::PathBuf;

use bpo_data::DataError;
use bpo_model::ModelError;

/// Everything that can stop training or evaluation.
#[derive(Debug, thiserror::Error)]
pub enum AlgoError {
    /// A configuration value is missing, unknown or out of range.
    #[error("config: {0}")]
    Config(String),
    /// Loading, saving or running the model failed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// Reading or preparing data failed.
    #[error(transparent)]
    Data(#[from] DataError),
    /// A loss or gradient became NaN or infinite; the last checkpoint is intact.
    #[error("step {step}: non-finite {what}; stopping (the last checkpoint is intact)")]
    NonFinite {
        /// Optimizer step (1-based) at which it happened.
        step: usize,
        /// `loss` or `gradient norm`.
        what: String,
    },
    /// A checkpoint is missing, incomplete or from another run.
    #[error("checkpoint {path}: {message}")]
    Checkpoint {
        /// The checkpoint directory.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// An annotator failed (a judge process crashed, hung or answered garbage).
    #[error("annotator: {0}")]
    Annotator(String),
    /// A file could not be read or written.
    // Not named `source`: the message already includes the OS error, and a `source` would
    // print it a second time in an error chain.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        error: std::io::Error,
    },
}

impl AlgoError {
    /// Wraps an I/O error with its path.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        AlgoError::Io {
            path: path.into(),
            error: source,
        }
    }
}
