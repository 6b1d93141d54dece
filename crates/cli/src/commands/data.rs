//! `bpo data validate DATA`, `bpo data stats DATA` and `bpo data convert IN OUT`. DATA is a
//! JSONL, JSON or Parquet file, a directory of Parquet shards (`DIR:SPLIT` when it holds several
//! splits), or a Hub dataset split (`hf:ORG/NAME[/CONFIG][:SPLIT][@REVISION]`).

use std::path::PathBuf;

use anyhow::{Result, bail};
use bpo_data::convert::convert;
use bpo_data::stats::AnyRecord;
use bpo_data::{ReadOptions, Reader, stats};
use bpo_model::spec::load_tokenizer;

/// Subcommands of `bpo data`.
#[derive(clap::Subcommand)]
pub enum Command {
    /// Parse every record; exit 0 only when all are valid.
    Validate(ValidateArgs),
    /// Counts, fields present and length distributions.
    Stats(StatsArgs),
    /// Copy records between JSONL and Parquet (the output's extension picks: `.parquet` or
    /// anything else for JSONL), e.g. to publish online pairs as a Hub dataset.
    Convert(ConvertArgs),
}

/// Reading flags shared by the data commands.
#[derive(clap::Args)]
pub struct ReadFlags {
    /// Skip malformed records and report them instead of stopping at the first.
    #[arg(long)]
    skip_invalid: bool,
    /// Longest accepted record in bytes.
    #[arg(long, default_value_t = 4 << 20)]
    max_record_bytes: usize,
}

impl ReadFlags {
    fn options(&self) -> ReadOptions {
        ReadOptions {
            skip_invalid: self.skip_invalid,
            max_record_bytes: self.max_record_bytes,
        }
    }
}

/// Flags of `bpo data validate`.
#[derive(clap::Args)]
pub struct ValidateArgs {
    /// Pairs or prompts: a JSONL, JSON-array or Parquet file, a directory of Parquet shards
    /// (DIR:SPLIT when it holds several splits), or a Hub dataset split
    /// hf:ORG/NAME[/CONFIG][:SPLIT][@REVISION].
    file: PathBuf,
    #[command(flatten)]
    read: ReadFlags,
}

/// Flags of `bpo data convert`.
#[derive(clap::Args)]
pub struct ConvertArgs {
    /// What to read (anything `bpo data validate` reads).
    input: PathBuf,
    /// The file to write: `.parquet` for Parquet, else JSONL. Written whole or not at all.
    output: PathBuf,
    #[command(flatten)]
    read: ReadFlags,
}

/// Flags of `bpo data stats`.
#[derive(clap::Args)]
pub struct StatsArgs {
    /// Pairs or prompts: a JSONL, JSON-array or Parquet file, a directory of Parquet shards
    /// (DIR:SPLIT when it holds several splits), or a Hub dataset split
    /// hf:ORG/NAME[/CONFIG][:SPLIT][@REVISION].
    file: PathBuf,
    /// Measure lengths in tokens of this model's tokenizer (default: characters).
    #[arg(long)]
    model: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    read: ReadFlags,
}

/// Runs a `bpo data` subcommand.
pub fn run(command: Command) -> Result<()> {
    match command {
        Command::Validate(args) => validate(args),
        Command::Stats(args) => show_stats(args),
        Command::Convert(args) => convert_file(args),
    }
}

fn convert_file(args: ConvertArgs) -> Result<()> {
    let done = convert(&args.input, &args.output, args.read.options())?;
    for s in &done.skipped {
        eprintln!("{}: {}: {}", s.source, s.location, s.reason);
    }
    println!(
        "{}: {} {} written ({} skipped)",
        args.output.display(),
        done.records,
        match done.kind {
            bpo_data::stats::Kind::Pairs => "pairs",
            bpo_data::stats::Kind::Prompts => "prompts",
        },
        done.skipped.len()
    );
    Ok(())
}

fn validate(args: ValidateArgs) -> Result<()> {
    let mut reader = Reader::<AnyRecord>::open(&args.file, args.read.options())?;
    let (mut pairs, mut prompts) = (0usize, 0usize);
    for record in reader.by_ref() {
        match record? {
            AnyRecord::Pair(_) => pairs += 1,
            AnyRecord::Prompt(_) => prompts += 1,
        }
    }
    for s in reader.skipped() {
        eprintln!("{}: {}: {}", s.source, s.location, s.reason);
    }
    println!(
        "{}: {} valid records ({pairs} pairs, {prompts} prompts), {} skipped",
        args.file.display(),
        pairs + prompts,
        reader.skipped().len()
    );
    if !reader.skipped().is_empty() {
        bail!("{} invalid records", reader.skipped().len());
    }
    Ok(())
}

fn show_stats(args: StatsArgs) -> Result<()> {
    let tokenizer = args.model.as_deref().map(load_tokenizer).transpose()?;
    let s = stats(&args.file, tokenizer.as_ref(), args.read.options())?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(());
    }
    println!(
        "{}: {} records ({} pairs, {} prompts, {} conversational), {} skipped",
        args.file.display(),
        s.records,
        s.pairs,
        s.prompts,
        s.conversational,
        s.skipped.len()
    );
    println!("fields:");
    for (field, n) in &s.fields {
        println!("  {field:<24} {n}");
    }
    println!(
        "lengths in {}:      min  median    mean     p95     max",
        s.unit
    );
    for (field, l) in &s.lengths {
        println!(
            "  {field:<16} {:>7} {:>7} {:>7.1} {:>7} {:>7}",
            l.min, l.median, l.mean, l.p95, l.max
        );
    }
    Ok(())
}
