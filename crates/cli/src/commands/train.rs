//! `bpo train --config C.toml` (offline DAP) and `bpo sft --config C.toml`.

use std::path::PathBuf;

use anyhow::Result;
use bpo_algos::{
    MetricsRecord, Observer, SftConfig, TrainConfig, load_config, train_dap, train_sft,
};
use indicatif::{ProgressBar, ProgressStyle};

use super::Compute;

/// Flags shared by `bpo train` and `bpo sft`.
#[derive(clap::Args)]
pub struct Args {
    /// TOML configuration (see examples/configs/).
    #[arg(long)]
    pub config: PathBuf,
    /// Override a config value, e.g. `--set optim.lr=1e-4` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Continue a stopped run from a checkpoint directory or a run directory (latest checkpoint).
    #[arg(long)]
    pub resume: Option<PathBuf>,
}

/// A progress bar on stderr with loss and ETA, and status lines above it.
#[derive(Default)]
pub struct ProgressObserver {
    bar: Option<ProgressBar>,
}

impl Observer for ProgressObserver {
    fn message(&mut self, text: &str) {
        match &self.bar {
            // A hidden bar (stderr is not a terminal) would swallow the line.
            Some(bar) if !bar.is_hidden() => bar.println(text),
            _ => eprintln!("{text}"),
        }
    }

    fn step(&mut self, step: usize, total: usize, record: &MetricsRecord) {
        let bar = self.bar.get_or_insert_with(|| {
            ProgressBar::new(total as u64).with_style(
                ProgressStyle::with_template("{bar:30} step {pos}/{len} {msg} [{elapsed} < {eta}]")
                    .expect("valid template"),
            )
        });
        bar.set_position(step as u64);
        let get = |k: &str| record.get(k).copied().unwrap_or(f64::NAN);
        let mut msg = format!("loss {:.4}", get("loss"));
        if record.contains_key("rewards/accuracies") {
            msg.push_str(&format!(
                " acc {:.2} margin {:.3}",
                get("rewards/accuracies"),
                get("rewards/margins")
            ));
        }
        if let Some(dev) = record.get("dev/loss") {
            msg.push_str(&format!(" dev {dev:.4}"));
        }
        bar.set_message(msg);
        if step == total {
            bar.finish();
        }
    }
}

/// Loads a command's TOML config with its `--set` overrides, then the global `--device` and
/// `--dtype` (which win).
pub fn load_with_compute<T: serde::de::DeserializeOwned>(
    args: &Args,
    compute: &Compute,
) -> Result<T> {
    let sets = [args.sets.clone(), compute.sets("")].concat();
    Ok(load_config(&args.config, &sets)?)
}

/// Runs `bpo train`.
pub fn run_train(args: Args, compute: &Compute) -> Result<()> {
    let config: TrainConfig = load_with_compute(&args, compute)?;
    let outcome = train_dap(
        &config,
        args.resume.as_deref(),
        &mut ProgressObserver::default(),
    )?;
    println!("{}", serde_json::to_string(&outcome.last)?);
    Ok(())
}

/// Runs `bpo sft`.
pub fn run_sft(args: Args, compute: &Compute) -> Result<()> {
    let config: SftConfig = load_with_compute(&args, compute)?;
    let outcome = train_sft(
        &config,
        args.resume.as_deref(),
        &mut ProgressObserver::default(),
    )?;
    println!("{}", serde_json::to_string(&outcome.last)?);
    Ok(())
}
