//! Qwen3: Qwen2's layout with an RMSNorm on each query and key head and no q/k/v biases.

use super::{ConfigDefaults, Family, LLAMA_LIKE, ModelType, llama, qwen2};
use crate::arch::{self, Arch, Entry};

impl ModelType {
    /// Qwen3 (`model_type` `qwen3`).
    pub const QWEN3: ModelType = ModelType(&QWEN3);
}

/// Qwen2's names plus the per-head q/k norms (biases only with `attention_bias`).
const BLOCK: &[Entry] = &[
    arch::ATTN_NORM,
    arch::Q,
    arch::Q_BIAS,
    arch::Q_NORM,
    arch::K,
    arch::K_BIAS,
    arch::K_NORM,
    arch::V,
    arch::V_BIAS,
    arch::O,
    arch::MLP_NORM,
    arch::GATE,
    arch::UP,
    arch::DOWN,
];

const QWEN3: Family = Family {
    name: "Qwen3",
    hf_name: "qwen3",
    hf_aliases: &[],
    hf_class: "Qwen3ForCausalLM",
    hf_classifier_class: "Qwen3ForSequenceClassification",
    gguf_name: Some("qwen3"),
    block: super::BlockSpec {
        qk_norm: true,
        ..LLAMA_LIKE
    },
    window: super::Window::FromLayer,
    defaults: ConfigDefaults {
        head_dim: Some(128),
        ..qwen2::DEFAULTS
    },
    names: Arch::llama_like(BLOCK),
    ..llama::LLAMA
};
