//! `bpo experiment`: offline DAP vs online DAP vs BPO at the same budget, evaluated and
//! reported (results.md, results.json, plots).

use std::path::PathBuf;

use anyhow::Result;
use bpo_algos::config::parse_config;
use bpo_algos::experiment::{ExperimentConfig, ExperimentObserver, rewrite_report, run_experiment};
use bpo_algos::{LossKind, MetricsRecord, Observer, load_config};

use super::train::ProgressObserver;
use super::{Compute, flags};

/// Flags of `bpo experiment`.
#[derive(clap::Args)]
pub struct Args {
    /// TOML configuration (default: the embedded SmolLM2 sentiment experiment).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override a config value, e.g. `--set online.budget=256` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Losses to compare, e.g. `dpo,ipo,slic`.
    #[arg(long, value_delimiter = ',')]
    losses: Option<Vec<String>>,
    /// Seeds per cell (at least 1).
    #[arg(long, allow_negative_numbers = true, value_parser = flags::at_least_one)]
    seeds: Option<usize>,
    /// Values of F to sweep, e.g. `1,2,4,8`.
    #[arg(long, value_delimiter = ',')]
    phases: Option<Vec<usize>>,
    /// A smoke run (16 pairs, 8-token responses, 8 test prompts).
    #[arg(long)]
    quick: bool,
    /// Equal tuning first: every method runs the same learning-rate x beta grid on dev prompts
    /// and then the test prompts at its own best setting (see `[tune]` in the config).
    #[arg(long)]
    tune: bool,
    /// Frontier mode: every method at every beta of `[frontier] betas` (default 0.03, 0.1,
    /// 0.3, 1.0; `frontier.more_phases_betas` for the F values after the first), compared at
    /// matched KL to the initial policy. Finished runs are reused, so an interrupted frontier
    /// continues where it stopped.
    #[arg(long)]
    frontier: bool,
    /// Results directory.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Train nothing: rewrite the statistics, results.md and plots of the finished experiment in
    /// --out from its results.json (e.g. after upgrading bpo).
    #[arg(long, requires = "out", conflicts_with_all = ["config", "sets", "losses", "seeds", "phases", "quick", "tune", "frontier"])]
    report_only: bool,
}

/// A progress bar per run, with a header line for each.
#[derive(Default)]
struct Progress {
    run: ProgressObserver,
}

impl Observer for Progress {
    fn message(&mut self, text: &str) {
        self.run.message(text);
    }
    fn step(&mut self, step: usize, total: usize, record: &MetricsRecord) {
        self.run.step(step, total, record);
    }
}

impl ExperimentObserver for Progress {
    fn run_start(&mut self, index: usize, total: usize, title: &str) {
        self.run = ProgressObserver::default();
        eprintln!("[run {}/{total}] {title}", index + 1);
    }
}

/// Runs `bpo experiment`.
pub fn run(args: Args, compute: &Compute) -> Result<()> {
    if let (true, Some(out)) = (args.report_only, &args.out) {
        rewrite_report(out)?;
        println!("{}", std::fs::read_to_string(out.join("results.md"))?);
        return Ok(());
    }
    let sets = [args.sets.clone(), compute.sets("online.")].concat();
    let mut config: ExperimentConfig = match &args.config {
        Some(path) => load_config(path, &sets)?,
        None if sets.is_empty() => ExperimentConfig::default(),
        None => {
            let defaults = toml::to_string(&ExperimentConfig::default())?;
            parse_config(&defaults, "the default experiment", &sets)?
        }
    };
    if args.tune && config.tune.is_none() {
        config.tune = Some(Default::default());
    }
    if args.frontier && config.frontier.is_none() {
        config.frontier = Some(Default::default());
    }
    if args.quick {
        config = config.quick();
    }
    if let Some(losses) = &args.losses {
        config.losses = losses
            .iter()
            .map(|l| LossKind::parse(l.trim()))
            .collect::<Result<_, _>>()?;
    }
    if let Some(seeds) = args.seeds {
        config.seeds = seeds;
    }
    if let Some(phases) = &args.phases {
        config.phases = phases.clone();
    }
    if let Some(out) = &args.out {
        config.out = out.clone();
    }
    let results = run_experiment(&config, &mut Progress::default())?;
    println!(
        "{}",
        std::fs::read_to_string(config.out.join("results.md"))?
    );
    eprintln!(
        "results in {} ({:.0} s)",
        config.out.display(),
        results.seconds
    );
    Ok(())
}
