//! `bpo online --config C.toml`: online DAP and BPO.

use anyhow::Result;
use bpo_algos::{OnlineConfig, train_online};

use super::Compute;
use super::train::{Args, ProgressObserver, load_with_compute};

/// Runs `bpo online`; `device` (the global `--device`, when given) overrides the config's.
pub fn run(args: Args, compute: &Compute) -> Result<()> {
    let config: OnlineConfig = load_with_compute(&args, compute)?;
    let outcome = train_online(
        &config,
        args.resume.as_deref(),
        &mut ProgressObserver::default(),
    )?;
    for phase in &outcome.phases {
        println!("{}", serde_json::to_string(phase)?);
    }
    eprintln!(
        "{} steps; model in {}; per-phase metrics in {}",
        outcome.steps,
        outcome.model_dir.display(),
        outcome.out.join("phases.jsonl").display()
    );
    Ok(())
}
