//! `bpo generate --model M --prompt P ...`.

use std::time::Instant;

use anyhow::{Result, bail};
use bpo_model::{SamplingConfig, generate, load};
use indicatif::{ProgressBar, ProgressStyle};

use super::{Compute, flags};

/// Flags of `bpo generate`.
#[derive(clap::Args)]
pub struct Args {
    /// Model: a .gguf file, a Hugging Face directory, or an alias (smollm2-135m).
    #[arg(long)]
    model: String,
    /// Prompt text; repeat the flag for several prompts (generated as one batch).
    #[arg(long, required = true)]
    prompt: Vec<String>,
    /// Render each prompt as a user turn with the model's chat template.
    #[arg(long)]
    chat: bool,
    /// Greedy decoding (overrides temperature, top-k, top-p).
    #[arg(long)]
    greedy: bool,
    /// Sampling temperature (> 0).
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true, value_parser = flags::positive)]
    temperature: f32,
    /// Keep only the k most likely tokens (0 = off).
    #[arg(long, default_value_t = 50, allow_negative_numbers = true, value_parser = flags::whole::<usize>)]
    top_k: usize,
    /// Nucleus sampling threshold in (0, 1] (1.0 = off).
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true, value_parser = flags::probability)]
    top_p: f32,
    /// Most new tokens per sample (at least 1).
    #[arg(long, default_value_t = 128, allow_negative_numbers = true, value_parser = flags::at_least_one)]
    max_new_tokens: usize,
    /// Samples per prompt (at least 1).
    #[arg(long, default_value_t = 1, allow_negative_numbers = true, value_parser = flags::at_least_one)]
    num_samples: usize,
    /// Sequences per batch (at least 1).
    #[arg(long, default_value_t = 16, allow_negative_numbers = true, value_parser = flags::at_least_one)]
    batch_size: usize,
    /// Sampling seed.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true, value_parser = flags::whole::<u64>)]
    seed: u64,
    /// Do not stop at the end-of-sequence token (fixed-length samples, benchmarks).
    #[arg(long)]
    ignore_eos: bool,
    /// Print one JSON object per sample (ids, log-probs, text) instead of plain text.
    #[arg(long)]
    json: bool,
}

impl Args {
    fn sampling(&self) -> SamplingConfig {
        if self.greedy {
            return SamplingConfig {
                seed: self.seed,
                ignore_eos: self.ignore_eos,
                ..SamplingConfig::greedy(self.max_new_tokens)
            };
        }
        SamplingConfig {
            temperature: self.temperature,
            top_k: (self.top_k > 0).then_some(self.top_k),
            top_p: (self.top_p != 1.0).then_some(self.top_p),
            max_new_tokens: self.max_new_tokens,
            seed: self.seed,
            ignore_eos: self.ignore_eos,
        }
    }
}

/// Generates and prints the samples; timing goes to stderr.
pub fn run(args: Args, compute: &Compute) -> Result<()> {
    if args.num_samples == 0 {
        bail!("--num-samples must be at least 1");
    }
    let device = compute.open()?;
    let (model, tokenizer) = load(&args.model, &device)?;
    let sampling = args.sampling();
    let total = args.prompt.len() * args.num_samples;
    let bar = ProgressBar::new(total as u64).with_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} samples  {elapsed} (eta {eta})")
            .expect("valid template"),
    );
    let prompts = args
        .prompt
        .iter()
        .map(|p| tokenizer.encode_prompt(p, args.chat))
        .collect::<Result<Vec<_>, _>>()?;
    let start = Instant::now();
    let gens = generate(
        &model,
        &tokenizer,
        &prompts,
        args.num_samples,
        args.batch_size,
        &sampling,
        |done| bar.set_position(done as u64),
    )?;
    bar.finish_and_clear();
    let seconds = start.elapsed().as_secs_f64();
    let tokens: usize = gens.iter().map(|g| g.token_ids.len()).sum();
    for g in &gens {
        if args.json {
            println!("{}", serde_json::to_string(g)?);
        } else {
            if total > 1 {
                println!("--- prompt {} ---", g.prompt_index);
            }
            println!("{}", g.text);
        }
    }
    eprintln!(
        "{tokens} tokens in {seconds:.2} s ({:.1} tokens/s)",
        tokens as f64 / seconds.max(1e-9)
    );
    Ok(())
}
