//! The `bpo` command-line tool. Each subcommand lives in its own module under `commands/`,
//! parses its flags and calls the library.

mod commands;

use bpo_model::device::Precision;
use clap::{Parser, Subcommand};

/// Align language models from preferences: offline DAP, online DAP and BPO, in pure Rust.
#[derive(Parser)]
#[command(name = "bpo", version, about)]
struct Cli {
    /// Compute device: auto (CUDA if compiled in and present, else a real GPU through wgpu,
    /// else the CPU) | flex (CPU) | ndarray | wgpu (Vulkan, Metal or DX12) | vulkan | metal |
    /// dx12 | gl (OpenGL, only when named) | cuda[:N]. Default auto; for commands with a config
    /// file, the config's `device` unless given here.
    #[arg(long, global = true)]
    device: Option<String>,
    /// Float precision: f32 (default) | f16 | bf16, where the device supports it (bf16 and
    /// f16 on the CPU are slower than f32). For commands with a config file, the config's
    /// `dtype` unless given here.
    #[arg(long, global = true, value_parser = parse_dtype)]
    dtype: Option<Precision>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The main job: offline DAP vs online DAP vs BPO at the same budget, with a report.
    #[command(after_help = EXPERIMENT_HELP)]
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
    #[command(after_help = TRAIN_HELP)]
    Train(commands::train::Args),
    /// Completion-only supervised fine-tuning.
    #[command(after_help = SFT_HELP)]
    Sft(commands::train::Args),
    /// Online DAP and BPO: sample, annotate, train, in collection phases.
    #[command(after_help = ONLINE_HELP)]
    Online(commands::train::Args),
    /// Reward models: train one on a pair file (then use it as an annotator).
    #[command(subcommand, after_help = RM_HELP)]
    Rm(commands::rm::Command),
    /// Win rate against references by a gold and a held-out annotator; paired comparisons.
    Eval(commands::eval::Args),
    /// Validate and summarise preference and prompt data files.
    #[command(subcommand)]
    Data(commands::data::Command),
}

const TRAIN_HELP: &str = "\
Most-used config fields (TOML; override any with --set KEY=VALUE):
  model = \"smollm2-135m\"          model spec: GGUF file, Hugging Face dir or alias
  data.train = \"pairs.jsonl\"      TRL-style pairs: prompt, chosen, rejected
  loss.kind = \"dpo\"               dpo | ipo | slic | robust;  loss.beta = 0.1
  reference.mode = \"initial\"      initial | behavior (BPO, from the pairs' meta) | ema | none
  optim.lr = 5e-5                  run.batch_size = 4, run.epochs = 1, run.out = \"runs/train\"
  [lora] rank = 16                 absent = full fine-tuning
Example:  bpo train --config examples/configs/dpo_lora.toml --set loss.kind=ipo
Every field and its default: crates/algos/src/config/ and loss.rs (README: Offline DAP and SFT).";

const SFT_HELP: &str = "\
Most-used config fields (TOML; override any with --set KEY=VALUE):
  model = \"smollm2-135m\"          data.train = \"prompts.jsonl\" (prompt + reference) or pairs (chosen)
  optim.lr = 5e-5                  run.batch_size = 4, run.epochs = 1, run.out = \"runs/train\"
  [lora] rank = 16                 absent = full fine-tuning
Example:  bpo sft --config examples/configs/sft_sentiment_lora.toml
Every field and its default: crates/algos/src/config/.";

const ONLINE_HELP: &str = "\
Choosing the method (TOML; override any with --set KEY=VALUE):
  reference.mode = \"behavior\"     BPO: the model that sampled each pair is the reference (default)
  reference.mode = \"initial\"      online DAP: the initial model is the reference
  reference.mode = \"ema\"          a moving average of the policy (reference.ema_alpha = 0.99)
  reference.mode = \"none\"         no reference: the loss sees the policy's log-probs alone
  phases = 2                       collection phases F (1 = offline DAP from the initial model)
  budget = 256                     annotated comparisons in total, split evenly over the phases
Most-used fields:
  model = \"smollm2-135m\"          prompts = \"sentiment:train\" or a JSONL file of prompts
  annotator.kind = \"vader\"        vader | afinn | count | command (judge process) | reward_model
  sampling.max_new_tokens = 64     loss.kind = \"dpo\", loss.beta = 0.1, optim.lr = 5e-5
  run.batch_size = 4               run.out = \"runs/online\";  [lora] rank = 16, ensemble.size = 1
Example:  bpo online --config examples/configs/bpo_sentiment_lora.toml --set reference.mode=initial
Every field and its default: crates/algos/src/online/config.rs (README: Online DAP and BPO).";

const RM_HELP: &str = "\
Most-used config fields of `bpo rm train` (TOML; override any with --set KEY=VALUE):
  model = \"smollm2-135m\"          the body; a scalar head (transformers' `score`) is added
  data.train = \"pairs.jsonl\"      data.dev gives the held-out accuracy
  run.batch_size = 8, run.epochs = 1, run.out = \"runs/train\" (model in <run.out>/reward-model)
Example:  bpo rm train --config examples/configs/rm_sentiment.toml
Then annotate with it:  [annotator] kind = \"reward_model\", path = \"runs/rm_sentiment/reward-model\"
(any transformers *ForSequenceClassification with one label works too, a Hub id included)
Every field and its default: crates/algos/src/rm/train.rs.";

const EXPERIMENT_HELP: &str = "\
Without --config, runs the embedded default: SmolLM2-135M-Instruct on the sentiment task, VADER
as gold annotator, AFINN as held-out judge, 96 pairs, F = 2, one seed, evaluated on the whole
test split (600 prompts): about 15 minutes on 2 CPU cores. It prints the plan and an estimated
duration first, the ETA after every phase, and a summary at the end.
Most-used overrides (--set KEY=VALUE on the default or on a --config file):
  online.budget = 96               annotated pairs per run
  online.optim.lr = 3e-3           online.loss.beta = 0.1 (per method: [per_method.bpo] lr, beta)
  eval.prompts = \"sentiment:test\" eval.limit = 200 (a seeded sample stratified by genre)
Examples:  bpo experiment --quick            (a smoke run in about two minutes)
           bpo experiment --tune --seeds 5   (equal tuning on dev, then 5 seeds on test)
           bpo experiment --set eval.prompts=sentiment:dev --set online.budget=192
           bpo experiment --frontier --seeds 3   (every method over betas 0.03-1, matched KL)
Every field and its default: crates/algos/src/experiment/config.rs (README: The experiment).";

fn parse_dtype(s: &str) -> Result<Precision, String> {
    Precision::parse(s).map_err(|e| e.to_string())
}

fn main() {
    // Burn's default device on the CPU, and a quiet GPU probe on headless machines.
    // SAFETY: the first statement of `main`, before any other thread exists.
    unsafe { bpo_model::device::prepare_environment() };
    // Every user error exits with 1, flag errors included (clap's own convention is 2).
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            std::process::exit(if e.use_stderr() { 1 } else { 0 });
        }
    };
    let compute = commands::Compute {
        device: cli.device.clone(),
        dtype: cli.dtype,
    };
    let result = match cli.command {
        Command::Fetch(args) => commands::fetch::run(args),
        Command::Info(args) => commands::info::run(args),
        Command::Tokenize(args) => commands::tokenize::run(args),
        Command::Generate(args) => commands::generate::run(args, &compute),
        Command::Logprobs(args) => commands::logprobs::run(args, &compute),
        Command::Export(args) => commands::export::run(args),
        Command::Init(args) => commands::init::run(args),
        Command::Data(command) => commands::data::run(command),
        Command::Train(args) => commands::train::run_train(args, &compute),
        Command::Sft(args) => commands::train::run_sft(args, &compute),
        Command::Online(args) => commands::online::run(args, &compute),
        Command::Eval(args) => commands::eval::run(args, &compute),
        Command::Rm(command) => commands::rm::run(command, &compute),
        Command::Experiment(args) => commands::experiment::run(args, &compute),
    };
    if let Err(err) = result {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}
