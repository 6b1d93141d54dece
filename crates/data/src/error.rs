//! The error type of the data crate: every record error names the file, the line (or array
//! element) and the field.

use std::fmt;
use std::path::PathBuf;

use bpo_model::ModelError;

/// Where a record sits in its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Location {
    /// 1-based line of a JSONL file.
    Line(usize),
    /// 0-based element of a JSON array file.
    Element(usize),
    /// 0-based row of a Parquet file.
    Row(usize),
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Line(n) => write!(f, "line {n}"),
            Location::Element(n) => write!(f, "element {n}"),
            Location::Row(n) => write!(f, "row {n}"),
        }
    }
}

/// What is wrong with one record, before the file and location are known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The offending field, when one is to blame.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl FieldError {
    /// An error about `field`.
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        FieldError {
            field: Some(field.to_owned()),
            message: message.into(),
        }
    }

    /// An error about the record as a whole.
    pub fn record(message: impl Into<String>) -> Self {
        FieldError {
            field: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.field {
            Some(field) => write!(f, "field `{field}`: {}", self.message),
            None => write!(f, "{}", self.message),
        }
    }
}

/// Everything that can go wrong while reading, writing or preparing data.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file could not be opened, read or written.
    // Not named `source`: the message already includes the OS error, and a `source` would
    // print it a second time in an error chain.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        error: std::io::Error,
    },
    /// One record is malformed.
    #[error("{source_name}: {location}: {error}")]
    Record {
        /// File (or embedded data set) name.
        source_name: String,
        /// Line or element.
        location: Location,
        /// Field and message.
        error: FieldError,
    },
    /// The file as a whole is malformed (e.g. a JSON array with a syntax error).
    #[error("{source_name}: {message}")]
    File {
        /// File name.
        source_name: String,
        /// What is wrong, with line and column where known.
        message: String,
    },
    /// Tokenisation failed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// A record cannot be turned into training tokens (e.g. an empty response).
    #[error("{0}")]
    Prepare(String),
}

impl DataError {
    /// An error about a whole file (or directory, or dataset) named `source_name`.
    pub fn file(source_name: impl std::fmt::Display, message: impl Into<String>) -> Self {
        DataError::File {
            source_name: source_name.to_string(),
            message: message.into(),
        }
    }

    /// Wraps an I/O error with its path.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            error: source,
        }
    }
}
