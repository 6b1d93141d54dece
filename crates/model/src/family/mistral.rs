//! Mistral: Llama's layout and names with a sliding attention window on every layer.

use super::{ConfigDefaults, Family, ModelType, Window, llama};

impl ModelType {
    /// Mistral (`model_type` `mistral`).
    pub const MISTRAL: ModelType = ModelType(&MISTRAL);
}

const MISTRAL: Family = Family {
    name: "Mistral",
    hf_name: "mistral",
    hf_aliases: &[],
    hf_class: "MistralForCausalLM",
    hf_classifier_class: "MistralForSequenceClassification",
    // llama.cpp converts Mistral as `llama`, which reads back as Llama.
    gguf_name: None,
    attention_bias: super::AttentionBias::Ignored,
    window: Window::EveryLayer {
        default: Some(4096),
    },
    defaults: ConfigDefaults {
        num_kv_heads: Some(8),
        max_position_embeddings: 131072,
        ..llama::DEFAULTS
    },
    ..llama::LLAMA
};
