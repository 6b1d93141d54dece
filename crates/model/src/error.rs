//! The error type of the model crate.

use std::path::PathBuf;

/// Everything that can go wrong while loading, saving or running a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A file could not be read or written.
    // Not named `source`: the message already includes the OS error, and a `source` would
    // print it a second time in an error chain.
    #[error("{path}: {error}")]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        error: std::io::Error,
    },
    /// A model configuration is missing a field or is inconsistent.
    #[error("invalid model config: {0}")]
    Config(String),
    /// A GGUF file is malformed, truncated or uses an unsupported feature.
    #[error("{path}: GGUF: {message}")]
    Gguf {
        /// The GGUF file.
        path: PathBuf,
        /// What is wrong, with the offending key, tensor or offset.
        message: String,
    },
    /// A weight file lacks a tensor, has the wrong shape or an unsupported dtype.
    #[error("{source_name}: {message}")]
    Weights {
        /// The file or directory the weights came from.
        source_name: String,
        /// What is wrong, naming the tensor.
        message: String,
    },
    /// The tokenizer could not be built, loaded or used.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// A model spec string names nothing loadable.
    #[error("model `{spec}`: {message}")]
    Spec {
        /// The spec as given by the user.
        spec: String,
        /// Why it cannot be loaded.
        message: String,
    },
    /// A Hugging Face Hub model id could not be resolved (see `hub`).
    #[error("Hugging Face Hub model `{repo}`: {message}")]
    Hub {
        /// `ORG/NAME@REVISION`.
        repo: String,
        /// What failed and what to do about it.
        message: String,
    },
    /// A device string is unknown or names a backend that was not compiled in.
    #[error("{0}")]
    Device(String),
    /// Fetching a model failed (pip missing, download failed, checksum mismatch).
    #[error("fetch: {0}")]
    Fetch(String),
    /// Invalid generation or scoring input (empty prompt, bad sampling parameters).
    #[error("{0}")]
    Input(String),
}

impl ModelError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ModelError::Io {
            path: path.into(),
            error: source,
        }
    }
}
