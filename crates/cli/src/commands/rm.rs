//! `bpo rm train --config C.toml`: a reward model (transformer + scalar head, written as
//! transformers' `*ForSequenceClassification`) trained with the Bradley-Terry loss on a pair
//! file, usable as an annotator (`kind = "reward_model"`).

use std::path::PathBuf;

use anyhow::Result;
use bpo_algos::load_config;
use bpo_algos::rm::{RewardModelConfig, train_reward_model};

use super::Compute;
use super::train::ProgressObserver;

/// `bpo rm` subcommands.
#[derive(clap::Subcommand)]
pub enum Command {
    /// Train a reward model on a pair file.
    Train {
        /// TOML configuration (see examples/configs/rm_sentiment.toml).
        #[arg(long)]
        config: PathBuf,
        /// Override a config value (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        /// Continue a stopped run from a checkpoint directory or a run directory (latest
        /// checkpoint).
        #[arg(long)]
        resume: Option<PathBuf>,
    },
}

/// Runs `bpo rm`.
pub fn run(command: Command, compute: &Compute) -> Result<()> {
    match command {
        Command::Train {
            config,
            sets,
            resume,
        } => {
            let sets = [sets, compute.sets("")].concat();
            let config: RewardModelConfig = load_config(&config, &sets)?;
            let outcome =
                train_reward_model(&config, resume.as_deref(), &mut ProgressObserver::default())?;
            println!("{}", serde_json::to_string(&outcome.last)?);
            eprintln!("reward model in {}", outcome.model_dir.display());
            Ok(())
        }
    }
}
