//! `bpo info --model M`.

use anyhow::Result;
use bpo_model::burn::tensor::Device;
use bpo_model::device::{compiled_backends, list_devices};
use bpo_model::spec::{load_source, resolve};

/// Flags of `bpo info`.
#[derive(clap::Args)]
pub struct Args {
    /// Model: a .gguf file, a Hugging Face directory, or an alias (smollm2-135m).
    #[arg(long, required_unless_present = "devices")]
    model: Option<String>,
    /// List the compute devices this build can use here (and the one `auto` picks).
    #[arg(long)]
    devices: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// Prints architecture, sizes, parameter count and tokenizer summary, after loading the whole
/// model on the CPU: a truncated weight file, a corrupt header or a missing or mis-shaped
/// tensor is an error here, as it would be in any other command.
pub fn run(args: Args) -> Result<()> {
    if args.devices {
        println!("compiled in: {}", compiled_backends().join(", "));
        for line in list_devices() {
            println!("{line}");
        }
        if args.model.is_none() {
            return Ok(());
        }
    }
    let spec = args
        .model
        .as_deref()
        .expect("clap requires --model without --devices");
    let source = resolve(spec)?;
    let (model, tok) = load_source(&source, &Device::flex())?;
    let c = &model.config;
    let chat = match tok.chat_template() {
        Ok(t) => format!("yes ({} characters of Jinja)", t.source().len()),
        Err(e) => e.to_string(),
    };
    let info = serde_json::json!({
        "source": source.path().display().to_string(),
        "architecture": c.model_type.hf_name(),
        "layers": c.num_layers,
        "hidden_size": c.hidden_size,
        "intermediate_size": c.intermediate_size,
        "heads": c.num_heads,
        "kv_heads": c.num_kv_heads,
        "head_dim": c.head_dim,
        "vocab_size": c.vocab_size,
        "max_positions": c.max_position_embeddings,
        "rope_theta": c.rope_theta,
        "norm_eps": c.norm_eps,
        "tied_embeddings": c.tie_word_embeddings,
        "attention_bias": c.attention_bias,
        "parameters": c.num_parameters(),
        "tokenizer": {
            "vocab_size": tok.vocab_size(),
            "bos": tok.bos_token,
            "eos": tok.eos_token,
            "pad_id": tok.pad_id(),
            "chat_template": chat,
        },
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&info)?);
        return Ok(());
    }
    println!("model        {}", source.path().display());
    println!("architecture {}", c.model_type.hf_name());
    println!(
        "layers {}  hidden {}  ffn {}  heads {} (kv {})  head_dim {}",
        c.num_layers, c.hidden_size, c.intermediate_size, c.num_heads, c.num_kv_heads, c.head_dim
    );
    println!(
        "vocab {}  positions {}  rope_theta {}  norm_eps {}  tied head {}",
        c.vocab_size, c.max_position_embeddings, c.rope_theta, c.norm_eps, c.tie_word_embeddings
    );
    println!(
        "parameters   {} ({:.1}M)",
        c.num_parameters(),
        c.num_parameters() as f64 / 1e6
    );
    println!(
        "tokenizer    {} tokens, bos {:?}, eos {:?}, chat template {chat}",
        tok.vocab_size(),
        tok.bos_token,
        tok.eos_token
    );
    Ok(())
}
