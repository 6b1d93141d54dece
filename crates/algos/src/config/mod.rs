//! Training configuration: TOML files read with serde, every field documented with its default,
//! `--set key=value` overrides. One struct per command; shared sections are composed.

mod lora;
mod optim;
mod overrides;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use bpo_model::device::Precision;

use crate::error::AlgoError;
use crate::loss::LossConfig;
pub use lora::LoraConfig;
pub use optim::{OptimConfig, ScheduleKind};
pub use overrides::{apply_overrides, load_config, parse_config};

/// Training data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Training data: a JSONL, JSON-array or Parquet file, a directory of Parquet shards
    /// (`DIR:SPLIT` when it holds several splits), or a Hub dataset split
    /// `hf:ORG/NAME[/CONFIG][:SPLIT][@REVISION]`. Required.
    pub train: PathBuf,
    /// Dev file evaluated every `run.eval_every` steps. Default: none.
    #[serde(default)]
    pub dev: Option<PathBuf>,
    /// Most prompt tokens (keeps the end). Default: no limit.
    #[serde(default)]
    pub max_prompt_tokens: Option<usize>,
    /// Most tokens per response (keeps the start). Default: no limit.
    #[serde(default)]
    pub max_response_tokens: Option<usize>,
    /// Most prompt + response tokens. Default: no limit.
    #[serde(default)]
    pub max_length: Option<usize>,
    /// Skip malformed records instead of failing. Default false.
    #[serde(default)]
    pub skip_invalid: bool,
}

impl DataConfig {
    /// The files of this data with their config fields (what a run fingerprints).
    pub fn files(&self) -> Vec<(&'static str, &std::path::Path)> {
        let mut files = vec![("data.train", self.train.as_path())];
        files.extend(self.dev.as_deref().map(|dev| ("data.dev", dev)));
        files
    }

    /// The truncation policy of this data.
    pub fn truncation(&self) -> bpo_data::Truncation {
        bpo_data::Truncation {
            max_prompt_tokens: self.max_prompt_tokens,
            max_response_tokens: self.max_response_tokens,
            max_length: self.max_length,
        }
    }
}

/// The training loop: batches, length, evaluation, checkpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    /// Output directory (metrics, checkpoints, plots, final model). Default `runs/train`.
    pub out: PathBuf,
    /// Examples (pairs for `train`) per micro-batch. Default 4.
    pub batch_size: usize,
    /// Micro-batches per optimizer step. Default 1.
    pub grad_accum: usize,
    /// Passes over the training data. Default 1.
    pub epochs: usize,
    /// Stop after this many optimizer steps. Default: the end of the last epoch.
    pub max_steps: Option<usize>,
    /// Evaluate on `data.dev` every this many steps (and at the end); 0 = only at the end.
    /// Default 0.
    pub eval_every: usize,
    /// Examples per evaluation batch. Default 8.
    pub eval_batch_size: usize,
    /// Write a checkpoint every this many steps; 0 = only at the end. Default 0.
    pub save_every: usize,
    /// Checkpoints kept (oldest removed first). Default 2.
    pub keep_checkpoints: usize,
    /// Seed of data order and LoRA initialisation. Default 0.
    pub seed: u64,
    /// Length buckets: sort by length within pools of this many batches. Default 16; 1 = off.
    pub bucket_pool: usize,
    /// Run each block again in the backward pass instead of keeping its activations (TRL's
    /// `gradient_checkpointing`): less memory for long sequences, one more forward pass of
    /// the policy per step, the same gradients. CPU (flex) only: elsewhere it changes nothing.
    /// Default false.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub gradient_checkpointing: bool,
    /// With LoRA, the products with the frozen weights (the adapted layers' base, the reference
    /// model) in bf16, summed in f32, on CPUs with AVX512-BF16 (Intel Cooper Lake and Sapphire
    /// Rapids on, AMD Zen 4 on): 1.2-1.6x faster steps, log-probs a fraction of a nat away from
    /// f32's, and the packed weights in memory (half the f32 base twice: `W` and `Wᵀ`); README,
    /// Performance. Sampling stays f32. Refused without `[lora]` and on CPUs without the
    /// instructions; on other devices than the CPU (flex) it changes nothing. Default false.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub bf16_products: bool,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            out: PathBuf::from("runs/train"),
            batch_size: 4,
            grad_accum: 1,
            epochs: 1,
            max_steps: None,
            eval_every: 0,
            eval_batch_size: 8,
            save_every: 0,
            keep_checkpoints: 2,
            seed: 0,
            bucket_pool: 16,
            gradient_checkpointing: false,
            bf16_products: false,
        }
    }
}

impl RunConfig {
    /// Rejects impossible settings (`bf16_products` is checked by the config that holds the
    /// `[lora]` table too: [`check_bf16_products`]).
    pub fn validate(&self) -> Result<(), AlgoError> {
        if self.batch_size == 0
            || self.grad_accum == 0
            || self.epochs == 0
            || self.eval_batch_size == 0
        {
            return Err(AlgoError::Config(
                "run.batch_size, run.grad_accum, run.epochs and run.eval_batch_size must be at least 1".into(),
            ));
        }
        if self.max_steps == Some(0) {
            return Err(AlgoError::Config("run.max_steps must be at least 1".into()));
        }
        Ok(())
    }
}

/// Rejects `run.bf16_products = true` without LoRA (every weight would train in f32, and only
/// the reference would be in bf16: a policy and a reference apart from the first step) or on
/// a CPU without AVX512-BF16.
pub fn check_bf16_products(asked: bool, lora: bool) -> Result<(), AlgoError> {
    if !asked {
        return Ok(());
    }
    if !lora {
        return Err(AlgoError::Config(
            "run.bf16_products is for the frozen base of LoRA: it needs a [lora] table".into(),
        ));
    }
    if !bpo_model::flex::bf16_supported() {
        return Err(AlgoError::Config(
            "run.bf16_products needs a CPU with AVX512-BF16 (Intel Cooper Lake or Sapphire Rapids and later, AMD Zen 4 and later); this one has none: leave it off".into(),
        ));
    }
    Ok(())
}

/// Which reference policy a DAP loss compares against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReferenceMode {
    /// A frozen copy of the starting model (offline and online DAP).
    Initial,
    /// The model that sampled each pair, from the log-probs it carries (BPO).
    Behavior,
    /// An exponential moving average of the policy.
    Ema,
    /// No reference (log-probs of zero).
    None,
}

impl ReferenceMode {
    /// Every mode, in the order the help lists them.
    pub const ALL: [ReferenceMode; 4] = [
        ReferenceMode::Behavior,
        ReferenceMode::Initial,
        ReferenceMode::Ema,
        ReferenceMode::None,
    ];
}

/// The reference policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReferenceConfig {
    /// `initial`, `behavior`, `ema` or `none`. Default `initial`.
    pub mode: ReferenceMode,
    /// EMA weight of the old reference per step: `ref = a ref + (1 - a) policy`. Default 0.99.
    pub ema_alpha: f64,
    /// Where precomputed `initial` reference log-probs are cached, keyed by model and data
    /// hashes. Default: `<run.out>/../.reference-cache`.
    pub cache_dir: Option<PathBuf>,
}

impl Default for ReferenceConfig {
    fn default() -> Self {
        ReferenceConfig {
            mode: ReferenceMode::Initial,
            ema_alpha: 0.99,
            cache_dir: None,
        }
    }
}

/// `bpo train`: offline DAP on a pair file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Model spec: GGUF file, Hugging Face directory or alias. Required.
    pub model: String,
    /// Compute device (`auto`, `flex`, `wgpu`, `cuda`, ...). Default `auto`.
    #[serde(default = "bpo_model::device::default_spec")]
    pub device: String,
    /// Float precision: `f32` (default), `f16` or `bf16` (where the device supports it).
    #[serde(default)]
    pub dtype: Precision,
    /// LoRA adapters; absent means full fine-tuning.
    #[serde(default)]
    pub lora: Option<LoraConfig>,
    /// Pair files and truncation.
    pub data: DataConfig,
    /// The loss.
    #[serde(default)]
    pub loss: LossConfig,
    /// The reference policy.
    #[serde(default)]
    pub reference: ReferenceConfig,
    /// Optimizer and schedule.
    #[serde(default)]
    pub optim: OptimConfig,
    /// Loop settings.
    #[serde(default)]
    pub run: RunConfig,
}

/// `bpo sft`: completion-only supervised fine-tuning on prompts with a `reference` response (or
/// the chosen responses of a pair file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SftConfig {
    /// Model spec. Required.
    pub model: String,
    /// Compute device (`auto`, `flex`, `wgpu`, `cuda`, ...). Default `auto`.
    #[serde(default = "bpo_model::device::default_spec")]
    pub device: String,
    /// Float precision: `f32` (default), `f16` or `bf16` (where the device supports it).
    #[serde(default)]
    pub dtype: Precision,
    /// LoRA adapters; absent means full fine-tuning.
    #[serde(default)]
    pub lora: Option<LoraConfig>,
    /// Data files and truncation.
    pub data: DataConfig,
    /// Optimizer and schedule.
    #[serde(default)]
    pub optim: OptimConfig,
    /// Loop settings.
    #[serde(default)]
    pub run: RunConfig,
}

impl TrainConfig {
    /// Rejects impossible settings before any work is done.
    pub fn validate(&self) -> Result<(), AlgoError> {
        self.loss.validate()?;
        self.optim.validate()?;
        self.run.validate()?;
        check_bf16_products(self.run.bf16_products, self.lora.is_some())?;
        self.lora.as_ref().map_or(Ok(()), LoraConfig::validate)?;
        if !(0.0..=1.0).contains(&self.reference.ema_alpha) {
            return Err(AlgoError::Config(format!(
                "reference.ema_alpha must be in [0, 1], got {}",
                self.reference.ema_alpha
            )));
        }
        Ok(())
    }
}

impl SftConfig {
    /// Rejects impossible settings before any work is done.
    pub fn validate(&self) -> Result<(), AlgoError> {
        self.optim.validate()?;
        self.run.validate()?;
        check_bf16_products(self.run.bf16_products, self.lora.is_some())?;
        self.lora.as_ref().map_or(Ok(()), LoraConfig::validate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "model = \"m.gguf\"\n[data]\ntrain = \"pairs.jsonl\"\n";

    #[test]
    fn every_reference_mode_is_in_all() {
        // A new mode fails to compile here until it has a place in `ALL`.
        let place = |mode| match mode {
            ReferenceMode::Behavior => 0,
            ReferenceMode::Initial => 1,
            ReferenceMode::Ema => 2,
            ReferenceMode::None => 3,
        };
        for (i, mode) in ReferenceMode::ALL.into_iter().enumerate() {
            assert_eq!(place(mode), i);
        }
    }

    #[test]
    fn defaults_fill_missing_sections() {
        let c: TrainConfig = parse_config(MINIMAL, "c.toml", &[]).unwrap();
        assert_eq!(c.optim, OptimConfig::default());
        assert_eq!(c.loss.beta, 0.1);
        assert_eq!(c.reference.mode, ReferenceMode::Initial);
        assert!(c.lora.is_none());
        assert_eq!(c.device, "auto");
    }

    #[test]
    fn overrides_set_nested_keys_with_typed_values() {
        let sets = [
            "optim.lr=1e-4",
            "loss.kind=ipo",
            "lora.rank=8",
            "run.out=runs/x",
            "reference.mode=none",
        ]
        .map(String::from);
        let c: TrainConfig = parse_config(MINIMAL, "c.toml", &sets).unwrap();
        assert_eq!(c.optim.lr, 1e-4);
        assert_eq!(c.loss.kind, crate::loss::LossKind::Ipo);
        assert_eq!(c.lora.unwrap().rank, 8);
        assert_eq!(c.run.out, PathBuf::from("runs/x"));
        assert_eq!(c.reference.mode, ReferenceMode::None);
    }

    #[test]
    fn unknown_and_mistyped_fields_are_named() {
        let err = parse_config::<TrainConfig>(
            &format!("{MINIMAL}[optim]\nlearning_rate = 1.0\n"),
            "c.toml",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("c.toml") && err.contains("learning_rate"),
            "{err}"
        );
        let err =
            parse_config::<TrainConfig>(MINIMAL, "c.toml", &["run.batch_size=\"four\"".into()])
                .unwrap_err()
                .to_string();
        assert!(err.contains("batch_size"), "{err}");
        let err = parse_config::<TrainConfig>("[data]\ntrain = \"x\"\n", "c.toml", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("model"), "{err}");
    }
}
