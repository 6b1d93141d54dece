//! The default experiment in library calls: offline DAP, online DAP and BPO at the same
//! annotation budget on SmolLM2-135M-Instruct and the embedded sentiment task, judged by VADER
//! (gold) and AFINN-165 (held out).
//!
//!   cargo run --example sentiment_bpo -- [--device auto|flex|ndarray|wgpu|vulkan|metal|cuda]
//!       [--model smollm2-135m] [--quick]
//!
//! (`bpo experiment` does the same with seeds, sweeps, plots and a report.)

use bpo::algos::annotate::{Afinn, Vader};
use bpo::algos::config::{LoraConfig, ReferenceMode};
use bpo::algos::eval::{EvalSettings, evaluate, paired_bootstrap};
use bpo::algos::online::{load_prompts, sample_prompts};
use bpo::algos::{OnlineConfig, Silent, train_online};
use bpo::model::device::select_device;
use bpo::model::load;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let device_name = flag("--device").unwrap_or_else(|| "auto".into());
    let quick = args.iter().any(|a| a == "--quick");

    // Everything the three methods share: model, prompts, gold annotator, budget, LoRA.
    let mut base = OnlineConfig {
        model: flag("--model").unwrap_or_else(|| "smollm2-135m".into()),
        device: device_name.clone(),
        budget: if quick { 16 } else { 128 },
        max_prompt_tokens: Some(64),
        lora: Some(LoraConfig {
            rank: 16,
            alpha: 32.0,
            ..LoraConfig::default()
        }),
        ..OnlineConfig::default()
    };
    base.sampling.max_new_tokens = if quick { 8 } else { 32 };
    base.optim.lr = 5e-4;
    base.run.batch_size = 8;
    base.run.save_model = false;

    let selected = select_device(&device_name)?;
    println!("device: {}", selected.description);
    let device = selected.device;
    let (initial, tokenizer) = load(&base.model, &device)?;
    // A seeded sample of the test split, stratified by genre (the file is ordered by genre).
    let test = &sample_prompts(
        load_prompts("sentiment:test")?,
        Some(if quick { 8 } else { 100 }),
        0,
    );
    let settings = EvalSettings {
        max_new_tokens: base.sampling.max_new_tokens,
        ..EvalSettings::default()
    };

    let mut wins = Vec::new();
    for (name, phases, reference) in [
        ("offline DAP", 1, ReferenceMode::Initial),
        ("online DAP", 2, ReferenceMode::Initial),
        ("BPO", 2, ReferenceMode::Behavior),
    ] {
        let mut config = base.clone();
        config.phases = phases;
        config.reference.mode = reference;
        config.run.out = format!("runs/sentiment_bpo/{}", name.replace(' ', "_")).into();
        let policy = train_online(&config, None, &mut Silent)?.model;
        let report = evaluate(
            &policy,
            Some(&initial),
            &tokenizer,
            test,
            &mut Vader::new(),
            Some(&mut Afinn::new()),
            &settings,
        )?;
        let heldout = report.heldout.as_ref().map_or(f64::NAN, |h| h.1.value);
        println!(
            "{name:12} win rate {:.3} [{:.3}, {:.3}]  held-out {heldout:.3}  gold {:.3}  length {:.1}  KL {:.3}",
            report.win_rate.value,
            report.win_rate.low,
            report.win_rate.high,
            report.gold_score,
            report.mean_tokens,
            report.kl_initial.unwrap_or(f64::NAN),
        );
        wins.push(report.wins);
    }
    for (other, name) in [(0, "offline DAP"), (1, "online DAP")] {
        let c = paired_bootstrap(&wins[2], &wins[other], 2000, 0);
        println!(
            "BPO vs {name}: {:+.3}, p = {:.3}",
            c.difference.value, c.p_value
        );
    }
    Ok(())
}
