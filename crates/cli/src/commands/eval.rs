//! `bpo eval`: win rate against the reference by a gold annotator (with a held-out judge,
//! length, distinct-n and KL to the initial model), and paired comparison of two models.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use bpo_algos::annotate::AnnotatorConfig;
use bpo_algos::eval::{EvalReport, EvalSettings, evaluate, paired_bootstrap};
use bpo_algos::online::{load_prompts, sample_prompts};
use bpo_model::load;

use super::{Compute, flags};

/// Flags of `bpo eval`.
#[derive(clap::Args)]
pub struct Args {
    /// The model to evaluate (model spec).
    #[arg(long)]
    model: String,
    /// Prompts with references: a JSONL file or `sentiment:train|dev|test`.
    #[arg(long, default_value = "sentiment:dev")]
    prompts: String,
    /// Evaluate a seeded sample of N prompts, stratified by genre where prompts name one.
    #[arg(long, allow_negative_numbers = true, value_parser = flags::at_least_one)]
    limit: Option<usize>,
    /// Gold annotator: vader | afinn | count:PATTERN | rm:DIR | command:PROGRAM ARGS...
    #[arg(long, default_value = "vader")]
    gold: String,
    /// Held-out judge (same forms), or `none`.
    #[arg(long, default_value = "afinn")]
    heldout: String,
    /// The initial model, for the KL estimate.
    #[arg(long)]
    initial: Option<String>,
    /// A second model: both are evaluated and compared with a paired bootstrap.
    #[arg(long)]
    compare: Option<String>,
    /// Most new tokens per response (at least 1).
    #[arg(long, default_value_t = 64, allow_negative_numbers = true, value_parser = flags::at_least_one)]
    max_new_tokens: usize,
    /// Prompts per generation batch (at least 1).
    #[arg(long, default_value_t = 16, allow_negative_numbers = true, value_parser = flags::at_least_one)]
    batch_size: usize,
    /// Seed of bootstrap and KL samples.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true, value_parser = flags::whole::<u64>)]
    seed: u64,
    /// Write the full report (per-prompt outcomes and responses included) as JSON here.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Parses an annotator given on the command line.
pub fn parse_annotator(spec: &str) -> Result<AnnotatorConfig> {
    Ok(match spec.split_once(':') {
        None if spec == "vader" => AnnotatorConfig::Vader,
        None if spec == "afinn" => AnnotatorConfig::Afinn,
        Some(("count", pattern)) => AnnotatorConfig::Count {
            pattern: pattern.to_owned(),
        },
        Some(("rm", path)) => AnnotatorConfig::RewardModel {
            path: path.into(),
            input: Default::default(),
            label: None,
            device: bpo_model::device::default_spec(),
            batch_size: 16,
        },
        Some(("command", line)) => AnnotatorConfig::Command {
            command: line.split_whitespace().map(str::to_owned).collect(),
            timeout_s: 60.0,
        },
        _ => {
            bail!(
                "unknown annotator `{spec}` (vader, afinn, count:PATTERN, rm:DIR, command:PROGRAM ARGS)"
            )
        }
    })
}

fn summary(name: &str, r: &EvalReport) -> serde_json::Value {
    serde_json::json!({
        "model": name,
        "prompts": r.prompts,
        "gold": r.gold,
        "win_rate": r.win_rate,
        "gold_score": r.gold_score,
        "reference_score": r.reference_score,
        "heldout": r.heldout,
        "mean_tokens": r.mean_tokens,
        "distinct_1": r.distinct_1,
        "distinct_2": r.distinct_2,
        "kl_initial": r.kl_initial,
    })
}

/// Runs `bpo eval`.
pub fn run(args: Args, compute: &Compute) -> Result<()> {
    let device = compute.open()?;
    let prompts = load_prompts(&args.prompts)?;
    let prompts = sample_prompts(prompts, args.limit, args.seed);
    let mut gold = parse_annotator(&args.gold)?.build()?;
    let mut heldout = match args.heldout.as_str() {
        "none" => None,
        spec => Some(parse_annotator(spec)?.build()?),
    };
    let initial = args
        .initial
        .as_deref()
        .map(|spec| load(spec, &device).map(|(m, _)| m))
        .transpose()?;
    let settings = EvalSettings {
        max_new_tokens: args.max_new_tokens,
        batch_size: args.batch_size,
        seed: args.seed,
        ..EvalSettings::default()
    };
    let mut reports = Vec::new();
    for spec in std::iter::once(&args.model).chain(args.compare.as_ref()) {
        let (model, tokenizer) = load(spec, &device)?;
        eprintln!("evaluating {spec} on {} prompts", prompts.len());
        let report = evaluate(
            &model,
            initial.as_ref(),
            &tokenizer,
            &prompts,
            gold.as_mut(),
            match heldout.as_mut() {
                Some(judge) => Some(judge.as_mut()),
                None => None,
            },
            &settings,
        )?;
        println!("{}", summary(spec, &report));
        reports.push(report);
    }
    let comparison = match reports.as_slice() {
        [a, b] => {
            let c = paired_bootstrap(&a.wins, &b.wins, settings.bootstrap, settings.seed);
            println!(
                "{}",
                serde_json::json!({"win_rate_difference": c.difference, "p_value": c.p_value})
            );
            Some(c)
        }
        _ => None,
    };
    if let Some(out) = &args.out {
        let doc = serde_json::json!({"reports": reports, "comparison": comparison});
        let text = serde_json::to_string_pretty(&doc)?;
        bpo_model::fsutil::write_atomic(out, text.as_bytes())
            .with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(())
}
