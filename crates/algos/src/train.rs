//! The trainer shared by `bpo train` (offline DAP) and `bpo sft`: AdamW, global-norm clipping,
//! warm-up and decay, gradient accumulation with averaged metrics, dev evaluation, a guard
//! against non-finite values, atomic checkpoints with exact resume, metrics and plots.

use std::path::{Path, PathBuf};
use std::time::Instant;

use bpo_data::stats::AnyRecord;
use bpo_data::{
    PairBatch, PreferencePair, ReadOptions, TokenizedPair, bucketed_batches, read_all,
    tokenize_pairs,
};
use bpo_model::burn::module::Module;
use bpo_model::burn::optim::{GradientsAccumulator, GradientsParams, ModuleOptimizer};
use bpo_model::burn::tensor::{Device, Tensor};
use bpo_model::host::to_f32_vec;
use bpo_model::spec::save_hf;
use bpo_model::{SequenceBatch, Tokenizer, Transformer, load, parse_device, response_logprobs};

use crate::checkpoint::{self, TrainerState};
use crate::config::{
    DataConfig, LoraConfig, OptimConfig, ReferenceMode, RunConfig, SftConfig, TrainConfig,
};
use crate::error::AlgoError;
use crate::logps::pair_logps;
use crate::lora::{apply_lora, merged, save_adapters};
use crate::loss::{LossConfig, LossStats, dap_loss};
use crate::metrics::{MetricsLog, MetricsRecord, TRAINING_PLOTS, plot_training};
use crate::optim::{adamw, blend_into, clip_grad_norm};
use crate::reference::{ReferenceLogps, behavior_reference, cached_reference};

/// Receives progress while a run goes on (the CLI draws a progress bar from it).
pub trait Observer {
    /// A status line (loading, reference cache hits, where files went).
    fn message(&mut self, _text: &str) {}
    /// An optimizer step finished with these metrics.
    fn step(&mut self, _step: usize, _total: usize, _record: &MetricsRecord) {}
    /// An online collection phase ended (1-based), `pairs_used` annotations spent so far;
    /// `policy` is the merged policy (e.g. to evaluate learning curves).
    fn phase_end(
        &mut self,
        _phase: usize,
        _pairs_used: usize,
        _policy: &Transformer,
    ) -> Result<(), AlgoError> {
        Ok(())
    }
}

/// An observer that ignores everything.
pub struct Silent;

impl Observer for Silent {}

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

/// What the trainer optimises.
pub(crate) trait Objective {
    /// Length of each training example (bucketing).
    fn lengths(&self) -> Vec<usize>;
    /// How much a micro-batch counts in its step's average (examples or tokens).
    fn weight(&self, indices: &[usize]) -> f64;
    /// Loss (mean over the micro-batch's weight), its metrics and the tokens it processed.
    fn loss(
        &mut self,
        policy: &Transformer,
        indices: &[usize],
    ) -> Result<(Tensor<1>, MetricsRecord, usize), AlgoError>;
    /// Dev metrics (keys prefixed `dev/`), when there is dev data.
    fn evaluate(&mut self, policy: &Transformer) -> Result<Option<MetricsRecord>, AlgoError>;
    /// Called after every optimizer step.
    fn after_step(&mut self, _policy: &Transformer) {}
    /// A model the objective keeps as state (the EMA reference), for checkpoints.
    fn state_model(&mut self) -> Option<&mut Transformer> {
        None
    }
}

fn stats_record(stats: &LossStats) -> MetricsRecord {
    match serde_json::to_value(stats).expect("json") {
        serde_json::Value::Object(m) => m
            .into_iter()
            .filter_map(|(k, v)| Some((k, v.as_f64()?)))
            .collect(),
        _ => MetricsRecord::new(),
    }
}

fn weighted_mean(parts: &[(MetricsRecord, f64)]) -> MetricsRecord {
    let total: f64 = parts.iter().map(|(_, w)| w).sum();
    let mut out = MetricsRecord::new();
    for (record, w) in parts {
        for (k, v) in record {
            *out.entry(k.clone()).or_default() += v * w / total.max(f64::MIN_POSITIVE);
        }
    }
    out
}

/// Where reference log-probs come from during training.
pub(crate) enum Reference {
    /// Computed once (the initial model) or carried by the pairs (behavior).
    Fixed(ReferenceLogps),
    /// An exponential moving average of the policy, scored on the fly.
    Ema { model: Box<Transformer>, alpha: f64 },
    /// Reference-free.
    Free,
}

impl Reference {
    pub(crate) fn logps(
        &self,
        indices: &[usize],
        batch: &PairBatch,
        device: &Device,
    ) -> Result<Option<crate::loss::PairLogps>, AlgoError> {
        Ok(match self {
            Reference::Fixed(r) => Some(r.select(indices, device)),
            Reference::Ema { model, .. } => {
                let l = pair_logps(model, batch);
                let host = ReferenceLogps {
                    chosen: to_f32_vec(l.chosen),
                    rejected: to_f32_vec(l.rejected),
                    chosen_tokens: to_f32_vec(l.chosen_tokens),
                    rejected_tokens: to_f32_vec(l.rejected_tokens),
                };
                Some(host.select(&(0..indices.len()).collect::<Vec<_>>(), device))
            }
            Reference::Free => None,
        })
    }
}

pub(crate) struct Dap {
    pub(crate) pairs: Vec<TokenizedPair>,
    pub(crate) reference: Reference,
    /// Dev pairs, with their own reference log-probs when the reference is fixed (an EMA or
    /// reference-free run scores dev pairs with the training reference).
    pub(crate) dev: Option<(Vec<TokenizedPair>, Option<ReferenceLogps>)>,
    pub(crate) loss: LossConfig,
    pub(crate) pad_id: u32,
    pub(crate) eval_batch_size: usize,
}

impl Objective for Dap {
    fn lengths(&self) -> Vec<usize> {
        self.pairs
            .iter()
            .map(|p| p.prompt.len() + p.chosen.len().max(p.rejected.len()))
            .collect()
    }

    fn weight(&self, indices: &[usize]) -> f64 {
        indices.len() as f64
    }

    fn loss(
        &mut self,
        policy: &Transformer,
        indices: &[usize],
    ) -> Result<(Tensor<1>, MetricsRecord, usize), AlgoError> {
        let chunk: Vec<TokenizedPair> = indices.iter().map(|&i| self.pairs[i].clone()).collect();
        let batch = PairBatch::new(&chunk, self.pad_id)?;
        let tokens = batch.sequences.tokens.mask.iter().filter(|m| **m).count();
        let policy_logps = pair_logps(policy, &batch);
        let reference = self.reference.logps(indices, &batch, &policy.device())?;
        let (loss, stats) = dap_loss(&self.loss, &policy_logps, reference.as_ref());
        Ok((loss, stats_record(&stats), tokens))
    }

    fn evaluate(&mut self, policy: &Transformer) -> Result<Option<MetricsRecord>, AlgoError> {
        let Some((pairs, fixed)) = &self.dev else {
            return Ok(None);
        };
        let mut parts = Vec::new();
        let indices: Vec<usize> = (0..pairs.len()).collect();
        for chunk in indices.chunks(self.eval_batch_size) {
            let batch_pairs: Vec<TokenizedPair> = chunk.iter().map(|&i| pairs[i].clone()).collect();
            let batch = PairBatch::new(&batch_pairs, self.pad_id)?;
            let policy_logps = pair_logps(policy, &batch);
            let reference = match fixed {
                Some(r) => Some(r.select(chunk, &policy.device())),
                None => self.reference.logps(chunk, &batch, &policy.device())?,
            };
            let (_, stats) = dap_loss(&self.loss, &policy_logps, reference.as_ref());
            parts.push((stats, chunk.len()));
        }
        let mean = LossStats::weighted_mean(&parts);
        Ok(Some(
            stats_record(&mean)
                .into_iter()
                .map(|(k, v)| (format!("dev/{k}"), v))
                .collect(),
        ))
    }

    fn after_step(&mut self, policy: &Transformer) {
        if let Reference::Ema { model, alpha } = &mut self.reference {
            **model = blend_into((**model).clone(), &merged(policy), *alpha);
        }
    }

    fn state_model(&mut self) -> Option<&mut Transformer> {
        match &mut self.reference {
            Reference::Ema { model, .. } => Some(model.as_mut()),
            _ => None,
        }
    }
}

/// Prompt and response token ids of one SFT example.
type Completion = (Vec<u32>, Vec<u32>);

struct Sft {
    examples: Vec<Completion>,
    dev: Option<Vec<Completion>>,
    pad_id: u32,
    eval_batch_size: usize,
}

/// Mean NLL per response token of `examples` and the number of response tokens.
fn nll(
    policy: &Transformer,
    examples: &[(Vec<u32>, Vec<u32>)],
    pad_id: u32,
) -> Result<(Tensor<1>, usize), AlgoError> {
    let batch = SequenceBatch::new(examples, pad_id).map_err(AlgoError::Model)?;
    let tokens: usize = batch.response_lens.iter().sum();
    let (logps, _) = response_logprobs(policy, &batch);
    Ok((-(logps.sum()) / tokens.max(1) as f64, tokens))
}

impl Objective for Sft {
    fn lengths(&self) -> Vec<usize> {
        self.examples
            .iter()
            .map(|(p, r)| p.len() + r.len())
            .collect()
    }

    fn weight(&self, indices: &[usize]) -> f64 {
        indices
            .iter()
            .map(|&i| self.examples[i].1.len() as f64)
            .sum()
    }

    fn loss(
        &mut self,
        policy: &Transformer,
        indices: &[usize],
    ) -> Result<(Tensor<1>, MetricsRecord, usize), AlgoError> {
        let chunk: Vec<(Vec<u32>, Vec<u32>)> =
            indices.iter().map(|&i| self.examples[i].clone()).collect();
        let all_tokens: usize = chunk.iter().map(|(p, r)| p.len() + r.len()).sum();
        let (loss, tokens) = nll(policy, &chunk, self.pad_id)?;
        let value = to_f32_vec(loss.clone().detach())[0] as f64;
        let record = MetricsRecord::from([
            ("loss".into(), value),
            ("response_tokens".into(), tokens as f64),
        ]);
        Ok((loss, record, all_tokens))
    }

    fn evaluate(&mut self, policy: &Transformer) -> Result<Option<MetricsRecord>, AlgoError> {
        let Some(dev) = &self.dev else {
            return Ok(None);
        };
        let mut parts = Vec::new();
        for chunk in dev.chunks(self.eval_batch_size) {
            let (loss, tokens) = nll(policy, chunk, self.pad_id)?;
            parts.push((
                MetricsRecord::from([("dev/loss".into(), to_f32_vec(loss)[0] as f64)]),
                tokens as f64,
            ));
        }
        Ok(Some(weighted_mean(&parts)))
    }
}

/// Everything a run needs besides its objective.
struct Setup<'a> {
    model: &'a str,
    lora: Option<&'a LoraConfig>,
    optim: &'a OptimConfig,
    run: &'a RunConfig,
    config_json: serde_json::Value,
    tokenizer: Tokenizer,
}

/// Reads and tokenises a pair file; returns the pairs and how many were truncated and skipped.
pub(crate) fn read_pairs(
    path: &Path,
    data: &DataConfig,
    tokenizer: &Tokenizer,
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
    Ok((pairs, truncated, read.skipped.len()))
}

fn reference_for(
    mode: ReferenceMode,
    pairs: &[TokenizedPair],
    initial: &Transformer,
    config: &TrainConfig,
    pad_id: u32,
    observer: &mut dyn Observer,
) -> Result<Reference, AlgoError> {
    Ok(match mode {
        ReferenceMode::Initial => {
            let cache = config.reference.cache_dir.clone().unwrap_or_else(|| {
                config
                    .run
                    .out
                    .parent()
                    .unwrap_or(Path::new("."))
                    .join(".reference-cache")
            });
            let (logps, hit) = cached_reference(
                initial,
                pairs,
                config.run.eval_batch_size,
                pad_id,
                &cache,
                |_| {},
            )?;
            observer.message(&format!(
                "reference log-probs of {} pairs {} ({})",
                pairs.len(),
                if hit {
                    "read from cache"
                } else {
                    "computed and cached"
                },
                cache.display()
            ));
            Reference::Fixed(logps)
        }
        ReferenceMode::Behavior => Reference::Fixed(behavior_reference(pairs)?),
        ReferenceMode::Ema => Reference::Ema {
            model: Box::new(merged(initial)),
            alpha: config.reference.ema_alpha,
        },
        ReferenceMode::None => Reference::Free,
    })
}

/// Offline DAP (`bpo train`): trains `config.model` on the pairs of `config.data.train`.
pub fn train_dap(
    config: &TrainConfig,
    resume: Option<&Path>,
    observer: &mut dyn Observer,
) -> Result<TrainOutcome, AlgoError> {
    config.loss.validate()?;
    let device = parse_device(&config.device)?.autodiff();
    observer.message(&format!("loading {}", config.model));
    let (model, tokenizer) = load(&config.model, &device)?;
    let pad_id = tokenizer.pad_id();
    let (pairs, truncated, skipped) = read_pairs(&config.data.train, &config.data, &tokenizer)?;
    observer.message(&format!(
        "{} training pairs ({truncated} truncated, {skipped} skipped)",
        pairs.len()
    ));
    let initial = model.valid();
    let reference = reference_for(
        config.reference.mode,
        &pairs,
        &initial,
        config,
        pad_id,
        observer,
    )?;
    let dev = match &config.data.dev {
        Some(path) => {
            let (dev_pairs, _, _) = read_pairs(path, &config.data, &tokenizer)?;
            let fixed = match reference_for(
                config.reference.mode,
                &dev_pairs,
                &initial,
                config,
                pad_id,
                observer,
            )? {
                Reference::Fixed(logps) => Some(logps),
                _ => None,
            };
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
        config_json: serde_json::to_value(config).expect("json"),
        tokenizer,
    };
    run(&mut objective, model, setup, resume, observer)
}

/// Completion-only SFT (`bpo sft`): prompts with a `reference` response, or pairs' chosen
/// responses; the loss is the mean NLL per response token.
pub fn train_sft(
    config: &SftConfig,
    resume: Option<&Path>,
    observer: &mut dyn Observer,
) -> Result<TrainOutcome, AlgoError> {
    let device = parse_device(&config.device)?.autodiff();
    observer.message(&format!("loading {}", config.model));
    let (model, tokenizer) = load(&config.model, &device)?;
    let truncation = config.data.truncation();
    let read = |path: &Path| -> Result<Vec<Completion>, AlgoError> {
        let options = ReadOptions {
            skip_invalid: config.data.skip_invalid,
            ..ReadOptions::default()
        };
        let records = read_all::<AnyRecord>(path, options)?.records;
        let mut out = Vec::with_capacity(records.len());
        for (i, record) in records.iter().enumerate() {
            let (prompt, response) = match record {
                AnyRecord::Prompt(p) => match &p.reference {
                    Some(r) => (&p.prompt, r),
                    None => {
                        return Err(AlgoError::Config(format!(
                            "{}: record {i} has no `reference` to train on",
                            path.display()
                        )));
                    }
                },
                AnyRecord::Pair(p) => (&p.prompt, &p.chosen),
            };
            let mut p = bpo_data::tokenize::tokenize_prompt_content(prompt, &tokenizer)?;
            let mut r = bpo_data::tokenize::tokenize_response(response, &tokenizer)?;
            truncation.prompt(&mut p);
            truncation.response(p.len(), &mut r, None);
            out.push((p, r));
        }
        if out.is_empty() {
            return Err(AlgoError::Config(format!(
                "{}: no examples",
                path.display()
            )));
        }
        Ok(out)
    };
    let examples = read(&config.data.train)?;
    observer.message(&format!("{} training examples", examples.len()));
    let dev = config.data.dev.as_deref().map(read).transpose()?;
    let mut objective = Sft {
        examples,
        dev,
        pad_id: tokenizer.pad_id(),
        eval_batch_size: config.run.eval_batch_size,
    };
    let setup = Setup {
        model: &config.model,
        lora: config.lora.as_ref(),
        optim: &config.optim,
        run: &config.run,
        config_json: serde_json::to_value(config).expect("json"),
        tokenizer,
    };
    run(&mut objective, model, setup, resume, observer)
}

/// The micro-batches of every optimizer step: per epoch, length-bucketed batches in a seeded
/// order, grouped `grad_accum` at a time.
fn plan_steps(lengths: &[usize], run: &RunConfig) -> Vec<Vec<Vec<usize>>> {
    let mut steps = Vec::new();
    for epoch in 0..run.epochs {
        let batches = bucketed_batches(
            lengths,
            run.batch_size,
            run.bucket_pool,
            run.seed.wrapping_add(epoch as u64),
        );
        steps.extend(batches.chunks(run.grad_accum).map(<[Vec<usize>]>::to_vec));
    }
    if let Some(max) = run.max_steps {
        steps.truncate(max);
    }
    steps
}

/// One optimizer step of `policy` over `micro_batches` (gradients accumulated, weighted by each
/// micro-batch's share), with global-norm clipping and the non-finite guard. Returns the
/// updated policy, the step's metrics (weighted means over micro-batches, plus `grad_norm` and
/// `lr`) and the number of tokens processed. `step` (1-based) is for error messages.
pub(crate) fn optimizer_step(
    objective: &mut dyn Objective,
    policy: Transformer,
    optimizer: &mut ModuleOptimizer,
    micro_batches: &[Vec<usize>],
    max_grad_norm: f64,
    lr: f64,
    step: usize,
) -> Result<(Transformer, MetricsRecord, usize), AlgoError> {
    let total_weight: f64 = micro_batches.iter().map(|m| objective.weight(m)).sum();
    let mut accumulator = GradientsAccumulator::<Transformer>::new();
    let mut parts = Vec::with_capacity(micro_batches.len());
    let mut tokens = 0;
    for indices in micro_batches {
        let (loss, record, n) = objective.loss(&policy, indices)?;
        if !record.get("loss").is_some_and(|l| l.is_finite()) {
            return Err(AlgoError::NonFinite {
                step,
                what: "loss".into(),
            });
        }
        let weight = objective.weight(indices);
        let grads = (loss * (weight / total_weight)).backward();
        accumulator.accumulate(&policy, GradientsParams::from_grads(grads, &policy));
        parts.push((record, weight));
        tokens += n;
    }
    let mut grads = accumulator.grads();
    let grad_norm = clip_grad_norm(&policy, &mut grads, max_grad_norm);
    if !grad_norm.is_finite() {
        return Err(AlgoError::NonFinite {
            step,
            what: "gradient norm".into(),
        });
    }
    let policy = optimizer.step(lr, policy, grads);
    let mut record = weighted_mean(&parts);
    record.insert("grad_norm".into(), grad_norm);
    record.insert("lr".into(), lr);
    Ok((policy, record, tokens))
}

fn run(
    objective: &mut dyn Objective,
    model: Transformer,
    setup: Setup<'_>,
    resume: Option<&Path>,
    observer: &mut dyn Observer,
) -> Result<TrainOutcome, AlgoError> {
    let (run, optim_config) = (setup.run, setup.optim);
    run.validate()?;
    optim_config.validate()?;
    let out = run.out.clone();
    std::fs::create_dir_all(&out).map_err(|e| AlgoError::io(&out, e))?;
    let steps = plan_steps(&objective.lengths(), run);
    let total = steps.len();
    let mut policy = match setup.lora {
        Some(lora) => apply_lora(model, lora, run.seed)?,
        None => model,
    };
    let mut optimizer = adamw(optim_config);
    let metrics_path = out.join("metrics.jsonl");
    let (start, mut metrics) = match resume {
        Some(path) => {
            let dir = checkpoint::resolve(path)?;
            let state: TrainerState = checkpoint::load_state(&dir)?;
            if state.config != setup.config_json {
                return Err(AlgoError::Checkpoint {
                    path: dir,
                    message: "the configuration differs from the one the run started with".into(),
                });
            }
            policy = checkpoint::load_model(&dir, policy, "model.bpk")?;
            optimizer = checkpoint::load_optimizer(&dir, optimizer, "optimizer.bpk")?;
            if let Some(reference) = objective.state_model() {
                *reference = checkpoint::load_model(&dir, reference.clone(), "reference.bpk")?;
            }
            observer.message(&format!(
                "resuming from {} (step {})",
                dir.display(),
                state.step
            ));
            (state.step, MetricsLog::resume(&metrics_path, state.step)?)
        }
        None => {
            let text = serde_json::to_string_pretty(&setup.config_json).expect("json");
            bpo_model::fsutil::write_atomic(&out.join("config.json"), text.as_bytes())?;
            (0, MetricsLog::create(&metrics_path)?)
        }
    };
    let mut last = MetricsRecord::new();
    for (step, micro_batches) in steps.iter().enumerate().skip(start) {
        let started = Instant::now();
        let lr = optim_config.lr_at(step, total);
        let (stepped, mut record, tokens) = optimizer_step(
            objective,
            policy,
            &mut optimizer,
            micro_batches,
            optim_config.max_grad_norm,
            lr,
            step + 1,
        )?;
        policy = stepped;
        objective.after_step(&policy);
        let elapsed = started.elapsed().as_secs_f64();
        record.insert("step".into(), (step + 1) as f64);
        record.insert(
            "epoch".into(),
            (step + 1) as f64 * run.epochs as f64 / total as f64,
        );
        record.insert("tokens_per_s".into(), tokens as f64 / elapsed.max(1e-9));
        let is_last = step + 1 == total;
        let eval_due = (run.eval_every > 0 && (step + 1) % run.eval_every == 0) || is_last;
        if eval_due && let Some(dev) = objective.evaluate(&policy.valid())? {
            record.extend(dev);
        }
        metrics.append(record.clone())?;
        observer.step(step + 1, total, &record);
        if (run.save_every > 0 && (step + 1) % run.save_every == 0) || is_last {
            let state = TrainerState {
                step: step + 1,
                total_steps: total,
                config: setup.config_json.clone(),
            };
            let extra = objective.state_model().map(|m| m.clone());
            let mut models = vec![("model.bpk", &policy)];
            models.extend(extra.as_ref().map(|m| ("reference.bpk", m)));
            checkpoint::save(
                &out,
                step + 1,
                &state,
                &models,
                &[("optimizer.bpk", &optimizer)],
                run.keep_checkpoints,
            )?;
        }
        last = record;
    }
    let final_model = merged(&policy);
    let model_dir = out.join("model");
    save_hf(&model_dir, &final_model, &setup.tokenizer)?;
    if let Some(lora) = setup.lora {
        save_adapters(&policy, lora, setup.model, &out.join("adapter"))?;
    }
    let plots = plot_training(metrics.records(), &out, TRAINING_PLOTS)?;
    observer.message(&format!(
        "model written to {}; {} plots in {}",
        model_dir.display(),
        plots.len(),
        out.display()
    ));
    Ok(TrainOutcome {
        steps: total,
        out,
        last,
        model_dir,
        model: final_model,
    })
}
