//! `bpo online` configuration: sampling, the ensemble, run settings, and the whole run.

use std::path::PathBuf;

use bpo_model::device::{Precision, default_spec};
use serde::{Deserialize, Serialize};

use crate::annotate::{AnnotatorConfig, JudgeMode};
use crate::config::{LoraConfig, OptimConfig, ReferenceConfig, ReferenceMode};
use crate::error::AlgoError;
use crate::loss::LossConfig;
use crate::trainer::MergeRule;

/// SplitMix64's output function: a bijective mix of 64 bits.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

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
    /// Sequences per generation call (a prompt's k samples are k of them, sharing one prompt
    /// pass). Default 16.
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
    /// Run each block again in the backward pass instead of keeping its activations (as
    /// `run.gradient_checkpointing` of `bpo train`). Default false.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub gradient_checkpointing: bool,
    /// Products with frozen weights in bf16 (as `run.bf16_products` of `bpo train`): the
    /// policy's LoRA base and the initial reference; sampling, and so the behavior log-probs,
    /// stay f32, and so do the drift metrics' passes (`kl_metrics`). Default false.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub bf16_products: bool,
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
            gradient_checkpointing: false,
            bf16_products: false,
        }
    }
}

/// `bpo online`: online DAP and BPO.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OnlineConfig {
    /// The starting policy (model spec). Default `smollm2-135m`.
    pub model: String,
    /// Compute device (`auto`, `flex`, `wgpu`, `cuda`, ...). Default `auto`.
    pub device: String,
    /// Float precision: `f32` (default), `f16` or `bf16` (where the device supports it).
    pub dtype: Precision,
    /// Prompts: prompt records (a JSONL, JSON or Parquet file, a directory of Parquet shards,
    /// `DIR:SPLIT` when it holds several splits, a Hub dataset split
    /// `hf:ORG/NAME[/CONFIG][:SPLIT][@REVISION]`), or `sentiment:train|dev|test` for the
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
            device: default_spec(),
            dtype: Precision::F32,
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
        let pairwise = |a: &AnnotatorConfig| matches!(a, AnnotatorConfig::OpenaiJudge(j) if j.mode == JudgeMode::Pairwise);
        if pairwise(&self.annotator) && self.sampling.samples_per_prompt != 2 {
            return bad(
                "a pairwise judge compares two samples: sampling.samples_per_prompt must be 2"
                    .into(),
            );
        }
        if let AnnotatorConfig::Weighted { parts } = &self.annotator
            && parts.iter().any(|p| pairwise(&p.annotator))
        {
            return bad("a pairwise judge gives no scores to weigh: it labels alone".into());
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
        crate::config::check_bf16_products(self.run.bf16_products, self.lora.is_some())?;
        self.loss.validate()?;
        self.optim.validate()?;
        if let Some(lora) = &self.lora {
            lora.validate()?;
        }
        Ok(())
    }

    /// The seed of phase `phase`'s sampling, label noise and data order: a hash of
    /// (`run.seed`, `phase`), so that no two (seed, phase) pairs share a random stream (adding
    /// them would give seed s, phase 1 the stream of seed s + 1, phase 0).
    pub fn phase_seed(&self, phase: usize) -> u64 {
        splitmix64(splitmix64(self.run.seed) ^ (phase as u64 + 1))
    }

    /// Annotated comparisons of each phase (the budget split as evenly as possible).
    pub fn phase_budgets(&self) -> Vec<usize> {
        (0..self.phases)
            .map(|p| self.budget / self.phases + usize::from(p < self.budget % self.phases))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_seed_and_phase_has_its_own_stream() {
        let with_seed = |seed: u64| {
            let mut c = OnlineConfig::default();
            c.run.seed = seed;
            c
        };
        let mut seen = std::collections::HashSet::new();
        for seed in 0..20 {
            for phase in 0..8 {
                assert!(
                    seen.insert(with_seed(seed).phase_seed(phase)),
                    "{seed} {phase}"
                );
            }
        }
        // The old `seed + 1 + phase` gave these two the same stream.
        assert_ne!(with_seed(0).phase_seed(1), with_seed(1).phase_seed(0));
    }
}
