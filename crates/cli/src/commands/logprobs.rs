//! `bpo logprobs --model M --prompt P --response R`.

use super::Compute;
use anyhow::{Result, bail};
use bpo_model::{load, score};

/// Flags of `bpo logprobs`.
#[derive(clap::Args)]
pub struct Args {
    /// Model: a .gguf file, a Hugging Face directory, or an alias (smollm2-135m).
    #[arg(long)]
    model: String,
    /// The prompt (context).
    #[arg(long)]
    prompt: String,
    /// The response whose tokens are scored.
    #[arg(long)]
    response: String,
    /// Render the prompt as a user turn with the model's chat template.
    #[arg(long)]
    chat: bool,
}

/// Prints the response tokens, their log-probabilities, sum and mean as JSON.
pub fn run(args: Args, compute: &Compute) -> Result<()> {
    let device = compute.open()?;
    let (model, tokenizer) = load(&args.model, &device)?;
    let prompt = tokenizer.encode_prompt(&args.prompt, args.chat)?;
    let (ids, tokens) = tokenizer.encode_with_tokens(&args.response, false)?;
    if ids.is_empty() {
        bail!("--response is empty after tokenisation");
    }
    let scored = score(&model, &[(prompt, ids.clone())], tokenizer.pad_id(), 1)?;
    let s = &scored[0];
    println!(
        "{}",
        serde_json::json!({
            "ids": ids,
            "tokens": tokens,
            "logprobs": s.logprobs,
            "sum": s.sum,
            "mean": s.mean,
        })
    );
    Ok(())
}
