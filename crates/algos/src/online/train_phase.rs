//! One collection phase of an online run: the merged policy samples and the annotator labels
//! (or a resumed phase reads its pairs back), the reference is set, and the trainer takes one
//! step per batch of the kept pairs; the phase's record says what happened.

use std::path::{Path, PathBuf};
use std::time::Instant;

use bpo_data::{PreferencePair, PromptRecord, ReadOptions, read_all, write_all};
use bpo_model::{Tokenizer, Transformer};
use serde::{Deserialize, Serialize};

use crate::annotate::Annotator;
use crate::config::{ReferenceMode, RunConfig};
use crate::dap::Dap;
use crate::error::AlgoError;
use crate::metrics::MetricsRecord;
use crate::online::collect::{PhaseCollection, collect_pairs, pairs_path, tokenized_from_meta};
use crate::online::config::OnlineConfig;
use crate::online::phase::{Drift, PhaseRecord};
use crate::reference::{Reference, behavior_reference, compute_reference};
use crate::trainer::{Objective, Observer, Progress, Trainer, plan_steps, remaining};

/// A prompt of a phase: its index in the prompt file, the record, its token ids.
pub(crate) type PhasePrompt = (usize, PromptRecord, Vec<u32>);

/// Where an online run stands (checkpointed with the trainer's state).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Position {
    /// The phase in progress (0-based); `phases` when the run is done.
    pub(crate) phase: usize,
    /// The phase's collection, once its pairs exist.
    pub(crate) collection: Option<PhaseCollection>,
    /// Steps, tokens and seconds of the phase's training so far.
    pub(crate) phase_step: usize,
    pub(crate) train_tokens: usize,
    pub(crate) train_seconds: f64,
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

/// What every phase of a run shares.
pub(crate) struct PhaseContext<'a> {
    pub(crate) config: &'a OnlineConfig,
    pub(crate) tokenizer: &'a Tokenizer,
    /// The initial policy (merged, no autodiff): the online-DAP reference and the KL baseline.
    pub(crate) initial: &'a Transformer,
    pub(crate) annotator: &'a mut dyn Annotator,
    /// The run directory (pair files go to `pairs/`).
    pub(crate) out: PathBuf,
}

/// Samples and annotates the phase's pairs with the merged policy and writes them to `file`;
/// a resumed phase reads them back.
#[allow(clippy::too_many_arguments)]
pub(crate) fn phase_pairs(
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

/// Runs phase `position.phase` on `prompts`: collects (or reads back) its pairs, trains on them
/// and returns its record; `ema` is the EMA reference carried from phase to phase.
pub(crate) fn train_phase(
    ctx: &mut PhaseContext<'_>,
    trainer: &mut Trainer<Transformer>,
    position: &mut Position,
    ema: &mut Option<Transformer>,
    prompts: &[PhasePrompt],
    observer: &mut dyn Observer,
) -> Result<PhaseRecord, AlgoError> {
    let config = ctx.config;
    let pad_id = ctx.tokenizer.pad_id();
    let batch = config.run.batch_size;
    let phase = position.phase;
    let phase_seed = config.phase_seed(phase);
    if position.collection.is_none() {
        observer.message(&format!(
            "phase {}/{}: sampling {} x {} responses",
            phase + 1,
            config.phases,
            prompts.len(),
            config.sampling.samples_per_prompt
        ));
    }
    let behavior = trainer.policy.merged();
    let file = pairs_path(&ctx.out, phase);
    let pairs = phase_pairs(
        config,
        position,
        &behavior,
        ctx.tokenizer,
        prompts,
        &mut *ctx.annotator,
        phase_seed,
        &file,
    )?;
    let tokenized = pairs
        .iter()
        .map(tokenized_from_meta)
        .collect::<Result<Vec<_>, _>>()?;
    let behavior_logps = behavior_reference(&tokenized)?;
    let scored = |model: &Transformer| {
        compute_reference(
            model,
            &tokenized,
            config.run.eval_batch_size,
            pad_id,
            |_| {},
        )
    };
    let any = !tokenized.is_empty();
    let scoring = Instant::now();
    let initial_logps = match config.reference.mode == ReferenceMode::Initial && any {
        true => Some(scored(ctx.initial)?),
        false => None,
    };
    let reference_seconds = scoring.elapsed().as_secs_f64();
    // The drift metrics compare with the sampled (f32) behavior log-probs: their passes are
    // f32 too, a second pass over the initial model when its reference took bf16 products.
    let measuring = Instant::now();
    let metric_initial = match (config.run.kl_metrics && any, &initial_logps) {
        (false, _) => None,
        (true, Some(logps)) if !ctx.initial.bf16_products => Some(logps.clone()),
        (true, _) => Some(scored(&in_f32(ctx.initial.clone()))?),
    };
    let mut metric_seconds = measuring.elapsed().as_secs_f64();
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
        remaining(&steps, start.phase_step)?,
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
    let mut record = PhaseRecord::new(
        phase + 1,
        &collection,
        objective.pairs.len(),
        &training,
        reference_seconds,
    );
    if let Some(initial_logps) = &metric_initial {
        let measuring = Instant::now();
        let after = compute_reference(
            &in_f32(trainer.policy.merged()),
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
    let spent: usize = config.phase_budgets()[..=phase].iter().sum();
    observer.phase_end(phase + 1, spent, &trainer.policy.merged())?;
    *ema = objective.reference.ema_model().map(|m| m.clone());
    Ok(record)
}

/// `model` with f32 products (as sampling computes).
fn in_f32(mut model: Transformer) -> Transformer {
    model.bf16_products = false;
    model
}
