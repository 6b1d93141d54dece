//! The `bpo` command-line tool. Each subcommand lives in its own module under `commands/`,
//! parses its flags and calls the library.

mod commands;

use clap::{Parser, Subcommand};

/// Align language models from preferences: offline DAP, online DAP and BPO, in pure Rust.
#[derive(Parser)]
#[command(name = "bpo", version, about)]
struct Cli {
    /// Compute device: flex | ndarray | wgpu | vulkan | metal | cuda[:N]. Default flex; for
    /// commands with a config file, the config's `device` unless given here.
    #[arg(long, global = true)]
    device: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The main job: offline DAP vs online DAP vs BPO at the same budget, with a report.
    Experiment(commands::experiment::Args),
    /// Download a known model (e.g. smollm2-135m) into the cache and print its path.
    Fetch(commands::fetch::Args),
    /// Show a model's architecture, sizes, parameter count and tokenizer.
    Info(commands::info::Args),
    /// Tokenise text with a model's tokenizer; prints JSON ids and tokens.
    Tokenize(commands::tokenize::Args),
    /// Generate continuations of prompts.
    Generate(commands::generate::Args),
    /// Per-token log-probabilities of a response after a prompt, as JSON.
    Logprobs(commands::logprobs::Args),
    /// Write a model (GGUF, HF directory or alias) as a Hugging Face directory.
    Export(commands::export::Args),
    /// Create a randomly initialised model in Hugging Face layout.
    Init(commands::init::Args),
    /// Offline DAP (DPO, IPO, SLiC, robust) on a pair file.
    Train(commands::train::Args),
    /// Completion-only supervised fine-tuning.
    Sft(commands::train::Args),
    /// Online DAP and BPO: sample, annotate, train, in collection phases.
    Online(commands::train::Args),
    /// Reward models: train one on a pair file (then use it as an annotator).
    #[command(subcommand)]
    Rm(commands::rm::Command),
    /// Win rate against references by a gold and a held-out annotator; paired comparisons.
    Eval(commands::eval::Args),
    /// Validate and summarise preference and prompt data files.
    #[command(subcommand)]
    Data(commands::data::Command),
}

fn main() {
    let cli = Cli::parse();
    let device = cli.device.as_deref().unwrap_or("flex");
    let result = match cli.command {
        Command::Fetch(args) => commands::fetch::run(args),
        Command::Info(args) => commands::info::run(args),
        Command::Tokenize(args) => commands::tokenize::run(args),
        Command::Generate(args) => commands::generate::run(args, device),
        Command::Logprobs(args) => commands::logprobs::run(args, device),
        Command::Export(args) => commands::export::run(args),
        Command::Init(args) => commands::init::run(args),
        Command::Data(command) => commands::data::run(command),
        Command::Train(args) => commands::train::run_train(args, cli.device.as_deref()),
        Command::Sft(args) => commands::train::run_sft(args, cli.device.as_deref()),
        Command::Online(args) => commands::online::run(args, cli.device.as_deref()),
        Command::Eval(args) => commands::eval::run(args, device),
        Command::Rm(command) => commands::rm::run(command, cli.device.as_deref()),
        Command::Experiment(args) => commands::experiment::run(args, cli.device.as_deref()),
    };
    if let Err(err) = result {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}
