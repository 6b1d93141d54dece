//! `bpo tokenize --model M --text T`.

use anyhow::Result;
use bpo_model::spec::load_tokenizer;

/// Flags of `bpo tokenize`.
#[derive(clap::Args)]
pub struct Args {
    /// Model whose tokenizer to use.
    #[arg(long)]
    model: String,
    /// Text to tokenise.
    #[arg(long)]
    text: String,
    /// Render the text as a user turn with the model's chat template first.
    #[arg(long)]
    chat: bool,
}

/// Prints `{"ids": [...], "tokens": [...]}`.
pub fn run(args: Args) -> Result<()> {
    let tok = load_tokenizer(&args.model)?;
    let text = tok.prompt_text(&args.text, args.chat)?;
    let (ids, tokens) = tok.encode_with_tokens(&text, !args.chat)?;
    println!("{}", serde_json::json!({ "ids": ids, "tokens": tokens }));
    Ok(())
}
