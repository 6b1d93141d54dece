//! PEFT's names for our weights: where an adapter of each weight lives in PEFT's layout, read
//! from the architecture's table ([`Arch`]).

use crate::arch::{Arch, Layout};

/// Where PEFT keeps the adapter of one of our weights ([`Arch::peft_target`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeftTarget {
    /// PEFT's module name, e.g. `base_model.model.model.layers.3.self_attn.qkv_proj`.
    pub module: String,
    /// Its name in `target_modules` (matched by suffix): the last part (`qkv_proj`), or the
    /// last two where the last is shared (GPT-2's `attn.c_proj` and `mlp.c_proj`).
    pub name: String,
    /// Our paths of every weight the module holds, in the order of its output rows (one when
    /// it holds one).
    pub parts: Vec<String>,
    /// Which of them this weight is.
    pub part: usize,
    /// The module is a GPT-2 `Conv1D`, stored `[in, out]` (PEFT's `fan_in_fan_out`).
    pub conv1d: bool,
}

impl Arch {
    /// Where PEFT keeps an adapter of the weight at our `path`: `layers.3.attn.q.weight` ->
    /// `base_model.model.model.layers.3.self_attn.q_proj`, `lm_head.weight` ->
    /// `base_model.model.lm_head`; a weight the checkpoint fuses with others (GPT-2's q, k, v in
    /// `c_attn`, Phi-3's `qkv_proj` and `gate_up_proj`) -> the fused module and its part.
    /// `None` for a weight outside the blocks that is not a linear layer (the embeddings:
    /// PEFT's LoRA for them has another layout) and for vectors.
    pub fn peft_target(&self, path: &str) -> Option<PeftTarget> {
        if let Some(top) = self.top.iter().find(|e| e.ours == [path]) {
            let module = top.hf.strip_suffix(".weight")?;
            return (top.hf_layout == Layout::Transposed).then(|| PeftTarget {
                name: module.to_owned(),
                module: format!("base_model.model.{module}"),
                parts: vec![path.to_owned()],
                part: 0,
                conv1d: false,
            });
        }
        let (layer, rel) = path.strip_prefix("layers.")?.split_once('.')?;
        let entry = self.block.iter().find(|e| e.ours.contains(&rel))?;
        let module = entry.hf.strip_suffix(".weight")?;
        // Linear layers only: `nn.Linear` (transposed here) or GPT-2's `Conv1D` (transposed by
        // llama.cpp); norms and biases are stored the same way everywhere.
        if entry.hf_layout == Layout::Same && entry.gguf_layout == Layout::Same {
            return None;
        }
        // PEFT matches `target_modules` by suffix: a last name two linear layers share (GPT-2's
        // `attn.c_proj` and `mlp.c_proj`) needs its parent too.
        let last = |m: &str| m.rsplit('.').next().unwrap_or_default().to_owned();
        let shared = self
            .block
            .iter()
            .filter(|e| e.hf_layout != Layout::Same || e.gguf_layout != Layout::Same)
            .filter_map(|e| e.hf.strip_suffix(".weight"))
            .filter(|m| last(m) == last(module))
            .count()
            > 1;
        Some(PeftTarget {
            name: if shared {
                module.to_owned()
            } else {
                last(module)
            },
            module: format!("base_model.model.{}.{layer}.{module}", self.hf_blocks),
            parts: entry
                .ours
                .iter()
                .map(|p| format!("layers.{layer}.{p}"))
                .collect(),
            part: entry.ours.iter().position(|p| *p == rel)?,
            conv1d: entry.hf_layout == Layout::Same,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::ModelType;

    #[test]
    fn peft_names() {
        let peft = |t: ModelType, p| t.arch().peft_target(p).unwrap();
        let module = |t, p| peft(t, p).module;
        assert_eq!(
            module(ModelType::LLAMA, "layers.3.attn.q.weight"),
            "base_model.model.model.layers.3.self_attn.q_proj"
        );
        assert_eq!(
            module(ModelType::QWEN2, "layers.0.mlp.gate.weight"),
            "base_model.model.model.layers.0.mlp.gate_proj"
        );
        assert_eq!(
            module(ModelType::QWEN2, "lm_head.weight"),
            "base_model.model.lm_head"
        );
        assert_eq!(
            ModelType::LLAMA.arch().peft_target("embed_tokens.weight"),
            None
        );
        assert_eq!(
            ModelType::LLAMA.arch().peft_target("layers.0.attn.q.bias"),
            None
        );
        // GPT-2's Conv1D layers; q, k and v are the three parts of `c_attn`.
        let up = peft(ModelType::GPT2, "layers.1.mlp.up.weight");
        assert_eq!(up.module, "base_model.model.transformer.h.1.mlp.c_fc");
        assert_eq!(up.name, "c_fc");
        assert_eq!(
            peft(ModelType::GPT2, "layers.1.attn.o.weight").name,
            "attn.c_proj"
        );
        assert_eq!(
            peft(ModelType::GPT2, "layers.1.mlp.down.weight").name,
            "mlp.c_proj"
        );
        assert_eq!(
            peft(ModelType::LLAMA, "layers.1.mlp.down.weight").name,
            "down_proj"
        );
        assert!(up.conv1d && up.parts.len() == 1);
        let k = peft(ModelType::GPT2, "layers.2.attn.k.weight");
        assert_eq!(k.module, "base_model.model.transformer.h.2.attn.c_attn");
        assert_eq!(k.part, 1);
        assert_eq!(
            k.parts,
            [
                "layers.2.attn.q.weight",
                "layers.2.attn.k.weight",
                "layers.2.attn.v.weight"
            ]
        );
        // Phi-3's fused projections (nn.Linear).
        let up = peft(ModelType::PHI3, "layers.0.mlp.up.weight");
        assert_eq!(
            up.module,
            "base_model.model.model.layers.0.mlp.gate_up_proj"
        );
        assert_eq!((up.part, up.parts.len(), up.conv1d), (1, 2, false));
        let v = peft(ModelType::PHI3, "layers.0.attn.v.weight");
        assert_eq!(
            v.module,
            "base_model.model.model.layers.0.self_attn.qkv_proj"
        );
        assert_eq!(v.part, 2);
    }
}
