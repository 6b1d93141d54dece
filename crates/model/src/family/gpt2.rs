//! GPT-2: LayerNorm, learned absolute positions, GELU (tanh) MLP, tied head; its own
//! `config.json` schema (`n_embd`, `n_layer`, ...) and checkpoint prefix (`transformer.h`), and
//! `Conv1D` weights stored `[in, out]`.

use super::{
    AttentionBias, BlockSpec, ConfigDefaults, Family, HfKeys, LLAMA_LIKE, MlpKind, ModelType,
    NormKind, Positions, Window, llama,
};
use crate::arch::{self, Arch, Entry};

impl ModelType {
    /// GPT-2 (`model_type` `gpt2`).
    pub const GPT2: ModelType = ModelType(&GPT2);
}

const TOP: &[Entry] = &[
    arch::entry(
        &["embed_tokens.weight"],
        "transformer.wte.weight",
        "token_embd.weight",
    ),
    arch::entry(
        &["embed_positions.weight"],
        "transformer.wpe.weight",
        "position_embd.weight",
    ),
    arch::entry(
        &["norm.weight"],
        "transformer.ln_f.weight",
        "output_norm.weight",
    ),
    arch::entry(&["norm.bias"], "transformer.ln_f.bias", "output_norm.bias"),
    arch::linear(&["lm_head.weight"], "lm_head.weight", "output.weight"),
];

const BLOCK: &[Entry] = &[
    arch::entry(&["attn_norm.weight"], "ln_1.weight", "attn_norm.weight"),
    arch::entry(&["attn_norm.bias"], "ln_1.bias", "attn_norm.bias"),
    arch::conv1d(
        &["attn.q.weight", "attn.k.weight", "attn.v.weight"],
        "attn.c_attn.weight",
        "attn_qkv.weight",
    ),
    arch::entry(
        &["attn.q.bias", "attn.k.bias", "attn.v.bias"],
        "attn.c_attn.bias",
        "attn_qkv.bias",
    ),
    arch::conv1d(
        &["attn.o.weight"],
        "attn.c_proj.weight",
        "attn_output.weight",
    ),
    arch::entry(&["attn.o.bias"], "attn.c_proj.bias", "attn_output.bias"),
    arch::entry(&["mlp_norm.weight"], "ln_2.weight", "ffn_norm.weight"),
    arch::entry(&["mlp_norm.bias"], "ln_2.bias", "ffn_norm.bias"),
    arch::conv1d(&["mlp.up.weight"], "mlp.c_fc.weight", "ffn_up.weight"),
    arch::entry(&["mlp.up.bias"], "mlp.c_fc.bias", "ffn_up.bias"),
    arch::conv1d(&["mlp.down.weight"], "mlp.c_proj.weight", "ffn_down.weight"),
    arch::entry(&["mlp.down.bias"], "mlp.c_proj.bias", "ffn_down.bias"),
];

const GPT2: Family = Family {
    name: "GPT-2",
    hf_name: "gpt2",
    hf_aliases: &[],
    hf_refused: &[],
    hf_class: "GPT2LMHeadModel",
    hf_classifier_class: "GPT2ForSequenceClassification",
    gguf_name: Some("gpt2"),
    gguf_norm_offset: 0.0,
    block: BlockSpec {
        norm: NormKind::Layer,
        positions: Positions::Learned,
        mlp: MlpKind::GeluTanh,
        qkv_bias: true,
        out_bias: true,
        ..LLAMA_LIKE
    },
    grouped_query: false,
    attention_bias: AttentionBias::Ignored,
    window: Window::Never,
    hf_keys: HfKeys {
        hidden_size: "n_embd",
        intermediate_size: "n_inner",
        num_layers: "n_layer",
        num_heads: "n_head",
        max_position_embeddings: "n_positions",
        positions_alias: Some("n_ctx"),
        norm_eps: "layer_norm_epsilon",
        activation: "activation_function",
    },
    activations: &["gelu_new", "gelu_pytorch_tanh"],
    hf_constants: &[
        ("resid_pdrop", "0.0"),
        ("embd_pdrop", "0.0"),
        ("attn_pdrop", "0.0"),
    ],
    defaults: ConfigDefaults {
        intermediate_multiple: Some(4),
        max_position_embeddings: 1024,
        norm_eps: 1e-5,
        tie_word_embeddings: true,
        rope_theta: 0.0,
        ..llama::DEFAULTS
    },
    names: Arch {
        hf_blocks: "transformer.h",
        top: TOP,
        block: BLOCK,
        optional_prefix: Some("transformer."),
        buffers: &[".attn.bias", ".attn.masked_bias"],
    },
};
