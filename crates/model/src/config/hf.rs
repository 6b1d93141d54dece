//! Reading and writing Hugging Face `config.json` (Llama, Mistral, Qwen2, Qwen3, GPT-2): every
//! missing or mistyped field is an error naming it.

use serde_json::{Map, Value, json};

use crate::config::{ModelConfig, ModelType};
use crate::error::ModelError;

impl ModelConfig {
    /// Reads a Hugging Face `config.json` value (Llama, Mistral, Qwen2, Qwen3 or GPT-2).
    pub fn from_hf_json(value: &Value) -> Result<Self, ModelError> {
        let obj = value
            .as_object()
            .ok_or_else(|| ModelError::Config("config.json is not a JSON object".into()))?;
        let model_type_name = str_field(obj, "model_type")?;
        let model_type = ModelType::from_hf_name(&model_type_name).ok_or_else(|| {
            ModelError::Config(format!(
                "unsupported model_type `{model_type_name}` (supported: {})",
                ModelType::supported_names()
            ))
        })?;
        let config = if model_type.is_gpt2() {
            let hidden_size = usize_field(obj, "n_embd")?;
            let num_heads = usize_field(obj, "n_head")?;
            check_heads_divide(hidden_size, num_heads, "n_embd", "n_head")?;
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
            refuse_unsupported(obj, &model_type_name)?;
            if let Some(act) = opt_str(obj, "hidden_act")
                && act != "silu"
            {
                return Err(ModelError::Config(format!(
                    "config.json field `hidden_act`: `{act}` is not supported (silu)"
                )));
            }
            let hidden_size = usize_field(obj, "hidden_size")?;
            let num_heads = usize_field(obj, "num_attention_heads")?;
            // transformers' Qwen3Config defaults head_dim to 128; the others to hidden / heads.
            let head_dim = match opt_usize(obj, "head_dim")? {
                Some(dim) => dim,
                None if model_type == ModelType::Qwen3 => 128,
                None => {
                    check_heads_divide(
                        hidden_size,
                        num_heads,
                        "hidden_size",
                        "num_attention_heads",
                    )?;
                    hidden_size / num_heads
                }
            };
            ModelConfig {
                model_type,
                vocab_size: usize_field(obj, "vocab_size")?,
                hidden_size,
                intermediate_size: usize_field(obj, "intermediate_size")?,
                num_layers: usize_field(obj, "num_hidden_layers")?,
                num_heads,
                num_kv_heads: opt_usize(obj, "num_key_value_heads")?.unwrap_or(num_heads),
                head_dim,
                max_position_embeddings: opt_usize(obj, "max_position_embeddings")?.unwrap_or(2048),
                rope_theta: rope_theta(obj)?,
                norm_eps: opt_f64(obj, "rms_norm_eps")?.unwrap_or(1e-6),
                tie_word_embeddings: opt_bool(obj, "tie_word_embeddings")?.unwrap_or(false),
                attention_bias: opt_bool(obj, "attention_bias")?
                    .unwrap_or(model_type.block().qkv_bias),
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
                "architectures": [self.model_type.hf_class()],
                "model_type": self.model_type.hf_name(),
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
            ModelType::Llama | ModelType::Qwen2 | ModelType::Qwen3 => json!({
                "architectures": [self.model_type.hf_class()],
                "model_type": self.model_type.hf_name(),
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
            }),
        };
        let mut merged = specific.as_object().cloned().unwrap_or_default();
        merged.extend(tokens.as_object().cloned().unwrap_or_default());
        Value::Object(merged)
    }
}

/// Options of the Llama family that bpo does not implement: computing without them would give
/// other numbers than transformers, so a checkpoint that sets one is refused by name before any
/// weight is read.
fn refuse_unsupported(obj: &Map<String, Value>, model_type: &str) -> Result<(), ModelError> {
    let refuse = |key: &str, value: &Value, why: &str| {
        Err(ModelError::Config(format!(
            "config.json field `{key}`: {value} is not supported ({why}); bpo refuses rather than \
             compute something other than this model"
        )))
    };
    for key in ["rope_scaling", "rope_parameters"] {
        if let Some(rope) = field(obj, key) {
            let kind = rope.get("rope_type").or_else(|| rope.get("type"));
            if kind.and_then(Value::as_str).unwrap_or("default") != "default" {
                return refuse(key, rope, "plain RoPE only");
            }
        }
    }
    if let Some(bias) = field(obj, "mlp_bias")
        && bias.as_bool() != Some(false)
    {
        return refuse("mlp_bias", bias, "MLP projections without biases only");
    }
    // Mistral's window defaults to 4096 in transformers; Qwen2's applies only with
    // `use_sliding_window`; Llama has none (transformers ignores the key).
    let default_window = Value::from(4096);
    let window = match model_type {
        "mistral" if !obj.contains_key("sliding_window") => Some(&default_window),
        "mistral" => field(obj, "sliding_window"),
        "qwen2" | "qwen3" if opt_bool(obj, "use_sliding_window")?.unwrap_or(false) => {
            field(obj, "sliding_window")
        }
        _ => None,
    };
    if let Some(window) = window {
        let positions = opt_usize(obj, "max_position_embeddings")?.unwrap_or(usize::MAX);
        if window.as_u64().is_none_or(|w| (w as usize) < positions) {
            return refuse(
                "sliding_window",
                window,
                "sliding-window attention is not implemented: every token attends to all before it",
            );
        }
    }
    if let Some(types) = field(obj, "layer_types")
        && types
            .as_array()
            .is_none_or(|t| t.iter().any(|t| t.as_str() != Some("full_attention")))
    {
        return refuse(
            "layer_types",
            types,
            "every layer with full attention; sliding-window layers are not implemented",
        );
    }
    for key in [
        "num_local_experts",
        "num_experts",
        "attn_logit_softcapping",
        "final_logit_softcapping",
    ] {
        if let Some(value) = field(obj, key) {
            return refuse(key, value, "dense models without logit soft-capping only");
        }
    }
    Ok(())
}

/// RoPE's base: `rope_parameters.rope_theta` where transformers 5 writes it (it wins, as in
/// transformers 5), else `rope_theta`, else 10000.
fn rope_theta(obj: &Map<String, Value>) -> Result<f64, ModelError> {
    if let Some(v) = field(obj, "rope_parameters").and_then(|p| p.get("rope_theta")) {
        return v
            .as_f64()
            .ok_or_else(|| type_error("rope_parameters.rope_theta", "a number", v));
    }
    Ok(opt_f64(obj, "rope_theta")?.unwrap_or(10000.0))
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

/// Without an explicit `head_dim`, a head is `hidden / heads` wide: `heads` must divide it.
fn check_heads_divide(hidden: usize, heads: usize, h: &str, n: &str) -> Result<(), ModelError> {
    if heads == 0 || !hidden.is_multiple_of(heads) {
        return Err(ModelError::Config(format!(
            "config.json: `{n}` ({heads}) must divide `{h}` ({hidden})"
        )));
    }
    Ok(())
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
