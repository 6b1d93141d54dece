//! Model hyper-parameters: one struct for the Llama family (Llama, SmolLM2, Qwen2) and GPT-2,
//! read from and written to Hugging Face `config.json`.

use serde_json::{Map, Value, json};

use crate::error::ModelError;

/// Which published architecture a [`ModelConfig`] describes. It decides the block layout
/// (RMSNorm + RoPE + SwiGLU for the Llama family, LayerNorm + learned positions + GELU for GPT-2)
/// and the tensor names used in Hugging Face checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelType {
    /// Llama and its close relatives (SmolLM2, TinyLlama, Mistral without sliding window).
    Llama,
    /// Qwen2: Llama layout with biases on the q/k/v projections.
    Qwen2,
    /// GPT-2: LayerNorm, learned absolute positions, GELU (tanh) MLP, tied head.
    Gpt2,
}

impl ModelType {
    /// The `model_type` string Hugging Face uses for this architecture.
    pub fn hf_name(self) -> &'static str {
        match self {
            ModelType::Llama => "llama",
            ModelType::Qwen2 => "qwen2",
            ModelType::Gpt2 => "gpt2",
        }
    }

    /// Parses a Hugging Face `model_type` (or GGUF `general.architecture`) string.
    pub fn from_hf_name(name: &str) -> Option<Self> {
        match name {
            "llama" | "mistral" | "smollm" => Some(ModelType::Llama),
            "qwen2" => Some(ModelType::Qwen2),
            "gpt2" => Some(ModelType::Gpt2),
            _ => None,
        }
    }

    /// True for GPT-2 style blocks (LayerNorm, learned positions, GELU MLP).
    pub fn is_gpt2(self) -> bool {
        self == ModelType::Gpt2
    }
}

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
    /// Whether the q/k/v projections have biases (Qwen2; GPT-2 always has them).
    pub attention_bias: bool,
    /// Beginning-of-sequence token id, when the model declares one.
    pub bos_token_id: Option<u32>,
    /// End-of-sequence token id, when the model declares one.
    pub eos_token_id: Option<u32>,
}

impl ModelConfig {
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
        if !self.model_type.is_gpt2() && !self.head_dim.is_multiple_of(2) {
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
        Ok(())
    }

    /// Number of parameters of a model with this configuration.
    pub fn num_parameters(&self) -> usize {
        let d = self.hidden_size;
        let q = self.num_heads * self.head_dim;
        let kv = self.num_kv_heads * self.head_dim;
        let gpt2 = self.model_type.is_gpt2();
        let attn_bias = if gpt2 || self.attention_bias {
            q + 2 * kv
        } else {
            0
        };
        let out_bias = if gpt2 { d } else { 0 };
        let attn = d * (q + 2 * kv) + q * d + attn_bias + out_bias;
        let mlp = if gpt2 {
            2 * d * self.intermediate_size + self.intermediate_size + d
        } else {
            3 * d * self.intermediate_size
        };
        let norm = if gpt2 { 2 * d } else { d };
        let block = attn + mlp + 2 * norm;
        let embed = self.vocab_size * d;
        let positions = if gpt2 {
            self.max_position_embeddings * d
        } else {
            0
        };
        let head = if self.tie_word_embeddings {
            0
        } else {
            self.vocab_size * d
        };
        embed + positions + self.num_layers * block + norm + head
    }

    /// Reads a Hugging Face `config.json` value (Llama, Mistral, Qwen2 or GPT-2).
    pub fn from_hf_json(value: &Value) -> Result<Self, ModelError> {
        let obj = value
            .as_object()
            .ok_or_else(|| ModelError::Config("config.json is not a JSON object".into()))?;
        let model_type_name = str_field(obj, "model_type")?;
        let model_type = ModelType::from_hf_name(&model_type_name).ok_or_else(|| {
            ModelError::Config(format!(
                "unsupported model_type `{model_type_name}` (supported: llama, mistral, qwen2, gpt2)"
            ))
        })?;
        let config = if model_type.is_gpt2() {
            let hidden_size = usize_field(obj, "n_embd")?;
            let num_heads = usize_field(obj, "n_head")?;
            let activation = opt_str(obj, "activation_function").unwrap_or("gelu_new".into());
            if !matches!(activation.as_str(), "gelu_new" | "gelu_pytorch_tanh") {
                return Err(ModelError::Config(format!(
                    "config.json field `activation_function`: `{activation}` is not supported (gelu_new)"
                )));
            }
            ModelConfig {
                model_type,
                vocab_size: usize_field(obj, "vocab_size")?,
                hidden_size,
                intermediate_size: opt_usize(obj, "n_inner")?.unwrap_or(4 * hidden_size),
                num_layers: usize_field(obj, "n_layer")?,
                num_heads,
                num_kv_heads: num_heads,
                head_dim: hidden_size / num_heads.max(1),
                max_position_embeddings: usize_field(obj, "n_positions")?,
                rope_theta: 0.0,
                norm_eps: opt_f64(obj, "layer_norm_epsilon")?.unwrap_or(1e-5),
                tie_word_embeddings: opt_bool(obj, "tie_word_embeddings")?.unwrap_or(true),
                attention_bias: true,
                bos_token_id: opt_token(obj, "bos_token_id")?,
                eos_token_id: opt_token(obj, "eos_token_id")?,
            }
        } else {
            if let Some(scaling) = obj.get("rope_scaling")
                && !scaling.is_null()
            {
                return Err(ModelError::Config(format!(
                    "config.json field `rope_scaling`: {scaling} is not supported yet (plain RoPE only)"
                )));
            }
            if let Some(act) = opt_str(obj, "hidden_act")
                && act != "silu"
            {
                return Err(ModelError::Config(format!(
                    "config.json field `hidden_act`: `{act}` is not supported (silu)"
                )));
            }
            let hidden_size = usize_field(obj, "hidden_size")?;
            let num_heads = usize_field(obj, "num_attention_heads")?;
            ModelConfig {
                model_type,
                vocab_size: usize_field(obj, "vocab_size")?,
                hidden_size,
                intermediate_size: usize_field(obj, "intermediate_size")?,
                num_layers: usize_field(obj, "num_hidden_layers")?,
                num_heads,
                num_kv_heads: opt_usize(obj, "num_key_value_heads")?.unwrap_or(num_heads),
                head_dim: opt_usize(obj, "head_dim")?.unwrap_or(hidden_size / num_heads.max(1)),
                max_position_embeddings: opt_usize(obj, "max_position_embeddings")?.unwrap_or(2048),
                rope_theta: opt_f64(obj, "rope_theta")?.unwrap_or(10000.0),
                norm_eps: opt_f64(obj, "rms_norm_eps")?.unwrap_or(1e-6),
                tie_word_embeddings: opt_bool(obj, "tie_word_embeddings")?.unwrap_or(false),
                attention_bias: opt_bool(obj, "attention_bias")?
                    .unwrap_or(model_type == ModelType::Qwen2),
                bos_token_id: opt_token(obj, "bos_token_id")?,
                eos_token_id: opt_token(obj, "eos_token_id")?,
            }
        };
        config.validate()?;
        Ok(config)
    }

    /// Writes the Hugging Face `config.json` that `transformers` needs to load the exported weights.
    pub fn to_hf_json(&self) -> Value {
        let tokens = json!({
            "bos_token_id": self.bos_token_id,
            "eos_token_id": self.eos_token_id,
            "torch_dtype": "float32",
            "vocab_size": self.vocab_size,
            "tie_word_embeddings": self.tie_word_embeddings,
        });
        let specific = match self.model_type {
            ModelType::Gpt2 => json!({
                "architectures": ["GPT2LMHeadModel"],
                "model_type": "gpt2",
                "n_embd": self.hidden_size,
                "n_layer": self.num_layers,
                "n_head": self.num_heads,
                "n_inner": self.intermediate_size,
                "n_positions": self.max_position_embeddings,
                "n_ctx": self.max_position_embeddings,
                "layer_norm_epsilon": self.norm_eps,
                "activation_function": "gelu_new",
                "resid_pdrop": 0.0,
                "embd_pdrop": 0.0,
                "attn_pdrop": 0.0,
            }),
            ModelType::Llama | ModelType::Qwen2 => {
                let (arch, name) = match self.model_type {
                    ModelType::Qwen2 => ("Qwen2ForCausalLM", "qwen2"),
                    _ => ("LlamaForCausalLM", "llama"),
                };
                json!({
                    "architectures": [arch],
                    "model_type": name,
                    "hidden_size": self.hidden_size,
                    "intermediate_size": self.intermediate_size,
                    "num_hidden_layers": self.num_layers,
                    "num_attention_heads": self.num_heads,
                    "num_key_value_heads": self.num_kv_heads,
                    "head_dim": self.head_dim,
                    "max_position_embeddings": self.max_position_embeddings,
                    "rope_theta": self.rope_theta,
                    "rope_scaling": null,
                    "rms_norm_eps": self.norm_eps,
                    "attention_bias": self.attention_bias,
                    "mlp_bias": false,
                    "hidden_act": "silu",
                    "attention_dropout": 0.0,
                })
            }
        };
        let mut merged = specific.as_object().cloned().unwrap_or_default();
        merged.extend(tokens.as_object().cloned().unwrap_or_default());
        Value::Object(merged)
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
            attention_bias: gpt2 || model_type == ModelType::Qwen2,
            bos_token_id: None,
            eos_token_id: None,
        };
        config.validate()?;
        Ok(config)
    }
}

fn field<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

fn type_error(key: &str, expected: &str, value: &Value) -> ModelError {
    ModelError::Config(format!(
        "config.json field `{key}`: expected {expected}, found {value}"
    ))
}

fn str_field(obj: &Map<String, Value>, key: &str) -> Result<String, ModelError> {
    opt_str(obj, key)
        .ok_or_else(|| ModelError::Config(format!("config.json: missing field `{key}`")))
}

fn opt_str(obj: &Map<String, Value>, key: &str) -> Option<String> {
    field(obj, key).and_then(|v| v.as_str()).map(str::to_owned)
}

fn usize_field(obj: &Map<String, Value>, key: &str) -> Result<usize, ModelError> {
    opt_usize(obj, key)?
        .ok_or_else(|| ModelError::Config(format!("config.json: missing field `{key}`")))
}

fn opt_usize(obj: &Map<String, Value>, key: &str) -> Result<Option<usize>, ModelError> {
    field(obj, key)
        .map(|v| {
            v.as_u64()
                .map(|n| n as usize)
                .ok_or_else(|| type_error(key, "a non-negative integer", v))
        })
        .transpose()
}

fn opt_f64(obj: &Map<String, Value>, key: &str) -> Result<Option<f64>, ModelError> {
    field(obj, key)
        .map(|v| v.as_f64().ok_or_else(|| type_error(key, "a number", v)))
        .transpose()
}

fn opt_bool(obj: &Map<String, Value>, key: &str) -> Result<Option<bool>, ModelError> {
    field(obj, key)
        .map(|v| {
            v.as_bool()
                .ok_or_else(|| type_error(key, "true or false", v))
        })
        .transpose()
}

/// Token ids may be an integer or a list of integers (the first one is used).
fn opt_token(obj: &Map<String, Value>, key: &str) -> Result<Option<u32>, ModelError> {
    let Some(v) = field(obj, key) else {
        return Ok(None);
    };
    let first = match v {
        Value::Array(items) => items.first(),
        other => Some(other),
    };
    first
        .map(|t| {
            t.as_u64()
                .map(|n| n as u32)
                .ok_or_else(|| type_error(key, "a token id", v))
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

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
