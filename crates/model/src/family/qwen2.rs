//! Qwen2: Llama's layout with biases on the q/k/v projections, llama.cpp's rows in Hugging Face
//! order (NeoX RoPE), a window only with `use_sliding_window`.

use super::{AttentionBias, ConfigDefaults, Family, LLAMA_LIKE, ModelType, Window, llama};
use crate::arch::{self, Arch, Entry};

impl ModelType {
    /// Qwen2 and Qwen2.5 (`model_type` `qwen2`).
    pub const QWEN2: ModelType = ModelType(&QWEN2);
}

const BLOCK: &[Entry] = &[
    arch::ATTN_NORM,
    arch::Q,
    arch::Q_BIAS,
    arch::K,
    arch::K_BIAS,
    arch::V,
    arch::V_BIAS,
    arch::O,
    arch::MLP_NORM,
    arch::GATE,
    arch::UP,
    arch::DOWN,
];

/// The defaults of transformers' `Qwen2Config`, which Qwen3 shares.
pub(super) const DEFAULTS: ConfigDefaults = ConfigDefaults {
    num_kv_heads: Some(32),
    max_position_embeddings: 32768,
    ..llama::DEFAULTS
};

const QWEN2: Family = Family {
    name: "Qwen2",
    hf_name: "qwen2",
    hf_aliases: &[],
    hf_class: "Qwen2ForCausalLM",
    hf_classifier_class: "Qwen2ForSequenceClassification",
    gguf_name: Some("qwen2"),
    block: super::BlockSpec {
        qkv_bias: true,
        ..LLAMA_LIKE
    },
    // transformers' Qwen2 always has them, whatever `attention_bias` says.
    attention_bias: AttentionBias::Ignored,
    window: Window::FromLayer,
    defaults: DEFAULTS,
    names: Arch::llama_like(BLOCK),
    ..llama::LLAMA
};
