//! Gemma 3 (text): embeddings scaled by `sqrt(hidden_size)`, `(1 + w)` RMSNorms before and after
//! attention and MLP, GeGLU, q/k norms, scores scaled by `query_pre_attn_scalar`, interleaved
//! sliding-window and global layers with their own RoPE bases.

use super::{
    AttentionBias, BlockSpec, ConfigDefaults, Family, HfKeys, LLAMA_KEYS, LLAMA_LIKE, MlpKind,
    ModelType, NormKind, Window, llama,
};
use crate::arch::{self, Arch, Entry};

impl ModelType {
    /// Gemma 3 text models (`model_type` `gemma3_text`).
    pub const GEMMA3: ModelType = ModelType(&GEMMA3);
}

// Gemma's norms after attention and MLP; its `post_attention_layernorm` is the attention's
// post-norm, not the norm before the MLP as in Llama.
const ATTN_POST_NORM: Entry = arch::entry(
    &["attn_post_norm.weight"],
    "post_attention_layernorm.weight",
    "post_attention_norm.weight",
);
const PRE_MLP_NORM: Entry = arch::entry(
    &["mlp_norm.weight"],
    "pre_feedforward_layernorm.weight",
    "ffn_norm.weight",
);
const MLP_POST_NORM: Entry = arch::entry(
    &["mlp_post_norm.weight"],
    "post_feedforward_layernorm.weight",
    "post_ffw_norm.weight",
);

/// Qwen3's attention names, four norms per block.
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
    ATTN_POST_NORM,
    PRE_MLP_NORM,
    arch::GATE,
    arch::UP,
    arch::DOWN,
    MLP_POST_NORM,
];

const GEMMA3: Family = Family {
    name: "Gemma 3",
    hf_name: "gemma3_text",
    hf_aliases: &[],
    hf_refused: &[(
        "gemma3",
        "Gemma 3 with its vision tower: bpo computes the text models, model_type gemma3_text, \
         such as google/gemma-3-1b-it",
    )],
    hf_class: "Gemma3ForCausalLM",
    hf_classifier_class: "Gemma3TextForSequenceClassification",
    gguf_name: Some("gemma3"),
    // llama.cpp stores the norms' weights with the 1 added.
    gguf_norm_offset: 1.0,
    block: BlockSpec {
        norm: NormKind::RmsUnitOffset,
        mlp: MlpKind::GeGlu,
        qk_norm: true,
        post_norms: true,
        scaled_embedding: true,
        ..LLAMA_LIKE
    },
    // Its biased variant also has one on the output projection, which bpo does not compute.
    attention_bias: AttentionBias::Refused,
    window: Window::Pattern,
    hf_keys: HfKeys {
        activation: "hidden_activation",
        ..LLAMA_KEYS
    },
    activations: &["gelu_pytorch_tanh"],
    hf_constants: &[
        ("mlp_bias", "false"),
        ("attention_dropout", "0.0"),
        ("final_logit_softcapping", "null"),
        ("attn_logit_softcapping", "null"),
    ],
    defaults: ConfigDefaults {
        num_kv_heads: Some(4),
        head_dim: Some(256),
        max_position_embeddings: 131072,
        tie_word_embeddings: true,
        rope_theta: 1e6,
        rope_local_theta: Some(10000.0),
        query_pre_attn_scalar: Some(256.0),
        ..llama::DEFAULTS
    },
    names: Arch::llama_like(BLOCK),
    ..llama::LLAMA
};
