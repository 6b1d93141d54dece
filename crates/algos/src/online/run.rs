//! The online loop (`bpo online`): per phase, the merged policy becomes the behavior model and
//! collects pairs, the reference is set (behavior, initial, EMA or none), and the trainer
//! takes one step per batch of the phase's pairs.

use std::path::{Path, PathBuf};

use bpo_data::{Truncation, tokenize_prompt};
use bpo_model::spec::save_hf;
use bpo_model::{Tokenizer, Transformer};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::config::ReferenceMode;
use crate::error::AlgoError;
use crate::lora::{apply_lora, load_adapters, save_adapters};
use crate::metrics::{JsonlLog, TRAINING_PLOTS, plot_training};
use crate::online::config::OnlineConfig;
use crate::online::phase::PhaseRecord;
use crate::online::prompts::{load_prompts, prompt_file};
use crate::online::train_phase::{PhaseContext, PhasePrompt, Position, train_phase};
use crate::trainer::{Observer, Policy, RunDir, Schedule, Trainer, load_for_training};

/// What a finished online run produced.
pub struct OnlineOutcome {
    /// The run directory.
    pub out: PathBuf,
    /// Optimizer steps made.
    pub steps: usize,
    /// One record per phase (see `phases.jsonl`).
    pub phases: Vec<PhaseRecord>,
    /// The final merged policy in Hugging Face layout (when `run.save_model`).
    pub model_dir: PathBuf,
    /// The final merged policy.
    pub model: Transformer,
}

/// The prompts of each phase: a seeded order of all prompts, the first `budget` of it, split
/// by the phase budgets, tokenised.
fn phase_prompts(
    config: &OnlineConfig,
    tokenizer: &Tokenizer,
) -> Result<Vec<Vec<PhasePrompt>>, AlgoError> {
    let records = load_prompts(&config.prompts)?;
    if records.len() < config.budget {
        return Err(AlgoError::Config(format!(
            "{}: {} prompts, fewer than the budget of {} (each prompt is used once)",
            config.prompts,
            records.len(),
            config.budget
        )));
    }
    let mut order: Vec<usize> = (0..records.len()).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(config.run.seed));
    let truncation = Truncation {
        max_prompt_tokens: config.max_prompt_tokens,
        ..Truncation::default()
    };
    let mut offset = 0;
    let mut phases = Vec::with_capacity(config.phases);
    for budget in config.phase_budgets() {
        let mut prompts = Vec::with_capacity(budget);
        for &i in &order[offset..offset + budget] {
            let (ids, _) = tokenize_prompt(&records[i], tokenizer, &truncation)?;
            prompts.push((i, records[i].clone(), ids));
        }
        offset += budget;
        phases.push(prompts);
    }
    Ok(phases)
}

/// The starting policy: K members (LoRA adapters from `run.seed + i`, or saved adapters), each
/// with its own AdamW.
fn initial_policy(
    config: &OnlineConfig,
    base: Transformer,
) -> Result<Policy<Transformer>, AlgoError> {
    let mut models = Vec::with_capacity(config.ensemble.size);
    for i in 0..config.ensemble.size {
        let mut model = match &config.lora {
            Some(lora) => apply_lora(base.clone(), lora, config.run.seed + i as u64)?,
            None => base.clone(),
        };
        model.gradient_checkpointing = config.run.gradient_checkpointing;
        models.push(match (config.ensemble.init_adapters.get(i), &config.lora) {
            (Some(dir), Some(lora)) => load_adapters(model, lora, dir)?,
            _ => model,
        });
    }
    Ok(Policy::ensemble(
        models,
        &config.optim,
        config.ensemble.merge,
    ))
}

/// Runs online DAP / BPO as configured; `resume` continues from a checkpoint or run directory.
pub fn train_online(
    config: &OnlineConfig,
    resume: Option<&Path>,
    observer: &mut dyn Observer,
) -> Result<OnlineOutcome, AlgoError> {
    config.validate()?;
    let prompt_files: Vec<(&str, &Path)> = prompt_file(&config.prompts)
        .map(|file| ("prompts", file))
        .into_iter()
        .collect();
    let mut dir = RunDir::create(
        &config.run.out,
        config,
        config.run.keep_checkpoints,
        &prompt_files,
    )?;
    let out = dir.out.clone();
    std::fs::create_dir_all(out.join("pairs")).map_err(|e| AlgoError::io(out.join("pairs"), e))?;
    let (mut base, tokenizer) = load_for_training(
        &config.model,
        &config.device,
        config.dtype,
        config.lora.as_ref(),
        &mut dir,
        observer,
    )?;
    // The policy members and the initial reference (merged from them) alike.
    base.bf16_products = config.run.bf16_products;
    let mut annotator = config.annotator.build_in(Some(&out))?;
    observer.message(&format!("annotator: {}", annotator.name()));
    let prompts = phase_prompts(config, &tokenizer)?;
    let batch = config.run.batch_size;
    let total_steps = config
        .phase_budgets()
        .iter()
        .map(|n| n.div_ceil(batch))
        .sum();
    let policy = initial_policy(config, base)?;
    let initial = policy.merged();
    let mut ema = (config.reference.mode == ReferenceMode::Ema).then(|| initial.clone());
    let schedule = Schedule {
        optim: config.optim.clone(),
        total_steps,
        save_every: config.run.save_every,
        ..Schedule::default()
    };
    let (mut trainer, resumed) =
        Trainer::start::<Position>(policy, schedule, dir, resume, ema.as_mut(), observer)?;
    let mut position = resumed.unwrap_or_default();
    let mut phase_log = match resume {
        Some(_) => JsonlLog::resume(&out.join("phases.jsonl"), position.phase)?,
        None => JsonlLog::create(&out.join("phases.jsonl"))?,
    };
    let mut ctx = PhaseContext {
        config,
        tokenizer: &tokenizer,
        initial: &initial,
        annotator: annotator.as_mut(),
        out: out.clone(),
    };
    while position.phase < config.phases {
        let phase = position.phase;
        let record = train_phase(
            &mut ctx,
            &mut trainer,
            &mut position,
            &mut ema,
            &prompts[phase],
            observer,
        )?;
        phase_log.append(record)?;
        position = Position {
            phase: phase + 1,
            ..Position::default()
        };
        trainer.save(&position, ema.as_ref())?;
    }
    finish(config, trainer, phase_log, &tokenizer, observer)
}

/// Writes the final merged policy, every member's adapters and the training plots.
fn finish(
    config: &OnlineConfig,
    trainer: Trainer<Transformer>,
    phase_log: JsonlLog<PhaseRecord>,
    tokenizer: &Tokenizer,
    observer: &mut dyn Observer,
) -> Result<OnlineOutcome, AlgoError> {
    let out = trainer.dir.out.clone();
    let model = trainer.policy.merged();
    let model_dir = out.join("model");
    if config.run.save_model {
        save_hf(&model_dir, &model, tokenizer)?;
        observer.message(&format!("model written to {}", model_dir.display()));
    }
    if let Some(lora) = &config.lora {
        for (i, member) in trainer.policy.members.iter().enumerate() {
            let dir = out.join("adapters").join(format!("member-{i}"));
            save_adapters(&member.model, lora, &config.model, &dir)?;
        }
    }
    plot_training(trainer.metrics.records(), &out, TRAINING_PLOTS)?;
    Ok(OnlineOutcome {
        out,
        steps: trainer.step,
        phases: phase_log.records().to_vec(),
        model_dir,
        model,
    })
}
