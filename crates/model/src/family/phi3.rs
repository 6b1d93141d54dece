//! Phi-3: Llama's computation with q/k/v fused into one projection and gate/up into another in
//! checkpoints (split on load, joined on export), a sliding window on every layer when set.

use super::{AttentionBias, ConfigDefaults, Family, ModelType, Window, llama};
use crate::arch::{self, Arch, Entry};

impl ModelType {
    /// Phi-3 and Phi-4 mini (`model_type` `phi3`).
    pub const PHI3: ModelType = ModelType(&PHI3);
}

const QKV: Entry = arch::linear(
    &["attn.q.weight", "attn.k.weight", "attn.v.weight"],
    "self_attn.qkv_proj.weight",
    "attn_qkv.weight",
);
const GATE_UP: Entry = arch::linear(
    &["mlp.gate.weight", "mlp.up.weight"],
    "mlp.gate_up_proj.weight",
    "ffn_up.weight",
);

/// Rows in Hugging Face order in GGUF too.
const BLOCK: &[Entry] = &[
    arch::ATTN_NORM,
    QKV,
    arch::O,
    arch::MLP_NORM,
    GATE_UP,
    arch::DOWN,
];

const PHI3: Family = Family {
    name: "Phi-3",
    hf_name: "phi3",
    hf_aliases: &[],
    hf_class: "Phi3ForCausalLM",
    hf_classifier_class: "Phi3ForSequenceClassification",
    gguf_name: Some("phi3"),
    attention_bias: AttentionBias::Ignored,
    window: Window::EveryLayer { default: None },
    defaults: ConfigDefaults {
        max_position_embeddings: 4096,
        norm_eps: 1e-5,
        ..llama::DEFAULTS
    },
    names: Arch::llama_like(BLOCK),
    // Phi3Config's default pad id (32000) is outside small vocabularies.
    hf_constants: &[
        ("mlp_bias", "false"),
        ("attention_dropout", "0.0"),
        ("pad_token_id", "null"),
        ("resid_pdrop", "0.0"),
        ("embd_pdrop", "0.0"),
    ],
    ..llama::LLAMA
};
