//! Model hyper-parameters: one struct for the Llama family (Llama, SmolLM2, Qwen2, Qwen3) and
//! GPT-2, read from and written to Hugging Face `config.json`; each family's blocks are described
//! in `family.rs`.

mod family;
mod hf;

pub use family::{BlockSpec, MODEL_TYPES, MlpKind, ModelType, NormKind, Positions};

use crate::error::ModelError;

/// The most parameters a configuration may have (2^40, ~4 TB of f32 weights): larger numbers
/// come from corrupt or hostile config files.
pub const MAX_PARAMETERS: u128 = 1 << 40;

/// Hyper-parameters of a decoder-only transformer.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// Architecture family and checkpoint naming.
    pub model_type: ModelType,
    /// Number of rows of the token embedding (and of the output head).
    pub vocab_size: usize,
    /// Width of the residual stream (`d_model`).
    pub hidden_size: usize,
    /// Width of the MLP's hidden layer.
    pub intermediate_size: usize,
    /// Number of transformer blocks.
    pub num_layers: usize,
    /// Number of query heads.
    pub num_heads: usize,
    /// Number of key/value heads (grouped-query attention when smaller than `num_heads`).
    pub num_kv_heads: usize,
    /// Width of one attention head.
    pub head_dim: usize,
    /// Longest sequence the position encoding supports.
    pub max_position_embeddings: usize,
    /// RoPE base frequency (Llama family; 0 for GPT-2, which has learned positions).
    pub rope_theta: f64,
    /// Epsilon of RMSNorm / LayerNorm.
    pub norm_eps: f64,
    /// Whether the output head shares the token embedding matrix.
    pub tie_word_embeddings: bool,
    /// Whether the q/k/v projections have biases (GPT-2 and Qwen2 have them).
    pub attention_bias: bool,
    /// Beginning-of-sequence token id, when the model declares one.
    pub bos_token_id: Option<u32>,
    /// End-of-sequence token id, when the model declares one.
    pub eos_token_id: Option<u32>,
}

impl ModelConfig {
    /// Rejects a sequence of `len` tokens that does not fit the model's positions; `what` names
    /// the sequence (e.g. `pair 3 (chosen)`).
    pub fn check_length(&self, len: usize, what: &dyn std::fmt::Display) -> Result<(), ModelError> {
        if len > self.max_position_embeddings {
            return Err(ModelError::Input(format!(
                "{what}: {len} tokens, more than the model's {} positions (max_position_embeddings)",
                self.max_position_embeddings
            )));
        }
        Ok(())
    }

    /// Number of query heads that share one key/value head.
    pub fn group_size(&self) -> usize {
        self.num_heads / self.num_kv_heads
    }

    /// Checks the internal consistency of the sizes; every loader calls it.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |msg: String| Err(ModelError::Config(msg));
        if self.vocab_size == 0 || self.hidden_size == 0 || self.num_layers == 0 {
            return bad("vocab_size, hidden_size and num_layers must be positive".into());
        }
        if self.num_heads == 0 || self.num_kv_heads == 0 || self.head_dim == 0 {
            return bad("num_heads, num_kv_heads and head_dim must be positive".into());
        }
        if !self.num_heads.is_multiple_of(self.num_kv_heads) {
            return bad(format!(
                "num_heads ({}) must be a multiple of num_kv_heads ({})",
                self.num_heads, self.num_kv_heads
            ));
        }
        let spec = self.model_type.block();
        if spec.positions == Positions::Rope && !self.head_dim.is_multiple_of(2) {
            return bad(format!(
                "RoPE needs an even head_dim, got {}",
                self.head_dim
            ));
        }
        if self.model_type.is_gpt2() && self.num_heads != self.num_kv_heads {
            return bad(
                "GPT-2 has no grouped-query attention (num_kv_heads must equal num_heads)".into(),
            );
        }
        if self.model_type.is_gpt2() && self.num_heads * self.head_dim != self.hidden_size {
            return bad("GPT-2 needs num_heads * head_dim == hidden_size".into());
        }
        let limits = [
            ("vocab_size", self.vocab_size, 1 << 24),
            ("hidden_size", self.hidden_size, 1 << 17),
            ("intermediate_size", self.intermediate_size, 1 << 19),
            ("num_layers", self.num_layers, 1 << 12),
            ("num_heads", self.num_heads, 1 << 12),
            ("head_dim", self.head_dim, 1 << 12),
            (
                "max_position_embeddings",
                self.max_position_embeddings,
                1 << 24,
            ),
        ];
        if let Some((name, value, limit)) = limits.iter().find(|(_, v, limit)| v > limit) {
            return bad(format!(
                "{name} = {value} is larger than {limit}: not a model bpo can hold"
            ));
        }
        if self.parameter_count() > MAX_PARAMETERS {
            return bad(format!(
                "{} parameters: more than the {MAX_PARAMETERS} bpo can hold",
                self.parameter_count()
            ));
        }
        Ok(())
    }

    /// Number of parameters of a model with this configuration (a valid configuration has at
    /// most [`MAX_PARAMETERS`]).
    pub fn num_parameters(&self) -> usize {
        usize::try_from(self.parameter_count()).unwrap_or(usize::MAX)
    }

    /// The parameter count in 128-bit arithmetic, which no configuration overflows.
    fn parameter_count(&self) -> u128 {
        let [d, q_heads, kv_heads, head, ffn, vocab, layers, positions] = [
            self.hidden_size,
            self.num_heads,
            self.num_kv_heads,
            self.head_dim,
            self.intermediate_size,
            self.vocab_size,
            self.num_layers,
            self.max_position_embeddings,
        ]
        .map(|v| v as u128);
        let q = q_heads * head;
        let kv = kv_heads * head;
        let spec = self.model_type.block();
        let layer_norm = spec.norm == NormKind::Layer;
        let attn_bias = if self.attention_bias { q + 2 * kv } else { 0 };
        let out_bias = if spec.out_bias { d } else { 0 };
        let qk_norm = if spec.qk_norm { 2 * head } else { 0 };
        let attn = d * (q + 2 * kv) + q * d + attn_bias + out_bias + qk_norm;
        let mlp = match spec.mlp {
            MlpKind::GeluTanh => 2 * d * ffn + if spec.out_bias { ffn + d } else { 0 },
            MlpKind::SwiGlu => 3 * d * ffn,
        };
        let norm = if layer_norm { 2 * d } else { d };
        let block = attn + mlp + 2 * norm;
        let embed = vocab * d;
        let positions = if spec.positions == Positions::Learned {
            positions * d
        } else {
            0
        };
        let head = if self.tie_word_embeddings {
            0
        } else {
            vocab * d
        };
        embed + positions + layers * block + norm + head
    }

    /// A named size preset for randomly initialised models (`bpo init`), sized for `vocab_size`.
    ///
    /// Presets: `tiny` (2 layers, d 64: tests), `small` (4 layers, d 256, ffn 1024: the
    /// benchmark's tiny config), `base` (12 layers, d 768).
    pub fn preset(
        model_type: ModelType,
        preset: &str,
        vocab_size: usize,
    ) -> Result<Self, ModelError> {
        let (layers, hidden, heads, kv_heads, ffn) = match preset {
            "tiny" => (2, 64, 4, 2, 128),
            "small" => (4, 256, 4, 4, 1024),
            "base" => (12, 768, 12, 4, 2048),
            other => {
                return Err(ModelError::Config(format!(
                    "unknown preset `{other}` (tiny, small, base)"
                )));
            }
        };
        let gpt2 = model_type.is_gpt2();
        let config = ModelConfig {
            model_type,
            vocab_size,
            hidden_size: hidden,
            intermediate_size: if gpt2 { 4 * hidden } else { ffn },
            num_layers: layers,
            num_heads: heads,
            num_kv_heads: if gpt2 { heads } else { kv_heads },
            head_dim: hidden / heads,
            max_position_embeddings: 1024,
            rope_theta: if gpt2 { 0.0 } else { 10000.0 },
            norm_eps: 1e-5,
            tie_word_embeddings: true,
            attention_bias: model_type.block().qkv_bias,
            bos_token_id: None,
            eos_token_id: None,
        };
        config.validate()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn llama_config_round_trips_through_hf_json() {
        let config = ModelConfig::preset(ModelType::Llama, "tiny", 100).unwrap();
        let back = ModelConfig::from_hf_json(&config.to_hf_json()).unwrap();
        assert_eq!(config, back);
    }

    #[test]
    fn gpt2_config_round_trips_through_hf_json() {
        let config = ModelConfig::preset(ModelType::Gpt2, "tiny", 100).unwrap();
        let back = ModelConfig::from_hf_json(&config.to_hf_json()).unwrap();
        assert_eq!(config, back);
    }

    #[test]
    fn missing_and_mistyped_fields_are_named() {
        let err = ModelConfig::from_hf_json(&json!({"model_type": "llama"})).unwrap_err();
        assert!(err.to_string().contains("hidden_size"), "{err}");
        let err = ModelConfig::from_hf_json(&json!({
            "model_type": "llama", "hidden_size": "wide"
        }))
        .unwrap_err();
        assert!(err.to_string().contains("`hidden_size`"), "{err}");
        let err = ModelConfig::from_hf_json(&json!({"model_type": "bert"})).unwrap_err();
        assert!(err.to_string().contains("bert"), "{err}");
    }

    /// A config.json as transformers 5 writes it for a tiny model of `model_type`, with `extra`.
    fn hf_config(model_type: &str, extra: serde_json::Value) -> serde_json::Value {
        let mut config = json!({
            "model_type": model_type, "hidden_size": 64, "intermediate_size": 128,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
            "vocab_size": 100, "max_position_embeddings": 128, "rope_theta": null,
            "rope_parameters": {"rope_theta": 10000.0, "rope_type": "default"},
        });
        config
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        config
    }

    #[test]
    fn options_bpo_does_not_compute_are_refused_by_name() {
        for (model_type, extra, key) in [
            ("mistral", json!({"sliding_window": 8}), "sliding_window"),
            ("llama", json!({"mlp_bias": true}), "mlp_bias"),
            (
                "qwen2",
                json!({"use_sliding_window": true, "sliding_window": 16}),
                "sliding_window",
            ),
            (
                "qwen2",
                json!({"layer_types": ["full_attention", "sliding_attention"]}),
                "layer_types",
            ),
            (
                "llama",
                json!({"rope_scaling": {"rope_type": "llama3", "factor": 8.0}}),
                "rope_scaling",
            ),
            (
                "llama",
                json!({"rope_parameters": {"rope_type": "yarn", "rope_theta": 1e4}}),
                "rope_parameters",
            ),
            (
                "llama",
                json!({"num_local_experts": 8}),
                "num_local_experts",
            ),
            // transformers' default window for Mistral is 4096, shorter than these positions.
            (
                "mistral",
                json!({"max_position_embeddings": 32768}),
                "sliding_window",
            ),
        ] {
            let err = ModelConfig::from_hf_json(&hf_config(model_type, extra.clone()))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(&format!("`{key}`")) && err.contains("not supported"),
                "{model_type} {extra}: {err}"
            );
        }
        // What transformers writes for models bpo computes exactly.
        for (model_type, extra) in [
            ("mistral", json!({"sliding_window": null})),
            ("mistral", json!({"sliding_window": 4096})), // no shorter than the positions (128)
            (
                "qwen2",
                json!({"use_sliding_window": false, "sliding_window": 16,
                             "layer_types": ["full_attention", "full_attention"]}),
            ),
            ("llama", json!({"mlp_bias": false, "rope_scaling": null})),
            ("llama", json!({"rope_scaling": {"rope_type": "default"}})),
            ("llama", json!({"sliding_window": 8})), // ignored by transformers' Llama
            ("mistral", json!({})),                  // the default window covers 128 positions
        ] {
            ModelConfig::from_hf_json(&hf_config(model_type, extra.clone()))
                .unwrap_or_else(|e| panic!("{model_type} {extra}: {e}"));
        }
    }

    #[test]
    fn rope_theta_is_read_where_transformers_5_writes_it() {
        let extra = json!({"rope_parameters": {"rope_theta": 1000000.0, "rope_type": "default"}});
        let config = ModelConfig::from_hf_json(&hf_config("qwen2", extra)).unwrap();
        assert_eq!(config.rope_theta, 1e6);
        let top = json!({"rope_theta": 500000.0, "rope_parameters": null});
        let config = ModelConfig::from_hf_json(&hf_config("llama", top)).unwrap();
        assert_eq!(config.rope_theta, 5e5);
        let both = json!({"rope_theta": 1.0, "rope_parameters": {"rope_theta": 2e4}});
        let config = ModelConfig::from_hf_json(&hf_config("llama", both)).unwrap();
        assert_eq!(config.rope_theta, 2e4);
    }

    #[test]
    fn parameter_count_of_smollm2_135m() {
        let config = ModelConfig {
            model_type: ModelType::Llama,
            vocab_size: 49152,
            hidden_size: 576,
            intermediate_size: 1536,
            num_layers: 30,
            num_heads: 9,
            num_kv_heads: 3,
            head_dim: 64,
            max_position_embeddings: 8192,
            rope_theta: 100000.0,
            norm_eps: 1e-5,
            tie_word_embeddings: true,
            attention_bias: false,
            bos_token_id: Some(1),
            eos_token_id: Some(2),
        };
        // The published count of SmolLM2-135M.
        assert_eq!(config.num_parameters(), 134_515_008);
    }
}
