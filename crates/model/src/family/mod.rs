//! The architecture families bpo computes, one file each (candle-transformers' one file per
//! model): a family's [`Family`] is everything bpo knows of it: its names in transformers and
//! llama.cpp, what its blocks compute ([`BlockSpec`]), how its `config.json` is read and written
//! and what it defaults, which layers slide, and its table of tensor names (`crate::arch`).
//! Loaders, exporters and the model code read these fields and never match on a family.
//!
//! Adding a family: a file here with its `Family` and its `ModelType` constant, one line in
//! [`MODEL_TYPES`], its rows in `scripts/transformers_parity.py`; new block computations go to
//! the shared modules (`norm.rs`, `mlp.rs`, `attention.rs`) behind a new [`BlockSpec`] field.

mod block;
mod gemma3;
mod gpt2;
mod llama;
mod mistral;
mod phi3;
mod qwen2;
mod qwen3;

pub use block::{BlockSpec, LLAMA_LIKE, LayerType, MlpKind, NormKind, Positions};

use crate::arch::Arch;

/// Every family, in the order messages list them.
pub const MODEL_TYPES: &[ModelType] = &[
    ModelType::LLAMA,
    ModelType::MISTRAL,
    ModelType::QWEN2,
    ModelType::QWEN3,
    ModelType::PHI3,
    ModelType::GEMMA3,
    ModelType::GPT2,
];

/// A family's values for `config.json` keys that are left out (transformers 5.24's defaults of
/// the family's config class).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConfigDefaults {
    /// `num_key_value_heads`; `None`: as many as the attention heads.
    pub num_kv_heads: Option<usize>,
    /// `head_dim`; `None`: `hidden_size / num_attention_heads`.
    pub head_dim: Option<usize>,
    /// The MLP width as a multiple of `hidden_size` where the config may leave it out (GPT-2).
    pub intermediate_multiple: Option<usize>,
    /// `max_position_embeddings`.
    pub max_position_embeddings: usize,
    /// `rms_norm_eps` (`layer_norm_epsilon`).
    pub norm_eps: f64,
    /// `tie_word_embeddings`.
    pub tie_word_embeddings: bool,
    /// RoPE's base (0 for a family with learned positions).
    pub rope_theta: f64,
    /// RoPE's base of the sliding-window layers, for a family that has its own there.
    pub rope_local_theta: Option<f64>,
    /// `query_pre_attn_scalar`, for a family that scales scores by it instead of `head_dim`.
    pub query_pre_attn_scalar: Option<f64>,
}

/// Which layers of a family attend within a sliding window, as transformers reads the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// None (transformers ignores `sliding_window`).
    Never,
    /// Every layer when `sliding_window` is set; `default` when the key is absent.
    EveryLayer {
        /// The window of a config without the key.
        default: Option<usize>,
    },
    /// With `use_sliding_window` only, from layer `max_window_layers` on (default 4096, from
    /// 28); `layer_types` wins (Qwen2, Qwen3).
    FromLayer,
    /// Always: all but every `sliding_window_pattern`-th layer (default 4096, every 6th);
    /// `layer_types` wins (Gemma 3).
    Pattern,
}

impl Window {
    /// Whether transformers reads `layer_types` for the family.
    pub fn reads_layer_types(self) -> bool {
        matches!(self, Window::FromLayer | Window::Pattern)
    }
}

/// How a family reads `attention_bias`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttentionBias {
    /// As the config says, else the block's default.
    Read,
    /// The block's default whatever the config says (transformers ignores the key).
    Ignored,
    /// `true` is refused (a variant bpo does not compute).
    Refused,
}

/// The `config.json` keys of a family's sizes (GPT-2 names them its own way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HfKeys {
    /// The residual width (`hidden_size`, `n_embd`).
    pub hidden_size: &'static str,
    /// The MLP width (`intermediate_size`, `n_inner`).
    pub intermediate_size: &'static str,
    /// The block count (`num_hidden_layers`, `n_layer`).
    pub num_layers: &'static str,
    /// The query heads (`num_attention_heads`, `n_head`).
    pub num_heads: &'static str,
    /// The positions (`max_position_embeddings`, `n_positions`).
    pub max_position_embeddings: &'static str,
    /// Another key written with the positions (GPT-2's `n_ctx`, which llama.cpp's converter
    /// reads).
    pub positions_alias: Option<&'static str>,
    /// The norms' epsilon (`rms_norm_eps`, `layer_norm_epsilon`).
    pub norm_eps: &'static str,
    /// The activation (`hidden_act`, Gemma's `hidden_activation`, `activation_function`).
    pub activation: &'static str,
}

/// The Llama-like families' keys.
pub const LLAMA_KEYS: HfKeys = HfKeys {
    hidden_size: "hidden_size",
    intermediate_size: "intermediate_size",
    num_layers: "num_hidden_layers",
    num_heads: "num_attention_heads",
    max_position_embeddings: "max_position_embeddings",
    positions_alias: None,
    norm_eps: "rms_norm_eps",
    activation: "hidden_act",
};

/// Everything bpo knows of one architecture family.
#[derive(Debug)]
pub struct Family {
    /// Its name in messages (`Llama`).
    pub name: &'static str,
    /// transformers' `model_type`.
    pub hf_name: &'static str,
    /// Other `model_type` strings read as this family.
    pub hf_aliases: &'static [&'static str],
    /// `model_type` strings of related models bpo does not compute, with what to say.
    pub hf_refused: &'static [(&'static str, &'static str)],
    /// transformers' causal language model class.
    pub hf_class: &'static str,
    /// transformers' sequence classifier class.
    pub hf_classifier_class: &'static str,
    /// llama.cpp's `general.architecture`, where bpo reads llama.cpp's conversion.
    pub gguf_name: Option<&'static str>,
    /// What llama.cpp adds to every norm weight it stores (Gemma keeps `1 + w`).
    pub gguf_norm_offset: f32,
    /// What the blocks compute.
    pub block: BlockSpec,
    /// Whether key/value heads may be fewer than query heads.
    pub grouped_query: bool,
    /// How `attention_bias` is read.
    pub attention_bias: AttentionBias,
    /// Which layers slide.
    pub window: Window,
    /// The `config.json` keys of the sizes.
    pub hf_keys: HfKeys,
    /// The activations bpo computes under their `config.json` names, the first one written.
    pub activations: &'static [&'static str],
    /// `config.json` keys written as they are (JSON text) for transformers' config class.
    pub hf_constants: &'static [(&'static str, &'static str)],
    /// Values of keys a `config.json` leaves out.
    pub defaults: ConfigDefaults,
    /// The tensor names.
    pub names: Arch,
}

/// One of the families bpo computes ([`MODEL_TYPES`]); a handle on its [`Family`].
#[derive(Clone, Copy)]
pub struct ModelType(&'static Family);

impl PartialEq for ModelType {
    fn eq(&self, other: &Self) -> bool {
        self.0.hf_name == other.0.hf_name
    }
}

impl Eq for ModelType {}

impl std::fmt::Debug for ModelType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.name)
    }
}

impl ModelType {
    /// Everything bpo knows of the family.
    pub fn family(self) -> &'static Family {
        self.0
    }

    /// The `model_type` string Hugging Face uses for this architecture.
    pub fn hf_name(self) -> &'static str {
        self.0.hf_name
    }

    /// The transformers class of a causal language model of this architecture.
    pub fn hf_class(self) -> &'static str {
        self.0.hf_class
    }

    /// The transformers class of a sequence classifier of this architecture.
    pub fn hf_classifier_class(self) -> &'static str {
        self.0.hf_classifier_class
    }

    /// Parses a Hugging Face `model_type` string.
    pub fn from_hf_name(name: &str) -> Option<Self> {
        MODEL_TYPES
            .iter()
            .copied()
            .find(|t| t.0.hf_name == name || t.0.hf_aliases.contains(&name))
    }

    /// What to say of a `model_type` bpo does not compute but a family knows of.
    pub fn refusal_hint(name: &str) -> Option<&'static str> {
        MODEL_TYPES
            .iter()
            .flat_map(|t| t.0.hf_refused.iter())
            .find(|(refused, _)| *refused == name)
            .map(|(_, hint)| *hint)
    }

    /// llama.cpp's `general.architecture` for this family, `None` where bpo does not read
    /// llama.cpp's conversion.
    pub fn gguf_name(self) -> Option<&'static str> {
        self.0.gguf_name
    }

    /// Parses a GGUF `general.architecture` string (Mistral's conversion says `llama`).
    pub fn from_gguf_name(name: &str) -> Option<Self> {
        MODEL_TYPES
            .iter()
            .copied()
            .find(|t| t.gguf_name() == Some(name))
    }

    /// The supported names, for messages.
    pub fn supported_names() -> String {
        let names: Vec<&str> = MODEL_TYPES.iter().map(|t| t.hf_name()).collect();
        names.join(", ")
    }

    /// How this family's blocks compute.
    pub fn block(self) -> BlockSpec {
        self.0.block
    }

    /// The tensor names of this family.
    pub fn arch(self) -> &'static Arch {
        &self.0.names
    }

    /// Which of `num_layers` layers attend within the sliding window when the checkpoint
    /// sets a window but no `layer_types`: every layer for [`Window::EveryLayer`], all but
    /// every `pattern`-th for [`Window::Pattern`], none for the others.
    pub fn default_layer_types(self, num_layers: usize, pattern: usize) -> Vec<LayerType> {
        (0..num_layers)
            .map(|i| match self.0.window {
                Window::EveryLayer { .. } => LayerType::Sliding,
                Window::Pattern if !(i + 1).is_multiple_of(pattern.max(1)) => LayerType::Sliding,
                _ => LayerType::Full,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::Named;

    #[test]
    fn every_table_names_each_tensor_once() {
        for &t in MODEL_TYPES {
            let named = t.arch().named(2);
            for key in [|n: &Named| n.hf.clone(), |n: &Named| n.gguf.clone()] {
                let mut names: Vec<String> = named.iter().map(key).collect();
                names.sort();
                let before = names.len();
                names.dedup();
                assert_eq!(names.len(), before, "{t:?}");
            }
        }
    }
}
