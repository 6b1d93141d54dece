//! Offline training of a transformer (`bpo train`, `bpo sft`): load, optionally add LoRA, run
//! the trainer over a fixed data set, then export the merged model (Hugging Face layout), the
//! adapters (PEFT layout) and plots.

use std::path::{Path, PathBuf};

use bpo_data::{PreferencePair, ReadOptions, TokenizedPair, read_all, tokenize_pairs};
use bpo_model::burn::module::Module;
use bpo_model::spec::save_hf;
use bpo_model::{ModelConfig, Tokenizer, Transformer};

use crate::config::{DataConfig, LoraConfig, OptimConfig, RunConfig, TrainConfig};
use crate::dap::Dap;
use crate::error::AlgoError;
use crate::lora::{apply_lora, merged, save_adapters};
use crate::metrics::{MetricsRecord, TRAINING_PLOTS, plot_training};
use crate::reference::{Reference, cached_reference};
use crate::trainer::{
    Merge, Objective, Observer, Policy, RunDir, Schedule, Trainer, load_for_training, plan_steps,
    remaining,
};

/// What a finished run produced.
#[derive(Debug, Clone)]
pub struct TrainOutcome {
    /// Optimizer steps made in total.
    pub steps: usize,
    /// The run directory.
    pub out: PathBuf,
    /// Metrics of the last step (with the final dev evaluation).
    pub last: MetricsRecord,
    /// The trained model in Hugging Face layout (adapters merged).
    pub model_dir: PathBuf,
    /// The trained model itself.
    pub model: Transformer,
}

/// Everything an offline run needs besides its objective.
pub(crate) struct Setup<'a> {
    /// The model spec the run started from (named in the PEFT adapter config).
    pub model: &'a str,
    /// LoRA, or full fine-tuning.
    pub lora: Option<&'a LoraConfig>,
    /// Optimizer and schedule.
    pub optim: &'a OptimConfig,
    /// Loop settings.
    pub run: &'a RunConfig,
    /// The run directory (created before any work, so that an unusable `run.out` is the
    /// first error).
    pub dir: RunDir,
    /// The tokenizer exported with the model.
    pub tokenizer: Tokenizer,
}

/// Writes the checkpoint of the finished run (unless `run.save_every` wrote it already); an
/// error says that the model is safe in `model_dir` all the same.
pub(crate) fn save_final_checkpoint<M: Merge>(
    trainer: &Trainer<M>,
    state_model: Option<&M>,
    model_dir: &Path,
) -> Result<(), AlgoError> {
    let every = trainer.schedule.save_every;
    if every > 0 && trainer.step.is_multiple_of(every) {
        return Ok(());
    }
    trainer
        .save(&(), state_model)
        .map_err(|e| AlgoError::Checkpoint {
            path: trainer.dir.path("checkpoints"),
            message: format!(
                "the final checkpoint could not be written ({e}); the trained model is in {}",
                model_dir.display()
            ),
        })
}

/// Reads and tokenises a pair file for `model`; returns the pairs and how many were truncated
/// and skipped. A pair longer than the model's positions is an error naming it.
pub(crate) fn read_pairs(
    path: &Path,
    data: &DataConfig,
    tokenizer: &Tokenizer,
    model: &ModelConfig,
) -> Result<(Vec<TokenizedPair>, usize, usize), AlgoError> {
    let options = ReadOptions {
        skip_invalid: data.skip_invalid,
        ..ReadOptions::default()
    };
    let read = read_all::<PreferencePair>(path, options)?;
    let (pairs, truncated) = tokenize_pairs(&read.records, tokenizer, &data.truncation())?;
    if pairs.is_empty() {
        return Err(AlgoError::Config(format!("{}: no pairs", path.display())));
    }
    for (i, p) in pairs.iter().enumerate() {
        model.check_length(
            p.longest(),
            &format_args!("{} pair {}", path.display(), i + 1),
        )?;
    }
    Ok((pairs, truncated, read.skipped.len()))
}

/// The fixed reference log-probs of `pairs`: the initial model's (disk-cached) or the pairs'
/// own behavior log-probs; an EMA starts from the initial model.
fn reference_for(
    config: &TrainConfig,
    pairs: &[TokenizedPair],
    initial: &Transformer,
    pad_id: u32,
    observer: &mut dyn Observer,
) -> Result<Reference, AlgoError> {
    let cached = || {
        let cache = config.reference.cache_dir.clone().unwrap_or_else(|| {
            let parent = config.run.out.parent().unwrap_or(Path::new("."));
            parent.join(".reference-cache")
        });
        let batch = config.run.eval_batch_size;
        let (logps, hit) = cached_reference(initial, pairs, batch, pad_id, &cache, |_| {})?;
        let how = if hit {
            "read from cache"
        } else {
            "computed and cached"
        };
        observer.message(&format!(
            "reference log-probs of {} pairs {how} ({})",
            pairs.len(),
            cache.display()
        ));
        Ok(logps)
    };
    Reference::for_mode(&config.reference, pairs, cached, || merged(initial))
}

/// Offline DAP (`bpo train`): trains `config.model` on the pairs of `config.data.train`.
pub fn train_dap(
    config: &TrainConfig,
    resume: Option<&Path>,
    observer: &mut dyn Observer,
) -> Result<TrainOutcome, AlgoError> {
    config.validate()?;
    let mut dir = RunDir::create(
        &config.run.out,
        config,
        config.run.keep_checkpoints,
        &config.data.files(),
    )?;
    let (model, tokenizer) = load_for_training(
        &config.model,
        &config.device,
        config.dtype,
        config.lora.as_ref(),
        &mut dir,
        observer,
    )?;
    let pad_id = tokenizer.pad_id();
    let (pairs, truncated, skipped) =
        read_pairs(&config.data.train, &config.data, &tokenizer, &model.config)?;
    observer.message(&format!(
        "{} training pairs ({truncated} truncated, {skipped} skipped)",
        pairs.len()
    ));
    // Scored with the policy's products (`train_offline` sets them on the policy).
    let mut initial = model.valid();
    initial.bf16_products = config.run.bf16_products;
    let reference = reference_for(config, &pairs, &initial, pad_id, observer)?;
    let dev = match &config.data.dev {
        Some(path) => {
            let (dev_pairs, _, _) = read_pairs(path, &config.data, &tokenizer, &model.config)?;
            let fixed = reference_for(config, &dev_pairs, &initial, pad_id, observer)?
                .fixed()
                .cloned();
            Some((dev_pairs, fixed))
        }
        None => None,
    };
    drop(initial);
    let mut objective = Dap {
        pairs,
        reference,
        dev,
        loss: config.loss.clone(),
        pad_id,
        eval_batch_size: config.run.eval_batch_size,
    };
    let setup = Setup {
        model: &config.model,
        lora: config.lora.as_ref(),
        optim: &config.optim,
        run: &config.run,
        dir,
        tokenizer,
    };
    train_offline(&mut objective, model, setup, resume, observer)
}

/// Runs `objective` over its examples as `setup.run` says, then exports the merged model, the
/// adapters (with LoRA) and plots.
pub(crate) fn train_offline(
    objective: &mut impl Objective<Transformer>,
    model: Transformer,
    setup: Setup<'_>,
    resume: Option<&Path>,
    observer: &mut dyn Observer,
) -> Result<TrainOutcome, AlgoError> {
    let run = setup.run;
    let steps = plan_steps(&objective.lengths(), run);
    let total = steps.len();
    let mut model = match setup.lora {
        Some(lora) => apply_lora(model, lora, run.seed)?,
        None => model,
    };
    model.gradient_checkpointing = run.gradient_checkpointing;
    model.bf16_products = run.bf16_products;
    // The last checkpoint is written after the model (below), so that a disk filling up at
    // the end still leaves the trained model.
    let schedule = Schedule {
        optim: setup.optim.clone(),
        total_steps: total,
        eval_every: run.eval_every,
        save_every: run.save_every,
        save_at_end: false,
    };
    let policy = Policy::single(model, setup.optim);
    let state_model = objective.state_model();
    let (mut trainer, _) =
        Trainer::start::<()>(policy, schedule, setup.dir, resume, state_model, observer)?;
    let epochs = run.epochs as f64;
    let tags =
        |step: usize| MetricsRecord::from([("epoch".into(), step as f64 * epochs / total as f64)]);
    let progress = trainer.run(
        objective,
        remaining(&steps, trainer.step)?,
        &tags,
        &|_| (),
        observer,
    )?;
    let out = run.out.clone();
    let final_model = trainer.policy.merged();
    let model_dir = out.join("model");
    save_hf(&model_dir, &final_model, &setup.tokenizer)?;
    if let Some(lora) = setup.lora {
        save_adapters(
            trainer.policy.first(),
            lora,
            setup.model,
            &out.join("adapter"),
        )?;
    }
    save_final_checkpoint(&trainer, objective.state_model().map(|m| &*m), &model_dir)?;
    let plots = plot_training(trainer.metrics.records(), &out, TRAINING_PLOTS)?;
    observer.message(&format!(
        "model written to {}; {} plots in {}",
        model_dir.display(),
        plots.len(),
        out.display()
    ));
    Ok(TrainOutcome {
        steps: total,
        out,
        last: progress.last,
        model_dir,
        model: final_model,
    })
}
