//! `bpo export --model M --out DIR`: any loadable model to a Hugging Face directory.

use std::path::PathBuf;

use anyhow::Result;
use bpo_model::burn::tensor::Device;
use bpo_model::load;
use bpo_model::spec::save_hf;

/// Flags of `bpo export`.
#[derive(clap::Args)]
pub struct Args {
    /// Model: a .gguf file, a Hugging Face directory, or an alias (smollm2-135m).
    #[arg(long)]
    model: String,
    /// Output directory: config.json, model.safetensors (f32), tokenizer.json,
    /// tokenizer_config.json; `transformers` loads it with `from_pretrained`.
    #[arg(long)]
    out: PathBuf,
}

/// Loads the model (dequantising GGUF weights) and writes it in Hugging Face layout.
pub fn run(args: Args) -> Result<()> {
    let (model, tokenizer) = load(&args.model, &Device::flex())?;
    save_hf(&args.out, &model, &tokenizer)?;
    println!("{}", args.out.display());
    Ok(())
}
