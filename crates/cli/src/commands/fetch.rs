//! `bpo fetch NAME [--dir DIR]`.

use std::path::PathBuf;

use anyhow::{Result, anyhow};
use bpo_model::fetch::{KNOWN_MODELS, default_cache_dir, fetch, known_model};

/// Flags of `bpo fetch`.
#[derive(clap::Args)]
pub struct Args {
    /// Model alias (smollm2-135m).
    name: String,
    /// Cache directory (default: $BPO_CACHE_DIR or ~/.cache/bpo/models).
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// Fetches the model and prints the path of the file.
pub fn run(args: Args) -> Result<()> {
    let model = known_model(&args.name).ok_or_else(|| {
        let names: Vec<&str> = KNOWN_MODELS.iter().map(|m| m.alias).collect();
        anyhow!(
            "unknown model `{}` (known: {})",
            args.name,
            names.join(", ")
        )
    })?;
    let dir = args.dir.unwrap_or_else(default_cache_dir);
    let path = fetch(model, &dir)?;
    println!("{}", path.display());
    Ok(())
}
