//! Online DAP and BPO (`bpo online`): an annotation budget of N pairs spent in F collection
//! phases. Each phase, the current (merged) policy becomes the behavior model, samples k
//! responses per fresh prompt in one batched KV-cached generation call (recording its
//! log-probs), the annotator labels them, and every member of the policy ensemble takes one
//! step per batch of the phase's pairs against the configured reference: `initial` (online
//! DAP), `behavior` (BPO, free: the log-probs came with the samples), `ema` or `none`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use bpo_data::{
    Content, PairMeta, PreferencePair, PromptRecord, ReadOptions, Split, TokenizedPair, Truncation,
    bucketed_batches, read_all, sentiment_prompts, tokenize_prompt, write_all,
};
use bpo_model::fsutil::write_atomic;
use bpo_model::spec::save_hf;
use bpo_model::{SamplingConfig, Tokenizer, Transformer, generate, load, parse_device};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::annotate::{Annotator, AnnotatorConfig, Preference, noisy_preference};
use crate::checkpoint;
use crate::config::{LoraConfig, OptimConfig, ReferenceConfig, ReferenceMode};
use crate::ensemble::{Ensemble, Member, MergeRule};
use crate::error::AlgoError;
use crate::lora::{apply_lora, load_adapters, save_adapters};
use crate::loss::LossConfig;
use crate::metrics::{MetricsLog, MetricsRecord, TRAINING_PLOTS, plot_training};
use crate::optim::{adamw, blend_into};
use crate::reference::{ReferenceLogps, behavior_reference, compute_reference};
use crate::train::{Dap, Observer, Reference, optimizer_step};

/// How the behavior model samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OnlineSampling {
    /// Responses per prompt (k >= 2; with k > 2 the best and worst make the pair). Default 2.
    pub samples_per_prompt: usize,
    /// Sampling temperature. Default 1.0 (the paper).
    pub temperature: f32,
    /// Top-k filter. Default 50 (the paper).
    pub top_k: Option<usize>,
    /// Top-p filter. Default none.
    pub top_p: Option<f32>,
    /// Most new tokens per response. Default 64.
    pub max_new_tokens: usize,
    /// Prompts per generation call (each expanded to k rows). Default 16.
    pub batch_size: usize,
}

impl Default for OnlineSampling {
    fn default() -> Self {
        OnlineSampling {
            samples_per_prompt: 2,
            temperature: 1.0,
            top_k: Some(50),
            top_p: None,
            max_new_tokens: 64,
            batch_size: 16,
        }
    }
}

/// The policy ensemble (the authors' LoRA ensemble stabiliser).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnsembleConfig {
    /// Number of LoRA members K (K > 1 needs `[lora]`). Default 1.
    pub size: usize,
    /// `delta_average` (default) or `factor_wise`.
    pub merge: MergeRule,
    /// Adapter directories (PEFT layout, e.g. from `bpo sft` with different seeds), one per
    /// member, to start each member from; empty = fresh adapters (B = 0). Default empty.
    pub init_adapters: Vec<PathBuf>,
}

impl Default for EnsembleConfig {
    fn default() -> Self {
        EnsembleConfig {
            size: 1,
            merge: MergeRule::DeltaAverage,
            init_adapters: Vec::new(),
        }
    }
}

/// Run settings of an online run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OnlineRunConfig {
    /// Output directory. Default `runs/online`.
    pub out: PathBuf,
    /// Pairs per optimizer step; every pair is used for one step (no replay). Default 4.
    pub batch_size: usize,
    /// Seed of prompt order, sampling, LoRA initialisation, data order and label noise.
    /// Default 0.
    pub seed: u64,
    /// Also checkpoint every this many steps (phase ends always checkpoint); 0 = phase ends
    /// only. Default 0.
    pub save_every: usize,
    /// Checkpoints kept. Default 2.
    pub keep_checkpoints: usize,
    /// Per-phase KL estimates and implicit-reward agreement (two extra scoring passes per
    /// phase). Default true.
    pub kl_metrics: bool,
    /// Pairs per scoring batch (reference and metric passes). Default 8.
    pub eval_batch_size: usize,
    /// Write the final merged model to `<out>/model` (LoRA adapters are always written).
    /// Default true.
    pub save_model: bool,
}

impl Default for OnlineRunConfig {
    fn default() -> Self {
        OnlineRunConfig {
            out: PathBuf::from("runs/online"),
            batch_size: 4,
            seed: 0,
            save_every: 0,
            keep_checkpoints: 2,
            kl_metrics: true,
            eval_batch_size: 8,
            save_model: true,
        }
    }
}

/// `bpo online`: online DAP and BPO.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OnlineConfig {
    /// The starting policy (model spec). Default `smollm2-135m`.
    pub model: String,
    /// Device. Default `flex`.
    pub device: String,
    /// Prompts: a JSONL/JSON file of prompt records, or `sentiment:train|dev|test` for the
    /// embedded task. Each prompt is used once. Default `sentiment:train`.
    pub prompts: String,
    /// Keep only the last this many prompt tokens. Default none.
    pub max_prompt_tokens: Option<usize>,
    /// Who labels the samples. Default VADER.
    pub annotator: AnnotatorConfig,
    /// Bradley-Terry label noise: the temperature on the score gap; none = exact labels.
    pub label_noise: Option<f64>,
    /// Annotated comparisons in total (one per prompt; ties and identical pairs still spend
    /// their annotation). Default 256.
    pub budget: usize,
    /// Collection phases F (1 = offline DAP from the initial model). Default 2.
    pub phases: usize,
    /// Sampling.
    pub sampling: OnlineSampling,
    /// The loss.
    pub loss: LossConfig,
    /// The reference: `behavior` (BPO, the default here), `initial` (online DAP), `ema`, `none`.
    pub reference: ReferenceConfig,
    /// LoRA; none = full fine-tuning (K must be 1).
    pub lora: Option<LoraConfig>,
    /// The LoRA ensemble.
    pub ensemble: EnsembleConfig,
    /// AdamW and schedule (over the whole run's steps).
    pub optim: OptimConfig,
    /// Run settings.
    pub run: OnlineRunConfig,
}

impl Default for OnlineConfig {
    fn default() -> Self {
        OnlineConfig {
            model: "smollm2-135m".into(),
            device: "flex".into(),
            prompts: "sentiment:train".into(),
            max_prompt_tokens: None,
            annotator: AnnotatorConfig::Vader,
            label_noise: None,
            budget: 256,
            phases: 2,
            sampling: OnlineSampling::default(),
            loss: LossConfig::default(),
            reference: ReferenceConfig {
                mode: ReferenceMode::Behavior,
                ..ReferenceConfig::default()
            },
            lora: None,
            ensemble: EnsembleConfig::default(),
            optim: OptimConfig::default(),
            run: OnlineRunConfig::default(),
        }
    }
}

impl OnlineConfig {
    /// Rejects impossible settings.
    pub fn validate(&self) -> Result<(), AlgoError> {
        let bad = |m: String| Err(AlgoError::Config(m));
        if self.phases == 0 || self.budget < self.phases {
            return bad(format!(
                "budget ({}) must be at least phases ({}) and phases at least 1",
                self.budget, self.phases
            ));
        }
        if self.sampling.samples_per_prompt < 2 {
            return bad("sampling.samples_per_prompt must be at least 2".into());
        }
        if self.sampling.max_new_tokens == 0 || self.sampling.batch_size == 0 {
            return bad(
                "sampling.max_new_tokens and sampling.batch_size must be at least 1".into(),
            );
        }
        if self.ensemble.size == 0 || (self.ensemble.size > 1 && self.lora.is_none()) {
            return bad("ensemble.size must be 1, or more with [lora]".into());
        }
        if !self.ensemble.init_adapters.is_empty()
            && (self.lora.is_none() || self.ensemble.init_adapters.len() != self.ensemble.size)
        {
            return bad(format!(
                "ensemble.init_adapters needs [lora] and one directory per member ({} given for {})",
                self.ensemble.init_adapters.len(),
                self.ensemble.size
            ));
        }
        if self.run.batch_size == 0 || self.run.eval_batch_size == 0 {
            return bad("run.batch_size and run.eval_batch_size must be at least 1".into());
        }
        if let Some(t) = self.label_noise
            && !(t.is_finite() && t > 0.0)
        {
            return bad(format!("label_noise must be positive, got {t}"));
        }
        self.loss.validate()?;
        self.optim.validate()?;
        if let Some(lora) = &self.lora {
            lora.validate()?;
        }
        Ok(())
    }

    /// Annotated comparisons of each phase (the budget split as evenly as possible).
    pub fn phase_budgets(&self) -> Vec<usize> {
        (0..self.phases)
            .map(|p| self.budget / self.phases + usize::from(p < self.budget % self.phases))
            .collect()
    }
}

/// Reads prompts: `sentiment:<split>` or a JSONL/JSON file of prompt records.
pub fn load_prompts(spec: &str) -> Result<Vec<PromptRecord>, AlgoError> {
    if let Some(split) = spec.strip_prefix("sentiment:") {
        let split = match split {
            "train" => Split::Train,
            "dev" => Split::Dev,
            "test" => Split::Test,
            other => {
                return Err(AlgoError::Config(format!(
                    "prompts `sentiment:{other}`: the splits are train, dev and test"
                )));
            }
        };
        return Ok(sentiment_prompts(split)?);
    }
    let records = read_all::<PromptRecord>(Path::new(spec), ReadOptions::default())?.records;
    if records.is_empty() {
        return Err(AlgoError::Config(format!("{spec}: no prompts")));
    }
    Ok(records)
}

/// The plain text of a prompt an annotator sees (the last message of a conversation).
pub fn prompt_text(prompt: &Content) -> &str {
    match prompt {
        Content::Text(s) => s,
        Content::Chat(m) => m.last().map(|m| m.content.as_str()).unwrap_or_default(),
    }
}

/// What collecting one phase's pairs found.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PhaseCollection {
    /// Prompts sampled (annotations spent).
    pub prompts: usize,
    /// Comparisons dropped because both responses were the same tokens.
    pub dropped_identical: usize,
    /// Comparisons dropped as ties.
    pub dropped_ties: usize,
    /// Mean annotator score of all samples.
    pub mean_score: f64,
    /// Mean response length in tokens.
    pub mean_response_tokens: f64,
    /// Seconds spent sampling and annotating.
    pub seconds: f64,
    /// Samples generated.
    pub samples: usize,
}

/// The token ids and behavior log-probs a sampled pair carries in its meta.
pub fn tokenized_from_meta(pair: &PreferencePair) -> Result<TokenizedPair, AlgoError> {
    let m = &pair.meta;
    match (
        &m.prompt_ids,
        &m.chosen_ids,
        &m.rejected_ids,
        &m.chosen_logps,
        &m.rejected_logps,
    ) {
        (Some(p), Some(c), Some(r), Some(lc), Some(lr)) => Ok(TokenizedPair {
            prompt: p.clone(),
            chosen: c.clone(),
            rejected: r.clone(),
            chosen_logps: Some(lc.clone()),
            rejected_logps: Some(lr.clone()),
            truncated: false,
        }),
        _ => Err(AlgoError::Config(
            "a sampled pair lacks its token ids or behavior log-probs".into(),
        )),
    }
}

/// Samples k responses per prompt with `behavior` (one batched generation call per
/// `sampling.batch_size` prompts), has `annotator` label them and returns the pairs (with
/// their meta: scores, `version`, token ids, behavior log-probs) and what was dropped.
#[allow(clippy::too_many_arguments)]
pub fn collect_pairs(
    behavior: &Transformer,
    tokenizer: &Tokenizer,
    prompts: &[(usize, &PromptRecord, Vec<u32>)],
    sampling: &OnlineSampling,
    annotator: &mut dyn Annotator,
    label_noise: Option<f64>,
    version: u64,
    seed: u64,
) -> Result<(Vec<PreferencePair>, PhaseCollection), AlgoError> {
    let started = Instant::now();
    let k = sampling.samples_per_prompt;
    let config = SamplingConfig {
        temperature: sampling.temperature,
        top_k: sampling.top_k,
        top_p: sampling.top_p,
        max_new_tokens: sampling.max_new_tokens,
        seed,
        ignore_eos: false,
    };
    let ids: Vec<Vec<u32>> = prompts.iter().map(|(_, _, ids)| ids.clone()).collect();
    let generations = generate(
        behavior,
        tokenizer,
        &ids,
        k,
        sampling.batch_size,
        &config,
        |_| {},
    )?;
    // Indices into `generations` (and `scores`) of each prompt's samples.
    let mut groups: Vec<Vec<usize>> = vec![Vec::with_capacity(k); prompts.len()];
    for (i, g) in generations.iter().enumerate() {
        groups[g.prompt_index].push(i);
    }
    let items: Vec<(&str, &str)> = generations
        .iter()
        .map(|g| {
            (
                prompt_text(&prompts[g.prompt_index].1.prompt),
                g.text.as_str(),
            )
        })
        .collect();
    let scores = annotator.score(&items)?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x006e_6f69_7365);
    let mut stats = PhaseCollection {
        prompts: prompts.len(),
        samples: generations.len(),
        mean_score: scores.iter().sum::<f64>() / scores.len().max(1) as f64,
        mean_response_tokens: generations.iter().map(|g| g.token_ids.len()).sum::<usize>() as f64
            / generations.len().max(1) as f64,
        ..PhaseCollection::default()
    };
    let mut pairs = Vec::new();
    for ((index, record, prompt_ids), group) in prompts.iter().zip(&groups) {
        let by_score = |a: &&usize, b: &&usize| scores[**a].total_cmp(&scores[**b]);
        let best = *group.iter().max_by(by_score).expect("k >= 2 samples");
        let worst = *group.iter().min_by(by_score).expect("k >= 2 samples");
        let (i1, i2) = if k == 2 {
            (group[0], group[1])
        } else {
            (best, worst)
        };
        let (first, second) = (&generations[i1], &generations[i2]);
        if first.token_ids == second.token_ids {
            stats.dropped_identical += 1;
            continue;
        }
        let (s1, s2) = (scores[i1], scores[i2]);
        let preference = match label_noise {
            Some(t) => noisy_preference(s1, s2, t, &mut rng),
            None => Preference::from_scores(s1, s2),
        };
        let (chosen, rejected, cs, rs) = match preference {
            Preference::First => (first, second, s1, s2),
            Preference::Second => (second, first, s2, s1),
            Preference::Tie => {
                stats.dropped_ties += 1;
                continue;
            }
        };
        let mut extra = std::collections::BTreeMap::new();
        extra.insert("prompt_index".into(), serde_json::json!(index));
        pairs.push(PreferencePair {
            prompt: record.prompt.clone(),
            chosen: Content::Text(chosen.text.clone()),
            rejected: Content::Text(rejected.text.clone()),
            meta: PairMeta {
                chosen_score: Some(cs),
                rejected_score: Some(rs),
                behavior_version: Some(version),
                prompt_ids: Some(prompt_ids.clone()),
                chosen_ids: Some(chosen.token_ids.clone()),
                rejected_ids: Some(rejected.token_ids.clone()),
                chosen_logps: Some(chosen.logprobs.clone()),
                rejected_logps: Some(rejected.logprobs.clone()),
                extra,
            },
        });
    }
    stats.seconds = started.elapsed().as_secs_f64();
    Ok((pairs, stats))
}

/// Where an online run stands (checkpointed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct OnlineState {
    /// The phase in progress (0-based); `phases` when the run is done.
    phase: usize,
    /// Steps done within that phase.
    phase_step: usize,
    /// Optimizer steps done in total.
    step: usize,
    /// The phase's collection (when its pairs exist).
    collection: Option<PhaseCollection>,
    /// Training tokens and seconds of the phase so far.
    train_tokens: usize,
    train_seconds: f64,
    /// The run's configuration; resuming checks it is unchanged.
    config: serde_json::Value,
}

/// What a finished online run produced.
pub struct OnlineOutcome {
    /// The run directory.
    pub out: PathBuf,
    /// Optimizer steps made.
    pub steps: usize,
    /// One record per phase (see `phases.jsonl`).
    pub phases: Vec<MetricsRecord>,
    /// The final merged policy in Hugging Face layout (when `run.save_model`).
    pub model_dir: PathBuf,
    /// The final merged policy.
    pub model: Transformer,
}

fn pairs_path(out: &Path, phase: usize) -> PathBuf {
    out.join("pairs")
        .join(format!("phase-{:02}.jsonl", phase + 1))
}

/// The sums and lengths of each pair's behavior log-probs.
fn mean_gap(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) as f64).sum::<f64>() / a.len().max(1) as f64
}

/// Fraction of pairs whose implicit reward `log p(y) - log q(y)` ranks chosen above rejected
/// (ties count half).
fn agreement(p: &ReferenceLogps, q: &ReferenceLogps) -> f64 {
    let n = p.chosen.len();
    let mut total = 0.0;
    for i in 0..n {
        let margin = (p.chosen[i] - q.chosen[i]) - (p.rejected[i] - q.rejected[i]);
        total += if margin > 0.0 {
            1.0
        } else if margin == 0.0 {
            0.5
        } else {
            0.0
        };
    }
    total / n.max(1) as f64
}

/// Runs online DAP / BPO as configured; `resume` continues from a checkpoint or run directory.
pub fn train_online(
    config: &OnlineConfig,
    resume: Option<&Path>,
    observer: &mut dyn Observer,
) -> Result<OnlineOutcome, AlgoError> {
    config.validate()?;
    let config_json = serde_json::to_value(config).expect("json");
    let out = config.run.out.clone();
    std::fs::create_dir_all(out.join("pairs")).map_err(|e| AlgoError::io(&out, e))?;
    let device = parse_device(&config.device)?.autodiff();
    observer.message(&format!("loading {}", config.model));
    let (base, tokenizer) = load(&config.model, &device)?;
    let pad_id = tokenizer.pad_id();
    let mut annotator = config.annotator.build()?;
    observer.message(&format!("annotator: {}", annotator.name()));

    // Prompts: a seeded order, the first `budget` of it, split into phases.
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
    let budgets = config.phase_budgets();
    let batch = config.run.batch_size;
    let total_steps: usize = budgets.iter().map(|n| n.div_ceil(batch)).sum();

    // The ensemble.
    let mut members = Vec::with_capacity(config.ensemble.size);
    for i in 0..config.ensemble.size {
        let model = match &config.lora {
            Some(lora) => apply_lora(base.clone(), lora, config.run.seed + i as u64)?,
            None => base.clone(),
        };
        let model = match config.ensemble.init_adapters.get(i) {
            Some(dir) => load_adapters(model, dir)?,
            None => model,
        };
        members.push(Member {
            model,
            optimizer: adamw(&config.optim),
        });
    }
    let mut ensemble = Ensemble {
        members,
        rule: config.ensemble.merge,
    };
    drop(base);
    let initial = ensemble.merged();
    let mut ema = (config.reference.mode == ReferenceMode::Ema).then(|| initial.clone());

    let metrics_path = out.join("metrics.jsonl");
    let phases_path = out.join("phases.jsonl");
    let mut state = OnlineState {
        phase: 0,
        phase_step: 0,
        step: 0,
        collection: None,
        train_tokens: 0,
        train_seconds: 0.0,
        config: config_json.clone(),
    };
    let (mut metrics, mut phase_log) = match resume {
        Some(path) => {
            let dir = checkpoint::resolve(path)?;
            let saved: OnlineState = checkpoint::load_state(&dir)?;
            if saved.config != config_json {
                return Err(AlgoError::Checkpoint {
                    path: dir,
                    message: "the configuration differs from the one the run started with".into(),
                });
            }
            for (i, member) in ensemble.members.iter_mut().enumerate() {
                member.model =
                    checkpoint::load_model(&dir, member.model.clone(), &format!("member-{i}.bpk"))?;
                member.optimizer = checkpoint::load_optimizer(
                    &dir,
                    adamw(&config.optim),
                    &format!("optimizer-{i}.bpk"),
                )?;
            }
            if let Some(ema) = &mut ema {
                *ema = checkpoint::load_model(&dir, ema.clone(), "ema.bpk")?;
            }
            observer.message(&format!(
                "resuming from {} (phase {}, step {})",
                dir.display(),
                saved.phase + 1,
                saved.step
            ));
            state = saved;
            (
                MetricsLog::resume(&metrics_path, state.step)?,
                MetricsLog::resume(&phases_path, state.phase)?,
            )
        }
        None => {
            let text = serde_json::to_string_pretty(&config_json).expect("json");
            write_atomic(&out.join("config.json"), text.as_bytes())?;
            (
                MetricsLog::create(&metrics_path)?,
                MetricsLog::create(&phases_path)?,
            )
        }
    };

    let save = |state: &OnlineState, ensemble: &Ensemble, ema: Option<&Transformer>| {
        let names: Vec<(String, String)> = (0..ensemble.members.len())
            .map(|i| (format!("member-{i}.bpk"), format!("optimizer-{i}.bpk")))
            .collect();
        let mut models: Vec<(&str, &Transformer)> = names
            .iter()
            .zip(&ensemble.members)
            .map(|((m, _), member)| (m.as_str(), &member.model))
            .collect();
        models.extend(ema.map(|e| ("ema.bpk", e)));
        let optimizers: Vec<(&str, &_)> = names
            .iter()
            .zip(&ensemble.members)
            .map(|((_, o), member)| (o.as_str(), &member.optimizer))
            .collect();
        checkpoint::save(
            &out,
            state.step,
            state,
            &models,
            &optimizers,
            config.run.keep_checkpoints,
        )
    };

    let mut offset: usize = budgets[..state.phase.min(budgets.len())].iter().sum();
    while state.phase < config.phases {
        let phase = state.phase;
        let phase_seed = config.run.seed.wrapping_add(1 + phase as u64);
        // Collect (or, resuming mid-phase, read back) this phase's pairs.
        let pair_file = pairs_path(&out, phase);
        let pairs: Vec<PreferencePair> = match &state.collection {
            Some(_) => read_all::<PreferencePair>(&pair_file, ReadOptions::default())?.records,
            None => {
                let behavior = ensemble.merged();
                let mut chosen_prompts = Vec::with_capacity(budgets[phase]);
                for &i in &order[offset..offset + budgets[phase]] {
                    let (ids, _) = tokenize_prompt(&records[i], &tokenizer, &truncation)?;
                    chosen_prompts.push((i, &records[i], ids));
                }
                observer.message(&format!(
                    "phase {}/{}: sampling {} x {} responses",
                    phase + 1,
                    config.phases,
                    chosen_prompts.len(),
                    config.sampling.samples_per_prompt
                ));
                let (pairs, collection) = collect_pairs(
                    &behavior,
                    &tokenizer,
                    &chosen_prompts,
                    &config.sampling,
                    annotator.as_mut(),
                    config.label_noise,
                    phase as u64,
                    phase_seed,
                )?;
                write_all(&pair_file, &pairs)?;
                state.collection = Some(collection);
                pairs
            }
        };
        let collection = state.collection.clone().expect("collected");
        let tokenized = pairs
            .iter()
            .map(tokenized_from_meta)
            .collect::<Result<Vec<_>, _>>()?;
        let behavior_logps = behavior_reference(&tokenized)?;
        let needs_initial =
            config.reference.mode == ReferenceMode::Initial || config.run.kl_metrics;
        let scoring_started = Instant::now();
        let initial_logps = if needs_initial && !tokenized.is_empty() {
            Some(compute_reference(
                &initial,
                &tokenized,
                config.run.eval_batch_size,
                pad_id,
                |_| {},
            )?)
        } else {
            None
        };
        // The initial model's pass is part of the step cost with the `initial` reference, and
        // only a metric otherwise.
        let initial_seconds = scoring_started.elapsed().as_secs_f64();
        let (reference_seconds, mut metric_seconds) =
            if config.reference.mode == ReferenceMode::Initial {
                (initial_seconds, 0.0)
            } else {
                (0.0, initial_seconds)
            };
        let reference = match config.reference.mode {
            ReferenceMode::Behavior => Reference::Fixed(behavior_logps.clone()),
            ReferenceMode::Initial => Reference::Fixed(
                initial_logps
                    .clone()
                    .unwrap_or_else(|| behavior_logps.clone()),
            ),
            ReferenceMode::Ema => Reference::Ema {
                model: Box::new(ema.clone().expect("ema model")),
                alpha: config.reference.ema_alpha,
            },
            ReferenceMode::None => Reference::Free,
        };
        let mut objective = Dap {
            pairs: tokenized,
            reference,
            dev: None,
            loss: config.loss.clone(),
            pad_id,
            eval_batch_size: config.run.eval_batch_size,
        };
        let lengths: Vec<usize> = objective
            .pairs
            .iter()
            .map(|p| p.prompt.len() + p.chosen.len().max(p.rejected.len()))
            .collect();
        let batches = bucketed_batches(&lengths, batch, 16, phase_seed);
        for indices in batches.iter().skip(state.phase_step) {
            let started = Instant::now();
            let lr = config.optim.lr_at(state.step, total_steps);
            let mut parts = Vec::with_capacity(ensemble.members.len());
            let mut tokens = 0;
            for member in &mut ensemble.members {
                let (model, record, n) = optimizer_step(
                    &mut objective,
                    member.model.clone(),
                    &mut member.optimizer,
                    std::slice::from_ref(indices),
                    config.optim.max_grad_norm,
                    lr,
                    state.step + 1,
                )?;
                member.model = model;
                parts.push(record);
                tokens += n;
            }
            if let Reference::Ema { model, alpha } = &mut objective.reference {
                **model = blend_into((**model).clone(), &ensemble.merged(), *alpha);
                ema = Some((**model).clone());
            }
            let seconds = started.elapsed().as_secs_f64();
            state.step += 1;
            state.phase_step += 1;
            state.train_tokens += tokens;
            state.train_seconds += seconds;
            let mut record = MetricsRecord::new();
            for part in &parts {
                for (k, v) in part {
                    *record.entry(k.clone()).or_default() += v / parts.len() as f64;
                }
            }
            record.insert("step".into(), state.step as f64);
            record.insert("phase".into(), (phase + 1) as f64);
            record.insert("tokens_per_s".into(), tokens as f64 / seconds.max(1e-9));
            metrics.append(record.clone())?;
            observer.step(state.step, total_steps, &record);
            if config.run.save_every > 0 && state.step.is_multiple_of(config.run.save_every) {
                save(&state, &ensemble, ema.as_ref())?;
            }
        }

        // Phase metrics.
        let mut record = MetricsRecord::from([
            ("step".into(), (phase + 1) as f64),
            ("phase".into(), (phase + 1) as f64),
            ("prompts".into(), collection.prompts as f64),
            ("pairs".into(), objective.pairs.len() as f64),
            (
                "dropped_identical".into(),
                collection.dropped_identical as f64,
            ),
            ("dropped_ties".into(), collection.dropped_ties as f64),
            ("mean_score".into(), collection.mean_score),
            (
                "mean_response_tokens".into(),
                collection.mean_response_tokens,
            ),
            (
                "samples_per_s".into(),
                collection.samples as f64 / collection.seconds.max(1e-9),
            ),
            (
                "train_tokens_per_s".into(),
                state.train_tokens as f64 / state.train_seconds.max(1e-9),
            ),
            ("train_seconds".into(), state.train_seconds),
            ("sample_seconds".into(), collection.seconds),
            ("reference_seconds".into(), reference_seconds),
            (
                "phase_seconds".into(),
                collection.seconds + reference_seconds + state.train_seconds,
            ),
        ]);
        if config.run.kl_metrics
            && let Some(initial_logps) = &initial_logps
        {
            let metrics_started = Instant::now();
            let after = compute_reference(
                &ensemble.merged(),
                &objective.pairs,
                config.run.eval_batch_size,
                pad_id,
                |_| {},
            )?;
            let b = &behavior_logps;
            let kl = |p: &ReferenceLogps, q: &ReferenceLogps| {
                (mean_gap(&p.chosen, &q.chosen) + mean_gap(&p.rejected, &q.rejected)) / 2.0
            };
            record.insert("kl/behavior_initial".into(), kl(b, initial_logps));
            record.insert("kl/behavior_policy".into(), kl(b, &after));
            record.insert("agreement/before".into(), agreement(b, initial_logps));
            record.insert("agreement/after".into(), agreement(&after, b));
            metric_seconds += metrics_started.elapsed().as_secs_f64();
        }
        record.insert("metric_seconds".into(), metric_seconds);
        observer.message(&format!(
            "phase {}/{}: {} pairs ({} identical, {} ties dropped), mean score {:.3}",
            phase + 1,
            config.phases,
            objective.pairs.len(),
            collection.dropped_identical,
            collection.dropped_ties,
            collection.mean_score
        ));
        phase_log.append(record)?;
        let spent: usize = budgets[..=phase].iter().sum();
        observer.phase_end(phase + 1, spent, &ensemble.merged())?;
        offset += budgets[phase];
        state.phase += 1;
        state.phase_step = 0;
        state.collection = None;
        state.train_tokens = 0;
        state.train_seconds = 0.0;
        save(&state, &ensemble, ema.as_ref())?;
    }

    let final_model = ensemble.merged();
    let model_dir = out.join("model");
    if config.run.save_model {
        save_hf(&model_dir, &final_model, &tokenizer)?;
        observer.message(&format!("model written to {}", model_dir.display()));
    }
    if let Some(lora) = &config.lora {
        for (i, member) in ensemble.members.iter().enumerate() {
            save_adapters(
                &member.model,
                lora,
                &config.model,
                &out.join("adapters").join(format!("member-{i}")),
            )?;
        }
    }
    plot_training(metrics.records(), &out, TRAINING_PLOTS)?;
    Ok(OnlineOutcome {
        out,
        steps: state.step,
        phases: phase_log.records().to_vec(),
        model_dir,
        model: final_model,
    })
}
