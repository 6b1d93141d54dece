//! The one table per architecture that names every parameter three ways: our module path
//! (`layers.3.attn.q.weight`), its Hugging Face name (`model.layers.3.self_attn.q_proj.weight`)
//! and its llama.cpp (GGUF) name (`blk.3.attn_q.weight`), with how each stores it. Import and
//! export of Hugging Face tensors, GGUF loading and PEFT adapter names (`crate::peft`) all read
//! these tables;
//! a new architecture is a new table (and its blocks' code), nothing else.

use crate::config::ModelType;

/// How a matrix is stored relative to the other side of a mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// The same `[rows, cols]` (vectors always are).
    Same,
    /// Transposed: `nn.Linear` stores `[out, in]` where Burn's `Linear` stores `[in, out]`.
    Transposed,
}

/// One tensor of a checkpoint.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    /// Our parameter paths; several when the checkpoint fuses them by columns (GPT-2's
    /// `c_attn` holds q, k and v). Block entries are relative to `layers.N.`.
    pub ours: &'static [&'static str],
    /// Hugging Face name (block entries relative to the block prefix).
    pub hf: &'static str,
    /// llama.cpp name (block entries relative to `blk.N.`).
    pub gguf: &'static str,
    /// Hugging Face layout relative to ours.
    pub hf_layout: Layout,
    /// GGUF layout relative to Hugging Face.
    pub gguf_layout: Layout,
    /// llama.cpp permutes these rows per head for its interleaved RoPE (Llama's q and k):
    /// `Some(true)` for query heads, `Some(false)` for key/value heads.
    pub gguf_rows_per_head: Option<bool>,
}

/// The naming of one architecture family.
#[derive(Debug)]
pub struct Arch {
    /// Prefix of the Hugging Face blocks (`model.layers`, `transformer.h`).
    pub hf_blocks: &'static str,
    /// Tensors outside the blocks.
    pub top: &'static [Entry],
    /// Tensors of each block.
    pub block: &'static [Entry],
}

const fn entry(ours: &'static [&'static str], hf: &'static str, gguf: &'static str) -> Entry {
    Entry {
        ours,
        hf,
        gguf,
        hf_layout: Layout::Same,
        gguf_layout: Layout::Same,
        gguf_rows_per_head: None,
    }
}

/// A Hugging Face `nn.Linear` weight (`[out, in]`), stored the same way by llama.cpp.
const fn linear(ours: &'static [&'static str], hf: &'static str, gguf: &'static str) -> Entry {
    Entry {
        hf_layout: Layout::Transposed,
        ..entry(ours, hf, gguf)
    }
}

/// A GPT-2 `Conv1D` weight (`[in, out]` like ours), transposed by llama.cpp.
const fn conv1d(ours: &'static [&'static str], hf: &'static str, gguf: &'static str) -> Entry {
    Entry {
        gguf_layout: Layout::Transposed,
        ..entry(ours, hf, gguf)
    }
}

const fn per_head(entry: Entry, query: bool) -> Entry {
    Entry {
        gguf_rows_per_head: Some(query),
        ..entry
    }
}

const LLAMA_TOP: &[Entry] = &[
    entry(
        &["embed_tokens.weight"],
        "model.embed_tokens.weight",
        "token_embd.weight",
    ),
    entry(&["norm.weight"], "model.norm.weight", "output_norm.weight"),
    linear(&["lm_head.weight"], "lm_head.weight", "output.weight"),
];

// The tensors of a Llama-family block, named once; each family's table lists those it has.
const ATTN_NORM: Entry = entry(
    &["attn_norm.weight"],
    "input_layernorm.weight",
    "attn_norm.weight",
);
const Q: Entry = linear(
    &["attn.q.weight"],
    "self_attn.q_proj.weight",
    "attn_q.weight",
);
const Q_BIAS: Entry = entry(&["attn.q.bias"], "self_attn.q_proj.bias", "attn_q.bias");
const K: Entry = linear(
    &["attn.k.weight"],
    "self_attn.k_proj.weight",
    "attn_k.weight",
);
const K_BIAS: Entry = entry(&["attn.k.bias"], "self_attn.k_proj.bias", "attn_k.bias");
const V: Entry = linear(
    &["attn.v.weight"],
    "self_attn.v_proj.weight",
    "attn_v.weight",
);
const V_BIAS: Entry = entry(&["attn.v.bias"], "self_attn.v_proj.bias", "attn_v.bias");
const O: Entry = linear(
    &["attn.o.weight"],
    "self_attn.o_proj.weight",
    "attn_output.weight",
);
const Q_NORM: Entry = entry(
    &["attn.q_norm.weight"],
    "self_attn.q_norm.weight",
    "attn_q_norm.weight",
);
const K_NORM: Entry = entry(
    &["attn.k_norm.weight"],
    "self_attn.k_norm.weight",
    "attn_k_norm.weight",
);
const MLP_NORM: Entry = entry(
    &["mlp_norm.weight"],
    "post_attention_layernorm.weight",
    "ffn_norm.weight",
);
const GATE: Entry = linear(
    &["mlp.gate.weight"],
    "mlp.gate_proj.weight",
    "ffn_gate.weight",
);
const UP: Entry = linear(&["mlp.up.weight"], "mlp.up_proj.weight", "ffn_up.weight");
const DOWN: Entry = linear(
    &["mlp.down.weight"],
    "mlp.down_proj.weight",
    "ffn_down.weight",
);

/// Llama: llama.cpp permutes the q and k rows (weights and biases) for its interleaved RoPE.
const LLAMA_BLOCK: &[Entry] = &[
    ATTN_NORM,
    per_head(Q, true),
    per_head(Q_BIAS, true),
    per_head(K, false),
    per_head(K_BIAS, false),
    V,
    V_BIAS,
    O,
    MLP_NORM,
    GATE,
    UP,
    DOWN,
];

/// Qwen2: Llama's names, q/k/v biases, rows in Hugging Face order in GGUF too (NeoX RoPE).
const QWEN2_BLOCK: &[Entry] = &[
    ATTN_NORM, Q, Q_BIAS, K, K_BIAS, V, V_BIAS, O, MLP_NORM, GATE, UP, DOWN,
];

/// Qwen3: Qwen2's names plus the per-head q/k norms (biases only with `attention_bias`).
const QWEN3_BLOCK: &[Entry] = &[
    ATTN_NORM, Q, Q_BIAS, Q_NORM, K, K_BIAS, K_NORM, V, V_BIAS, O, MLP_NORM, GATE, UP, DOWN,
];

/// Phi-3's fused projections: q, k and v in one matrix, gate and up in another (split on load,
/// joined on export).
const QKV: Entry = linear(
    &["attn.q.weight", "attn.k.weight", "attn.v.weight"],
    "self_attn.qkv_proj.weight",
    "attn_qkv.weight",
);
const GATE_UP: Entry = linear(
    &["mlp.gate.weight", "mlp.up.weight"],
    "mlp.gate_up_proj.weight",
    "ffn_up.weight",
);

/// Phi-3: Llama's computation, fused projections, rows in Hugging Face order in GGUF.
const PHI3_BLOCK: &[Entry] = &[ATTN_NORM, QKV, O, MLP_NORM, GATE_UP, DOWN];

// Gemma's norms after attention and MLP; its `post_attention_layernorm` is the attention's
// post-norm, not the norm before the MLP as in Llama.
const ATTN_POST_NORM: Entry = entry(
    &["attn_post_norm.weight"],
    "post_attention_layernorm.weight",
    "post_attention_norm.weight",
);
const PRE_MLP_NORM: Entry = entry(
    &["mlp_norm.weight"],
    "pre_feedforward_layernorm.weight",
    "ffn_norm.weight",
);
const MLP_POST_NORM: Entry = entry(
    &["mlp_post_norm.weight"],
    "post_feedforward_layernorm.weight",
    "post_ffw_norm.weight",
);

/// Gemma 3: Qwen3's attention names, four norms per block.
const GEMMA3_BLOCK: &[Entry] = &[
    ATTN_NORM,
    Q,
    Q_BIAS,
    Q_NORM,
    K,
    K_BIAS,
    K_NORM,
    V,
    V_BIAS,
    O,
    ATTN_POST_NORM,
    PRE_MLP_NORM,
    GATE,
    UP,
    DOWN,
    MLP_POST_NORM,
];

const GPT2_TOP: &[Entry] = &[
    entry(
        &["embed_tokens.weight"],
        "transformer.wte.weight",
        "token_embd.weight",
    ),
    entry(
        &["embed_positions.weight"],
        "transformer.wpe.weight",
        "position_embd.weight",
    ),
    entry(
        &["norm.weight"],
        "transformer.ln_f.weight",
        "output_norm.weight",
    ),
    entry(&["norm.bias"], "transformer.ln_f.bias", "output_norm.bias"),
    linear(&["lm_head.weight"], "lm_head.weight", "output.weight"),
];

const GPT2_BLOCK: &[Entry] = &[
    entry(&["attn_norm.weight"], "ln_1.weight", "attn_norm.weight"),
    entry(&["attn_norm.bias"], "ln_1.bias", "attn_norm.bias"),
    conv1d(
        &["attn.q.weight", "attn.k.weight", "attn.v.weight"],
        "attn.c_attn.weight",
        "attn_qkv.weight",
    ),
    entry(
        &["attn.q.bias", "attn.k.bias", "attn.v.bias"],
        "attn.c_attn.bias",
        "attn_qkv.bias",
    ),
    conv1d(
        &["attn.o.weight"],
        "attn.c_proj.weight",
        "attn_output.weight",
    ),
    entry(&["attn.o.bias"], "attn.c_proj.bias", "attn_output.bias"),
    entry(&["mlp_norm.weight"], "ln_2.weight", "ffn_norm.weight"),
    entry(&["mlp_norm.bias"], "ln_2.bias", "ffn_norm.bias"),
    conv1d(&["mlp.up.weight"], "mlp.c_fc.weight", "ffn_up.weight"),
    entry(&["mlp.up.bias"], "mlp.c_fc.bias", "ffn_up.bias"),
    conv1d(&["mlp.down.weight"], "mlp.c_proj.weight", "ffn_down.weight"),
    entry(&["mlp.down.bias"], "mlp.c_proj.bias", "ffn_down.bias"),
];

const LLAMA: Arch = Arch {
    hf_blocks: "model.layers",
    top: LLAMA_TOP,
    block: LLAMA_BLOCK,
};

const QWEN2: Arch = Arch {
    hf_blocks: "model.layers",
    top: LLAMA_TOP,
    block: QWEN2_BLOCK,
};

const QWEN3: Arch = Arch {
    hf_blocks: "model.layers",
    top: LLAMA_TOP,
    block: QWEN3_BLOCK,
};

const PHI3: Arch = Arch {
    hf_blocks: "model.layers",
    top: LLAMA_TOP,
    block: PHI3_BLOCK,
};

const GEMMA3: Arch = Arch {
    hf_blocks: "model.layers",
    top: LLAMA_TOP,
    block: GEMMA3_BLOCK,
};

const GPT2: Arch = Arch {
    hf_blocks: "transformer.h",
    top: GPT2_TOP,
    block: GPT2_BLOCK,
};

/// An entry with the block index filled in.
#[derive(Debug, Clone)]
pub struct Named {
    /// Our parameter paths.
    pub ours: Vec<String>,
    /// Hugging Face name.
    pub hf: String,
    /// llama.cpp name.
    pub gguf: String,
    /// The table entry.
    pub entry: Entry,
}

impl Arch {
    /// The table of `model_type`.
    pub fn of(model_type: ModelType) -> &'static Arch {
        match model_type {
            ModelType::Llama | ModelType::Mistral => &LLAMA,
            ModelType::Qwen2 => &QWEN2,
            ModelType::Qwen3 => &QWEN3,
            ModelType::Phi3 => &PHI3,
            ModelType::Gemma3 => &GEMMA3,
            ModelType::Gpt2 => &GPT2,
        }
    }

    /// Every tensor of a model with `num_layers` blocks, top-level ones first.
    pub fn named(&self, num_layers: usize) -> Vec<Named> {
        let top = self.top.iter().map(|e| Named {
            ours: e.ours.iter().map(|p| p.to_string()).collect(),
            hf: e.hf.to_owned(),
            gguf: e.gguf.to_owned(),
            entry: *e,
        });
        let blocks = (0..num_layers).flat_map(|i| {
            self.block.iter().map(move |e| Named {
                ours: e.ours.iter().map(|p| format!("layers.{i}.{p}")).collect(),
                hf: format!("{}.{i}.{}", self.hf_blocks, e.hf),
                gguf: format!("blk.{i}.{}", e.gguf),
                entry: *e,
            })
        });
        top.chain(blocks).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_names_each_tensor_once() {
        for t in crate::config::MODEL_TYPES {
            let named = Arch::of(t).named(2);
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
