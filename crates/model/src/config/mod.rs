//! Model hyper-parameters: one struct for every family (Llama, SmolLM2, Mistral, Qwen2, Qwen3,
//! Phi-3, Gemma 3, GPT-2), read from and written to Hugging Face `config.json`; what differs
//! between families is in `crate::family`, one file each.

mod classifier;
mod hf;
mod json;

pub use crate::family::{
    BlockSpec, LayerType, MODEL_TYPES, MlpKind, ModelType, NormKind, Positions,
};
pub use classifier::{ClassifierHead, SCORE_WEIGHT};

use crate::error::ModelError;
use crate::family::Window;

/// The most parameters a configuration may have (2^40, ~4 TB of f32 weights): larger numbers
/// come from corrupt or hostile config files.
pub const MAX_PARAMETERS: u128 = 1 << 40;

/// The most blocks a configuration may have.
pub const MAX_LAYERS: usize = 1 << 12;

/// Hyper-parameters of a decoder-only transformer.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// Architecture family and checkpoint naming.
    pub model_type: ModelType,
    /// Number of rows of the token embedding (and of the output head).
    pub vocab_size: usize,
    /// Width of the residual stream (`d_model`).
    pub hidden_size: usize,
    /// Width of the MLP's hidden layer.
    pub intermediate_size: usize,
    /// Number of transformer blocks.
    pub num_layers: usize,
    /// Number of query heads.
    pub num_heads: usize,
    /// Number of key/value heads (grouped-query attention when smaller than `num_heads`).
    pub num_kv_heads: usize,
    /// Width of one attention head.
    pub head_dim: usize,
    /// Longest sequence the position encoding supports.
    pub max_position_embeddings: usize,
    /// RoPE base frequency (Llama family; 0 for GPT-2, which has learned positions).
    pub rope_theta: f64,
    /// Epsilon of RMSNorm / LayerNorm.
    pub norm_eps: f64,
    /// Whether the output head shares the token embedding matrix.
    pub tie_word_embeddings: bool,
    /// Whether the q/k/v projections have biases (GPT-2 and Qwen2 have them).
    pub attention_bias: bool,
    /// Beginning-of-sequence token id, when the model declares one.
    pub bos_token_id: Option<u32>,
    /// End-of-sequence token id, when the model declares one.
    pub eos_token_id: Option<u32>,
    /// How many keys a sliding-window layer attends to: those whose positions are within
    /// `sliding_window - 1` of the query's (transformers' `sliding_window`); `None` when no
    /// layer has a window.
    pub sliding_window: Option<usize>,
    /// Which keys each layer attends to (transformers' `layer_types`); empty when every layer
    /// attends to all keys before the query.
    pub layer_types: Vec<LayerType>,
    /// RoPE base of the sliding-window layers when it differs from `rope_theta` (Gemma 3's
    /// `rope_local_base_freq`).
    pub rope_local_theta: Option<f64>,
    /// Attention scores are scaled by `1 / sqrt(query_pre_attn_scalar)` (Gemma 3); `None`:
    /// by `1 / sqrt(head_dim)`.
    pub query_pre_attn_scalar: Option<f64>,
}

impl ModelConfig {
    /// Rejects a sequence of `len` tokens that does not fit the model's positions; `what` names
    /// the sequence (e.g. `pair 3 (chosen)`).
    pub fn check_length(&self, len: usize, what: &dyn std::fmt::Display) -> Result<(), ModelError> {
        if len > self.max_position_embeddings {
            return Err(ModelError::Input(format!(
                "{what}: {len} tokens, more than the model's {} positions (max_position_embeddings)",
                self.max_position_embeddings
            )));
        }
        Ok(())
    }

    /// The sliding window of `layer`, `None` for a layer that attends to every key before the
    /// query.
    pub fn window_of(&self, layer: usize) -> Option<usize> {
        match self.layer_types.get(layer) {
            Some(LayerType::Sliding) => self.sliding_window,
            _ => None,
        }
    }

    /// Whether some layer attends within a sliding window.
    pub fn has_sliding_layers(&self) -> bool {
        self.layer_types.contains(&LayerType::Sliding)
    }

    /// The factor attention scores are multiplied by before the softmax.
    pub fn attention_scale(&self) -> f64 {
        1.0 / self
            .query_pre_attn_scalar
            .unwrap_or(self.head_dim as f64)
            .sqrt()
    }

    /// Number of query heads that share one key/value head.
    pub fn group_size(&self) -> usize {
        self.num_heads / self.num_kv_heads
    }

    /// Checks the internal consistency of the sizes; every loader calls it.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |msg: String| Err(ModelError::Config(msg));
        if self.vocab_size == 0 || self.hidden_size == 0 || self.num_layers == 0 {
            return bad("vocab_size, hidden_size and num_layers must be positive".into());
        }
        if self.num_heads == 0 || self.num_kv_heads == 0 || self.head_dim == 0 {
            return bad("num_heads, num_kv_heads and head_dim must be positive".into());
        }
        if !self.num_heads.is_multiple_of(self.num_kv_heads) {
            return bad(format!(
                "num_heads ({}) must be a multiple of num_kv_heads ({})",
                self.num_heads, self.num_kv_heads
            ));
        }
        let spec = self.model_type.block();
        if spec.positions == Positions::Rope && !self.head_dim.is_multiple_of(2) {
            return bad(format!(
                "RoPE needs an even head_dim, got {}",
                self.head_dim
            ));
        }
        let family = self.model_type.family();
        if !family.grouped_query && self.num_heads != self.num_kv_heads {
            return bad(format!(
                "{} has no grouped-query attention (num_kv_heads must equal num_heads)",
                family.name
            ));
        }
        if !family.grouped_query && self.num_heads * self.head_dim != self.hidden_size {
            return bad(format!(
                "{} needs num_heads * head_dim == hidden_size",
                family.name
            ));
        }
        if !self.layer_types.is_empty() && self.layer_types.len() != self.num_layers {
            return bad(format!(
                "layer_types lists {} layers, the model has {}",
                self.layer_types.len(),
                self.num_layers
            ));
        }
        let fixed = self.model_type.default_layer_types(self.num_layers, 1);
        if !family.window.reads_layer_types()
            && !self.layer_types.is_empty()
            && self.layer_types != fixed
        {
            return bad(format!(
                "{} gives every layer the same attention: layer_types must be {fixed:?}",
                self.model_type.hf_name()
            ));
        }
        if self.has_sliding_layers() && self.sliding_window.is_none_or(|w| w == 0) {
            return bad("sliding-window layers need a positive sliding_window".into());
        }
        if self
            .query_pre_attn_scalar
            .is_some_and(|s| s.is_nan() || s <= 0.0)
        {
            return bad("query_pre_attn_scalar must be positive".into());
        }
        let limits = [
            ("vocab_size", self.vocab_size, 1 << 24),
            ("hidden_size", self.hidden_size, 1 << 17),
            ("intermediate_size", self.intermediate_size, 1 << 19),
            ("num_layers", self.num_layers, MAX_LAYERS),
            ("num_heads", self.num_heads, 1 << 12),
            ("head_dim", self.head_dim, 1 << 12),
            (
                "max_position_embeddings",
                self.max_position_embeddings,
                1 << 24,
            ),
        ];
        if let Some((name, value, limit)) = limits.iter().find(|(_, v, limit)| v > limit) {
            return bad(format!(
                "{name} = {value} is larger than {limit}: not a model bpo can hold"
            ));
        }
        if self.parameter_count() > MAX_PARAMETERS {
            return bad(format!(
                "{} parameters: more than the {MAX_PARAMETERS} bpo can hold",
                self.parameter_count()
            ));
        }
        Ok(())
    }

    /// Number of parameters of a model with this configuration (a valid configuration has at
    /// most [`MAX_PARAMETERS`]).
    pub fn num_parameters(&self) -> usize {
        usize::try_from(self.parameter_count()).unwrap_or(usize::MAX)
    }

    /// The parameter count in 128-bit arithmetic, which no configuration overflows.
    fn parameter_count(&self) -> u128 {
        let [d, q_heads, kv_heads, head, ffn, vocab, layers, positions] = [
            self.hidden_size,
            self.num_heads,
            self.num_kv_heads,
            self.head_dim,
            self.intermediate_size,
            self.vocab_size,
            self.num_layers,
            self.max_position_embeddings,
        ]
        .map(|v| v as u128);
        let q = q_heads * head;
        let kv = kv_heads * head;
        let spec = self.model_type.block();
        let layer_norm = spec.norm == NormKind::Layer;
        let norms_per_block = if spec.post_norms { 4 } else { 2 };
        let attn_bias = if self.attention_bias { q + 2 * kv } else { 0 };
        let out_bias = if spec.out_bias { d } else { 0 };
        let qk_norm = if spec.qk_norm { 2 * head } else { 0 };
        let attn = d * (q + 2 * kv) + q * d + attn_bias + out_bias + qk_norm;
        let mlp = match spec.mlp {
            MlpKind::GeluTanh => 2 * d * ffn + if spec.out_bias { ffn + d } else { 0 },
            MlpKind::SwiGlu | MlpKind::GeGlu => 3 * d * ffn,
        };
        let norm = if layer_norm { 2 * d } else { d };
        let block = attn + mlp + norms_per_block * norm;
        let embed = vocab * d;
        let positions = if spec.positions == Positions::Learned {
            positions * d
        } else {
            0
        };
        let head = if self.tie_word_embeddings {
            0
        } else {
            vocab * d
        };
        embed + positions + layers * block + norm + head
    }

    /// A named size preset for randomly initialised models (`bpo init`), sized for `vocab_size`.
    ///
    /// Presets: `tiny` (2 layers, d 64: tests), `small` (4 layers, d 256, ffn 1024: the
    /// benchmark's tiny config), `base` (12 layers, d 768).
    pub fn preset(
        model_type: ModelType,
        preset: &str,
        vocab_size: usize,
    ) -> Result<Self, ModelError> {
        let (layers, hidden, heads, kv_heads, ffn) = match preset {
            "tiny" => (2, 64, 4, 2, 128),
            "small" => (4, 256, 4, 4, 1024),
            "base" => (12, 768, 12, 4, 2048),
            other => {
                return Err(ModelError::Config(format!(
                    "unknown preset `{other}` (tiny, small, base)"
                )));
            }
        };
        let family = model_type.family();
        let defaults = family.defaults;
        let window = family.window;
        let config = ModelConfig {
            model_type,
            vocab_size,
            hidden_size: hidden,
            intermediate_size: defaults.intermediate_multiple.map_or(ffn, |m| m * hidden),
            num_layers: layers,
            num_heads: heads,
            num_kv_heads: if family.grouped_query {
                kv_heads
            } else {
                heads
            },
            head_dim: hidden / heads,
            max_position_embeddings: 1024,
            rope_theta: defaults.rope_theta,
            norm_eps: 1e-5,
            tie_word_embeddings: true,
            attention_bias: model_type.block().qkv_bias,
            bos_token_id: None,
            eos_token_id: None,
            // A family whose layers always follow a pattern (Gemma 3) has its window, its own
            // RoPE base there and its score scalar whatever config.json says.
            sliding_window: (window == Window::Pattern).then_some(4096),
            layer_types: match window {
                Window::Pattern => model_type.default_layer_types(layers, 6),
                _ => Vec::new(),
            },
            rope_local_theta: defaults.rope_local_theta,
            query_pre_attn_scalar: defaults
                .query_pre_attn_scalar
                .map(|_| (hidden / heads) as f64),
        };
        config.validate()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests;
