//! The online loop (`bpo online`): per phase, the merged policy becomes the behavior model and
//! collects pairs, the reference is set (behavior, initial, EMA or none), and the trainer
//! takes one step per batch of the phase's pairs.

use std::path::{Path, PathBuf};
use std::time::Instant;

use bpo_data::{
    PreferencePair, PromptRecord, ReadOptions, Truncation, read_all, tokenize_prompt, write_all,
};
use bpo_model::spec::save_hf;
use bpo_model::{Tokenizer, Transformer, load};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::annotate::Annotator;
use crate::config::{ReferenceMode, RunConfig};
use crate::dap::Dap;
use crate::error::AlgoError;
use crate::lora::{apply_lora, load_adapters, save_adapters};
use crate::metrics::{JsonlLog, MetricsRecord, TRAINING_PLOTS, plot_training};
use crate::online::collect::{PhaseCollection, collect_pairs, pairs_path, tokenized_from_meta};
use crate::online::config::OnlineConfig;
use crate::online::phase::{Drift, PhaseRecord};
use crate::online::prompts::load_prompts;
use crate::reference::{Reference, behavior_reference, compute_reference};
use crate::trainer::{
    Objective, Observer, Policy, Progress, RunDir, Schedule, Trainer, open_device, plan_steps,
};

/// Where an online run stands (checkpointed with the trainer's state).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Position {
    /// The phase in progress (0-based); `phases` when the run is done.
    phase: usize,
    /// The phase's collection, once its pairs exist.
    collection: Option<PhaseCollection>,
    /// Steps, tokens and seconds of the phase's training so far.
    phase_step: usize,
    train_tokens: usize,
    train_seconds: f64,
}

impl Position {
    /// The position after `progress` more steps of this phase.
    fn after(&self, progress: &Progress) -> Self {
        Position {
            phase_step: self.phase_step + progress.steps,
            train_tokens: self.train_tokens + progress.tokens,
            train_seconds: self.train_seconds + progress.seconds,
            ..self.clone()
        }
    }
}

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

/// A prompt of a phase: its index in the prompt file, the record, its token ids.
type PhasePrompt = (usize, PromptRecord, Vec<u32>);

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
        let model = match &config.lora {
            Some(lora) => apply_lora(base.clone(), lora, config.run.seed + i as u64)?,
            None => base.clone(),
        };
        models.push(match config.ensemble.init_adapters.get(i) {
            Some(dir) => load_adapters(model, dir)?,
            None => model,
        });
    }
    Ok(Policy::ensemble(
        models,
        &config.optim,
        config.ensemble.merge,
    ))
}

/// Samples and annotates the phase's pairs with the merged policy and writes them to `file`;
/// a resumed phase reads them back.
#[allow(clippy::too_many_arguments)]
fn phase_pairs(
    config: &OnlineConfig,
    position: &mut Position,
    behavior: &Transformer,
    tokenizer: &Tokenizer,
    prompts: &[PhasePrompt],
    annotator: &mut dyn Annotator,
    seed: u64,
    file: &Path,
) -> Result<Vec<PreferencePair>, AlgoError> {
    if position.collection.is_some() {
        return Ok(read_all::<PreferencePair>(file, ReadOptions::default())?.records);
    }
    let prompts: Vec<(usize, &PromptRecord, Vec<u32>)> = prompts
        .iter()
        .map(|(i, r, ids)| (*i, r, ids.clone()))
        .collect();
    let (pairs, collection) = collect_pairs(
        behavior,
        tokenizer,
        &prompts,
        &config.sampling,
        annotator,
        config.label_noise,
        position.phase as u64,
        seed,
    )?;
    write_all(file, &pairs)?;
    position.collection = Some(collection);
    Ok(pairs)
}

/// Runs online DAP / BPO as configured; `resume` continues from a checkpoint or run directory.
pub fn train_online(
    config: &OnlineConfig,
    resume: Option<&Path>,
    observer: &mut dyn Observer,
) -> Result<OnlineOutcome, AlgoError> {
    config.validate()?;
    let dir = RunDir::create(&config.run.out, config, config.run.keep_checkpoints)?;
    let out = dir.out.clone();
    std::fs::create_dir_all(out.join("pairs")).map_err(|e| AlgoError::io(out.join("pairs"), e))?;
    let device = open_device(&config.device, config.dtype, observer)?.autodiff();
    observer.message(&format!("loading {}", config.model));
    let (base, tokenizer) = load(&config.model, &device)?;
    let pad_id = tokenizer.pad_id();
    let mut annotator = config.annotator.build()?;
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
    while position.phase < config.phases {
        let phase = position.phase;
        let phase_seed = config.phase_seed(phase);
        if position.collection.is_none() {
            observer.message(&format!(
                "phase {}/{}: sampling {} x {} responses",
                phase + 1,
                config.phases,
                prompts[phase].len(),
                config.sampling.samples_per_prompt
            ));
        }
        let behavior = trainer.policy.merged();
        let file = pairs_path(&out, phase);
        let pairs = phase_pairs(
            config,
            &mut position,
            &behavior,
            &tokenizer,
            &prompts[phase],
            annotator.as_mut(),
            phase_seed,
            &file,
        )?;
        let tokenized = pairs
            .iter()
            .map(tokenized_from_meta)
            .collect::<Result<Vec<_>, _>>()?;
        let behavior_logps = behavior_reference(&tokenized)?;
        let needs_initial =
            config.reference.mode == ReferenceMode::Initial || config.run.kl_metrics;
        let scoring = Instant::now();
        let initial_logps = match needs_initial && !tokenized.is_empty() {
            true => Some(compute_reference(
                &initial,
                &tokenized,
                config.run.eval_batch_size,
                pad_id,
                |_| {},
            )?),
            false => None,
        };
        let initial_seconds = scoring.elapsed().as_secs_f64();
        let reference = Reference::for_mode(
            &config.reference,
            &tokenized,
            || {
                Ok(initial_logps
                    .clone()
                    .unwrap_or_else(|| behavior_logps.clone()))
            },
            || ema.take().expect("an EMA run keeps its EMA model"),
        )?;
        let mut objective = Dap {
            pairs: tokenized,
            reference,
            dev: None,
            loss: config.loss.clone(),
            pad_id,
            eval_batch_size: config.run.eval_batch_size,
        };
        let plan = RunConfig {
            batch_size: batch,
            seed: phase_seed,
            ..RunConfig::default()
        };
        let steps = plan_steps(&objective.lengths(), &plan);
        // The schedule counts the steps the kept pairs give (ties and identical pairs are
        // dropped); phases not collected yet count at their budget.
        let future: usize = config.phase_budgets()[phase + 1..]
            .iter()
            .map(|n| n.div_ceil(batch))
            .sum();
        trainer.schedule.total_steps = trainer.step - position.phase_step + steps.len() + future;
        let tags = |_| MetricsRecord::from([("phase".into(), (phase + 1) as f64)]);
        let start = position.clone();
        let progress = trainer.run(
            &mut objective,
            &steps[start.phase_step..],
            &tags,
            &|p| start.after(p),
            observer,
        )?;
        let done = start.after(&progress);
        let training = Progress {
            steps: done.phase_step,
            tokens: done.train_tokens,
            seconds: done.train_seconds,
            ..progress
        };
        let collection = position.collection.take().expect("collected");
        let (reference_seconds, mut metric_seconds) = match config.reference.mode {
            ReferenceMode::Initial => (initial_seconds, 0.0),
            _ => (0.0, initial_seconds),
        };
        let mut record = PhaseRecord::new(
            phase + 1,
            &collection,
            objective.pairs.len(),
            &training,
            reference_seconds,
        );
        if let (true, Some(initial_logps)) = (config.run.kl_metrics, &initial_logps) {
            let measuring = Instant::now();
            let after = compute_reference(
                &trainer.policy.merged(),
                &objective.pairs,
                config.run.eval_batch_size,
                pad_id,
                |_| {},
            )?;
            record.drift = Some(Drift::measure(&behavior_logps, initial_logps, &after));
            metric_seconds += measuring.elapsed().as_secs_f64();
        }
        record.metric_seconds = metric_seconds;
        observer.message(&format!(
            "phase {}/{}: {} pairs ({} identical, {} ties dropped), mean score {:.3}",
            phase + 1,
            config.phases,
            record.pairs,
            record.dropped_identical,
            record.dropped_ties,
            record.mean_score
        ));
        phase_log.append(record)?;
        let spent: usize = config.phase_budgets()[..=phase].iter().sum();
        observer.phase_end(phase + 1, spent, &trainer.policy.merged())?;
        ema = objective.reference.ema_model().map(|m| m.clone());
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
