//! Llama and its close relatives (SmolLM2, TinyLlama, Llama 3.x).

use super::{AttentionBias, ConfigDefaults, Family, LLAMA_KEYS, LLAMA_LIKE, ModelType, Window};
use crate::arch::{self, Arch, Entry};

impl ModelType {
    /// Llama (`model_type` `llama`; SmolLM2's `smollm` too).
    pub const LLAMA: ModelType = ModelType(&LLAMA);
}

/// llama.cpp permutes the q and k rows (weights and biases) for its interleaved RoPE.
const BLOCK: &[Entry] = &[
    arch::ATTN_NORM,
    arch::per_head(arch::Q, true),
    arch::per_head(arch::Q_BIAS, true),
    arch::per_head(arch::K, false),
    arch::per_head(arch::K_BIAS, false),
    arch::V,
    arch::V_BIAS,
    arch::O,
    arch::MLP_NORM,
    arch::GATE,
    arch::UP,
    arch::DOWN,
];

/// The defaults of transformers' `LlamaConfig`, which the other Llama-like families start from.
pub(super) const DEFAULTS: ConfigDefaults = ConfigDefaults {
    num_kv_heads: None,
    head_dim: None,
    intermediate_multiple: None,
    max_position_embeddings: 2048,
    norm_eps: 1e-6,
    tie_word_embeddings: false,
    rope_theta: 10000.0,
    rope_local_theta: None,
    query_pre_attn_scalar: None,
};

/// Llama's family; Mistral's differs only in its window and defaults.
pub(super) const LLAMA: Family = Family {
    name: "Llama",
    hf_name: "llama",
    hf_aliases: &["smollm"],
    hf_refused: &[],
    hf_class: "LlamaForCausalLM",
    hf_classifier_class: "LlamaForSequenceClassification",
    gguf_name: Some("llama"),
    gguf_norm_offset: 0.0,
    block: LLAMA_LIKE,
    grouped_query: true,
    attention_bias: AttentionBias::Read,
    window: Window::Never,
    hf_keys: LLAMA_KEYS,
    activations: &["silu"],
    hf_constants: &[("mlp_bias", "false"), ("attention_dropout", "0.0")],
    defaults: DEFAULTS,
    names: Arch::llama_like(BLOCK),
};
