//! One module per subcommand.

pub mod data;
pub mod eval;
pub mod experiment;
pub mod export;
pub mod fetch;
pub mod flags;
pub mod generate;
pub mod info;
pub mod init;
pub mod logprobs;
pub mod online;
pub mod rm;
pub mod tokenize;
pub mod train;
