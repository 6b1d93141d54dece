//! `bpo online --config C.toml`: online DAP and BPO.

use anyhow::Result;
use bpo_algos::{OnlineConfig, load_config, train_online};

use super::train::{Args, ProgressObserver};

/// Runs `bpo online`; `device` (the global `--device`, when given) overrides the config's.
pub fn run(args: Args, device: Option<&str>) -> Result<()> {
    let mut config: OnlineConfig = load_config(&args.config, &args.sets)?;
    if let Some(device) = device {
        config.device = device.to_owned();
    }
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
