//! The one table per architecture that names every parameter three ways: our module path
//! (`layers.3.attn.q.weight`), its Hugging Face name (`model.layers.3.self_attn.q_proj.weight`)
//! and its llama.cpp (GGUF) name (`blk.3.attn_q.weight`), with how each stores it. Import and
//! export of Hugging Face tensors, GGUF loading and PEFT adapter names (`crate::peft`) all read
//! these tables. Each family's table is in its own file (`crate::family`), built from the
//! entries here that several families share.

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
    /// A prefix of the Hugging Face names that checkpoints may leave out (GPT-2's
    /// `transformer.`, absent from a `GPT2Model` checkpoint).
    pub optional_prefix: Option<&'static str>,
    /// Endings of the names of buffers that checkpoints of older transformers versions carry
    /// and that hold no weights (GPT-2's causal masks).
    pub buffers: &'static [&'static str],
}

/// An entry stored the same way on every side.
pub(crate) const fn entry(
    ours: &'static [&'static str],
    hf: &'static str,
    gguf: &'static str,
) -> Entry {
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
pub(crate) const fn linear(
    ours: &'static [&'static str],
    hf: &'static str,
    gguf: &'static str,
) -> Entry {
    Entry {
        hf_layout: Layout::Transposed,
        ..entry(ours, hf, gguf)
    }
}

/// A GPT-2 `Conv1D` weight (`[in, out]` like ours), transposed by llama.cpp.
pub(crate) const fn conv1d(
    ours: &'static [&'static str],
    hf: &'static str,
    gguf: &'static str,
) -> Entry {
    Entry {
        gguf_layout: Layout::Transposed,
        ..entry(ours, hf, gguf)
    }
}

/// `entry` with llama.cpp's per-head row permutation (query heads or key/value heads).
pub(crate) const fn per_head(entry: Entry, query: bool) -> Entry {
    Entry {
        gguf_rows_per_head: Some(query),
        ..entry
    }
}

/// The tensors outside the blocks of every Llama-like family.
pub(crate) const LLAMA_TOP: &[Entry] = &[
    entry(
        &["embed_tokens.weight"],
        "model.embed_tokens.weight",
        "token_embd.weight",
    ),
    entry(&["norm.weight"], "model.norm.weight", "output_norm.weight"),
    linear(&["lm_head.weight"], "lm_head.weight", "output.weight"),
];

// The tensors of a Llama-family block, named once; each family's table lists those it has.
pub(crate) const ATTN_NORM: Entry = entry(
    &["attn_norm.weight"],
    "input_layernorm.weight",
    "attn_norm.weight",
);
pub(crate) const Q: Entry = linear(
    &["attn.q.weight"],
    "self_attn.q_proj.weight",
    "attn_q.weight",
);
pub(crate) const Q_BIAS: Entry = entry(&["attn.q.bias"], "self_attn.q_proj.bias", "attn_q.bias");
pub(crate) const K: Entry = linear(
    &["attn.k.weight"],
    "self_attn.k_proj.weight",
    "attn_k.weight",
);
pub(crate) const K_BIAS: Entry = entry(&["attn.k.bias"], "self_attn.k_proj.bias", "attn_k.bias");
pub(crate) const V: Entry = linear(
    &["attn.v.weight"],
    "self_attn.v_proj.weight",
    "attn_v.weight",
);
pub(crate) const V_BIAS: Entry = entry(&["attn.v.bias"], "self_attn.v_proj.bias", "attn_v.bias");
pub(crate) const O: Entry = linear(
    &["attn.o.weight"],
    "self_attn.o_proj.weight",
    "attn_output.weight",
);
pub(crate) const Q_NORM: Entry = entry(
    &["attn.q_norm.weight"],
    "self_attn.q_norm.weight",
    "attn_q_norm.weight",
);
pub(crate) const K_NORM: Entry = entry(
    &["attn.k_norm.weight"],
    "self_attn.k_norm.weight",
    "attn_k_norm.weight",
);
pub(crate) const MLP_NORM: Entry = entry(
    &["mlp_norm.weight"],
    "post_attention_layernorm.weight",
    "ffn_norm.weight",
);
pub(crate) const GATE: Entry = linear(
    &["mlp.gate.weight"],
    "mlp.gate_proj.weight",
    "ffn_gate.weight",
);
pub(crate) const UP: Entry = linear(&["mlp.up.weight"], "mlp.up_proj.weight", "ffn_up.weight");
pub(crate) const DOWN: Entry = linear(
    &["mlp.down.weight"],
    "mlp.down_proj.weight",
    "ffn_down.weight",
);

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
    /// A Llama-like family's table: `block` and the shared top-level tensors.
    pub(crate) const fn llama_like(block: &'static [Entry]) -> Arch {
        Arch {
            hf_blocks: "model.layers",
            top: LLAMA_TOP,
            block,
            optional_prefix: None,
            buffers: &[],
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
