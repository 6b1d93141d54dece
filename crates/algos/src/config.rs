//! Training configuration: TOML files read with serde, every field documented with its default,
//! `--set key=value` overrides. One struct per command; shared sections are composed.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::AlgoError;
use crate::loss::LossConfig;

/// LoRA adapters (absent: full fine-tuning).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoraConfig {
    /// Rank of each adapter. Default 16.
    pub rank: usize,
    /// Scale numerator: the update is `alpha / rank * A B`. Default 32.
    pub alpha: f64,
    /// Dropout on the adapter input. Default 0 (the only value Burn's weight-space LoRA supports).
    pub dropout: f64,
    /// Modules to adapt, by name: any of `q k v o gate up down` (Llama) / `q k v o up down`
    /// (GPT-2, where `up` is `c_fc`), or regexes on parameter paths when they contain a `\` or
    /// `.`. Default: all linear layers of the blocks.
    pub targets: Vec<String>,
    /// Adapt only these blocks (0-based), e.g. the last few: frozen blocks below the lowest
    /// adapted one need no backward pass. Default: all blocks.
    pub layers: Option<Vec<usize>>,
}

impl Default for LoraConfig {
    fn default() -> Self {
        LoraConfig {
            rank: 16,
            alpha: 32.0,
            dropout: 0.0,
            targets: ["q", "k", "v", "o", "gate", "up", "down"]
                .map(String::from)
                .to_vec(),
            layers: None,
        }
    }
}

impl LoraConfig {
    /// Rejects settings Burn's LoRA cannot honour.
    pub fn validate(&self) -> Result<(), AlgoError> {
        if self.rank == 0 {
            return Err(AlgoError::Config("lora.rank must be at least 1".into()));
        }
        if self.dropout != 0.0 {
            return Err(AlgoError::Config(
                "lora.dropout must be 0: Burn's apply_lora adapts the weight (W + s A B), so there is no adapter input to drop".into(),
            ));
        }
        if self.targets.is_empty() {
            return Err(AlgoError::Config("lora.targets is empty".into()));
        }
        if self.layers.as_ref().is_some_and(Vec::is_empty) {
            return Err(AlgoError::Config("lora.layers is empty".into()));
        }
        Ok(())
    }

    /// Regexes over parameter paths that select the adapted weights.
    pub fn patterns(&self) -> Vec<String> {
        let blocks = match &self.layers {
            Some(layers) => format!(
                "({})",
                layers
                    .iter()
                    .map(usize::to_string)
                    .collect::<Vec<_>>()
                    .join("|")
            ),
            None => "\\d+".to_owned(),
        };
        self.targets
            .iter()
            .map(|t| {
                if t.contains('\\') || t.contains('.') {
                    t.clone()
                } else {
                    let field = match t.as_str() {
                        "q" | "k" | "v" | "o" => format!("attn\\.{t}"),
                        other => format!("mlp\\.{other}"),
                    };
                    format!("^layers\\.{blocks}\\.{field}\\.weight$")
                }
            })
            .collect()
    }
}

/// Training data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Training file (JSONL or JSON array). Required.
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
    /// The truncation policy of this data.
    pub fn truncation(&self) -> bpo_data::Truncation {
        bpo_data::Truncation {
            max_prompt_tokens: self.max_prompt_tokens,
            max_response_tokens: self.max_response_tokens,
            max_length: self.max_length,
        }
    }
}

/// Shape of the learning-rate schedule after warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    /// Linear decay to 0 at the last step (the paper's).
    Linear,
    /// Cosine decay to 0 at the last step.
    Cosine,
    /// Constant after warm-up.
    Constant,
}

/// AdamW and the learning-rate schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimConfig {
    /// Peak learning rate. Default 5e-5 (the paper's).
    pub lr: f64,
    /// AdamW epsilon. Default 1e-6 (the paper's; Burn's own default is 1e-5).
    pub eps: f64,
    /// Decoupled weight decay. Default 0 (Burn's own default is 1e-4).
    pub weight_decay: f64,
    /// AdamW beta1. Default 0.9.
    pub beta1: f64,
    /// AdamW beta2. Default 0.999.
    pub beta2: f64,
    /// Global gradient-norm clip, PyTorch semantics; 0 disables. Default 1.0.
    pub max_grad_norm: f64,
    /// Linear warm-up steps. Default 0.
    pub warmup_steps: usize,
    /// `linear`, `cosine` or `constant`. Default `linear`.
    pub schedule: ScheduleKind,
}

impl Default for OptimConfig {
    fn default() -> Self {
        OptimConfig {
            lr: 5e-5,
            eps: 1e-6,
            weight_decay: 0.0,
            beta1: 0.9,
            beta2: 0.999,
            max_grad_norm: 1.0,
            warmup_steps: 0,
            schedule: ScheduleKind::Linear,
        }
    }
}

impl OptimConfig {
    /// Rejects impossible settings.
    pub fn validate(&self) -> Result<(), AlgoError> {
        let bad = |m: String| Err(AlgoError::Config(m));
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad(format!("optim.lr must be > 0, got {}", self.lr));
        }
        if self.eps.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
            return bad("optim.eps must be > 0".into());
        }
        if !(0.0..1.0).contains(&self.beta1) || !(0.0..1.0).contains(&self.beta2) {
            return bad("optim.beta1 and optim.beta2 must be in [0, 1)".into());
        }
        if self.weight_decay < 0.0 || self.max_grad_norm < 0.0 {
            return bad("optim.weight_decay and optim.max_grad_norm must be >= 0".into());
        }
        Ok(())
    }

    /// The learning rate of optimizer step `step` (0-based) out of `total`, as Hugging Face's
    /// `get_{linear,cosine}_schedule_with_warmup` compute it.
    pub fn lr_at(&self, step: usize, total: usize) -> f64 {
        let (step, warmup) = (step as f64, self.warmup_steps as f64);
        if step < warmup {
            return self.lr * step / warmup.max(1.0);
        }
        let progress = (step - warmup) / (total as f64 - warmup).max(1.0);
        let factor = match self.schedule {
            ScheduleKind::Constant => 1.0,
            ScheduleKind::Linear => (1.0 - progress).max(0.0),
            ScheduleKind::Cosine => 0.5 * (1.0 + (std::f64::consts::PI * progress.min(1.0)).cos()),
        };
        self.lr * factor
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
        }
    }
}

impl RunConfig {
    /// Rejects impossible settings.
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
    /// Compute device. Default `flex`.
    #[serde(default = "default_device")]
    pub device: String,
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
    /// Compute device. Default `flex`.
    #[serde(default = "default_device")]
    pub device: String,
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

fn default_device() -> String {
    "flex".into()
}

/// Applies `key=value` overrides (dotted keys, TOML values; bare words are strings).
pub fn apply_overrides(doc: &mut toml::Table, sets: &[String]) -> Result<(), AlgoError> {
    for set in sets {
        let (key, raw) = set
            .split_once('=')
            .ok_or_else(|| AlgoError::Config(format!("--set `{set}`: expected key=value")))?;
        let value: toml::Value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(raw.to_owned()));
        let mut parts: Vec<&str> = key.trim().split('.').collect();
        let last = parts
            .pop()
            .filter(|k| !k.is_empty())
            .ok_or_else(|| AlgoError::Config(format!("--set `{set}`: empty key")))?;
        let mut table = &mut *doc;
        for part in parts {
            let entry = table
                .entry(part.to_owned())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            table = entry.as_table_mut().ok_or_else(|| {
                AlgoError::Config(format!("--set `{set}`: `{part}` is not a table"))
            })?;
        }
        table.insert(last.to_owned(), value);
    }
    Ok(())
}

/// Reads a TOML config with overrides; errors name the file and the offending key.
pub fn load_config<T: DeserializeOwned>(path: &Path, sets: &[String]) -> Result<T, AlgoError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| AlgoError::Config(format!("{}: {e}", path.display())))?;
    parse_config(&text, &path.display().to_string(), sets)
}

/// Parses TOML text (named `name` in errors) with overrides. Without overrides the errors carry
/// the line and column of the offending key.
pub fn parse_config<T: DeserializeOwned>(
    text: &str,
    name: &str,
    sets: &[String],
) -> Result<T, AlgoError> {
    let parsed = if sets.is_empty() {
        toml::from_str::<T>(text).map_err(|e| e.to_string())
    } else {
        let mut doc: toml::Table =
            toml::from_str(text).map_err(|e| AlgoError::Config(format!("{name}: {e}")))?;
        apply_overrides(&mut doc, sets)?;
        doc.try_into::<T>().map_err(|e| e.to_string())
    };
    parsed.map_err(|m| AlgoError::Config(format!("{name}: {}", m.trim())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lora_layers_restrict_the_patterns() {
        let all = LoraConfig::default();
        assert_eq!(all.patterns()[0], "^layers\\.\\d+\\.attn\\.q\\.weight$");
        let some = LoraConfig {
            layers: Some(vec![3, 4]),
            targets: vec!["down".into()],
            ..LoraConfig::default()
        };
        assert_eq!(
            some.patterns(),
            vec!["^layers\\.(3|4)\\.mlp\\.down\\.weight$"]
        );
        let none = LoraConfig {
            layers: Some(vec![]),
            ..LoraConfig::default()
        };
        assert!(none.validate().is_err());
    }

    const MINIMAL: &str = "model = \"m.gguf\"\n[data]\ntrain = \"pairs.jsonl\"\n";

    #[test]
    fn defaults_fill_missing_sections() {
        let c: TrainConfig = parse_config(MINIMAL, "c.toml", &[]).unwrap();
        assert_eq!(c.optim, OptimConfig::default());
        assert_eq!(c.loss.beta, 0.1);
        assert_eq!(c.reference.mode, ReferenceMode::Initial);
        assert!(c.lora.is_none());
        assert_eq!(c.device, "flex");
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

    #[test]
    fn schedules_match_hugging_face() {
        let mut o = OptimConfig {
            lr: 1.0,
            warmup_steps: 2,
            ..OptimConfig::default()
        };
        let lrs: Vec<f64> = (0..6).map(|s| o.lr_at(s, 6)).collect();
        assert_eq!(lrs, vec![0.0, 0.5, 1.0, 0.75, 0.5, 0.25]);
        o.schedule = ScheduleKind::Cosine;
        assert!((o.lr_at(4, 6) - 0.5).abs() < 1e-12);
        o.schedule = ScheduleKind::Constant;
        assert_eq!(o.lr_at(5, 6), 1.0);
    }

    #[test]
    fn lora_targets_become_path_regexes() {
        let l = LoraConfig::default();
        let p = l.patterns();
        assert_eq!(p[0], "^layers\\.\\d+\\.attn\\.q\\.weight$");
        assert_eq!(p[4], "^layers\\.\\d+\\.mlp\\.gate\\.weight$");
        let mut bad = l.clone();
        bad.dropout = 0.1;
        assert!(bad.validate().is_err());
    }
}
