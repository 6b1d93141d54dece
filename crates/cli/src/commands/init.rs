//! `bpo init --arch llama|qwen2|qwen3|gpt2 --preset tiny|small|base --tokenizer M --out DIR`.

use std::path::PathBuf;

use anyhow::{Result, anyhow};
use bpo_model::burn::tensor::Device;
use bpo_model::spec::{load_tokenizer, save_hf};
use bpo_model::{ModelConfig, ModelType, Transformer};

/// Flags of `bpo init`.
#[derive(clap::Args)]
pub struct Args {
    /// Architecture: llama, qwen2 or gpt2.
    #[arg(long, default_value = "llama")]
    arch: String,
    /// Size preset: tiny (2 layers, d 64), small (4 layers, d 256), base (12 layers, d 768).
    #[arg(long, default_value = "tiny")]
    preset: String,
    /// Model whose tokenizer (and chat template) the new model uses.
    #[arg(long)]
    tokenizer: String,
    /// Output directory (Hugging Face layout).
    #[arg(long)]
    out: PathBuf,
    /// Initialisation seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// Writes a randomly initialised model with the given tokenizer.
pub fn run(args: Args) -> Result<()> {
    let model_type = ModelType::from_hf_name(&args.arch).ok_or_else(|| {
        let names = ModelType::supported_names();
        anyhow!("unknown --arch `{}` ({names})", args.arch)
    })?;
    let tokenizer = load_tokenizer(&args.tokenizer)?;
    let mut config = ModelConfig::preset(model_type, &args.preset, tokenizer.vocab_size())?;
    config.bos_token_id = tokenizer.bos_id();
    config.eos_token_id = tokenizer.eos_id();
    let device = Device::flex();
    let model = Transformer::init(&config, args.seed, &device);
    save_hf(&args.out, &model, &tokenizer)?;
    println!(
        "{}: {} {} model, {} parameters",
        args.out.display(),
        args.preset,
        model_type.hf_name(),
        config.num_parameters()
    );
    Ok(())
}
