//! Reading and writing Hugging Face `config.json` (Llama, Mistral, Qwen2, Qwen3, Phi-3, Gemma 3,
//! GPT-2): every missing or mistyped field is an error naming it, every option bpo does not
//! compute a refusal naming it.

use serde_json::{Map, Value, json};

use crate::config::json::{
    check_heads_divide, field, opt_bool, opt_f64, opt_str, opt_token, opt_usize, str_field,
    type_error, usize_field,
};
use crate::config::{LayerType, MAX_LAYERS, ModelConfig, ModelType};
use crate::error::ModelError;

impl ModelConfig {
    /// Reads a Hugging Face `config.json` value of a family bpo computes ([`ModelType`]).
    pub fn from_hf_json(value: &Value) -> Result<Self, ModelError> {
        let obj = value
            .as_object()
            .ok_or_else(|| ModelError::Config("config.json is not a JSON object".into()))?;
        let model_type_name = str_field(obj, "model_type")?;
        let model_type = ModelType::from_hf_name(&model_type_name).ok_or_else(|| {
            let hint = match model_type_name.as_str() {
                "gemma3" => {
                    " (Gemma 3 with its vision tower: bpo computes the text models, \
                             model_type gemma3_text, such as google/gemma-3-1b-it)"
                }
                _ => "",
            };
            ModelError::Config(format!(
                "unsupported model_type `{model_type_name}`{hint} (supported: {})",
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
                sliding_window: None,
                layer_types: Vec::new(),
                rope_local_theta: None,
                query_pre_attn_scalar: None,
            }
        } else {
            llama_like(obj, model_type)?
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
            _ => self.llama_like_json(),
        };
        let mut merged = specific.as_object().cloned().unwrap_or_default();
        merged.extend(tokens.as_object().cloned().unwrap_or_default());
        Value::Object(merged)
    }

    /// The `config.json` keys of the Llama-like families.
    fn llama_like_json(&self) -> Value {
        let mut config = json!({
            "architectures": [self.model_type.hf_class()],
            "model_type": self.model_type.hf_name(),
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "max_position_embeddings": self.max_position_embeddings,
            "rms_norm_eps": self.norm_eps,
            "attention_bias": self.attention_bias,
            "mlp_bias": false,
            "attention_dropout": 0.0,
            "sliding_window": self.sliding_window,
        });
        let obj = config.as_object_mut().expect("an object");
        if !self.layer_types.is_empty() && self.model_type.reads_layer_types() {
            let types: Vec<&str> = self.layer_types.iter().map(|t| t.hf_name()).collect();
            obj.insert("layer_types".into(), json!(types));
        }
        let plain_rope = json!({"rope_type": "default", "rope_theta": self.rope_theta});
        // transformers' Gemma3TextConfig takes an integer here.
        let scalar = self.query_pre_attn_scalar.unwrap_or(self.head_dim as f64);
        let scalar = match scalar.fract() == 0.0 && scalar < 1e15 {
            true => json!(scalar as u64),
            false => json!(scalar),
        };
        let extra = match self.model_type {
            ModelType::Gemma3 => json!({
                "hidden_activation": "gelu_pytorch_tanh",
                "query_pre_attn_scalar": scalar,
                "rope_parameters": {
                    "full_attention": plain_rope,
                    "sliding_attention": {
                        "rope_type": "default",
                        "rope_theta": self.rope_local_theta.unwrap_or(self.rope_theta),
                    },
                },
                "final_logit_softcapping": null,
                "attn_logit_softcapping": null,
            }),
            ModelType::Qwen2 | ModelType::Qwen3 => json!({
                "hidden_act": "silu",
                "rope_parameters": plain_rope,
                "use_sliding_window": self.has_sliding_layers(),
                "max_window_layers": self
                    .layer_types
                    .iter()
                    .position(|t| *t == LayerType::Sliding)
                    .unwrap_or(self.num_layers),
            }),
            // Phi3Config's default pad id (32000) is outside small vocabularies.
            ModelType::Phi3 => json!({
                "hidden_act": "silu",
                "rope_parameters": plain_rope,
                "pad_token_id": null,
                "resid_pdrop": 0.0,
                "embd_pdrop": 0.0,
            }),
            _ => json!({"hidden_act": "silu", "rope_parameters": plain_rope}),
        };
        obj.extend(extra.as_object().cloned().unwrap_or_default());
        config
    }
}

/// The configuration of a Llama-like family (every one but GPT-2) from its `config.json`.
fn llama_like(obj: &Map<String, Value>, model_type: ModelType) -> Result<ModelConfig, ModelError> {
    refuse_unsupported(obj)?;
    let (act_key, act) = match model_type {
        ModelType::Gemma3 => ("hidden_activation", "gelu_pytorch_tanh"),
        _ => ("hidden_act", "silu"),
    };
    if let Some(found) = opt_str(obj, act_key)
        && found != act
    {
        return Err(ModelError::Config(format!(
            "config.json field `{act_key}`: `{found}` is not supported ({act})"
        )));
    }
    let gemma = model_type == ModelType::Gemma3;
    let hidden_size = usize_field(obj, "hidden_size")?;
    let num_heads = usize_field(obj, "num_attention_heads")?;
    // transformers' Qwen3 and Gemma 3 configs default head_dim to 128 and 256; the others to
    // hidden / heads.
    let head_dim = match (opt_usize(obj, "head_dim")?, model_type) {
        (Some(dim), _) => dim,
        (None, ModelType::Qwen3) => 128,
        (None, ModelType::Gemma3) => 256,
        (None, _) => {
            check_heads_divide(hidden_size, num_heads, "hidden_size", "num_attention_heads")?;
            hidden_size / num_heads
        }
    };
    let num_layers = usize_field(obj, "num_hidden_layers")?;
    let (sliding_window, layer_types) = attention_layers(obj, model_type, num_layers)?;
    let (rope_theta, rope_local_theta) = rope_bases(obj, gemma)?;
    let defaults = model_type.config_defaults();
    Ok(ModelConfig {
        model_type,
        vocab_size: usize_field(obj, "vocab_size")?,
        hidden_size,
        intermediate_size: usize_field(obj, "intermediate_size")?,
        num_layers,
        num_heads,
        num_kv_heads: opt_usize(obj, "num_key_value_heads")?
            .unwrap_or(defaults.num_kv_heads.unwrap_or(num_heads)),
        head_dim,
        max_position_embeddings: opt_usize(obj, "max_position_embeddings")?
            .unwrap_or(defaults.max_position_embeddings),
        rope_theta,
        norm_eps: opt_f64(obj, "rms_norm_eps")?.unwrap_or(defaults.norm_eps),
        tie_word_embeddings: opt_bool(obj, "tie_word_embeddings")?
            .unwrap_or(defaults.tie_word_embeddings),
        attention_bias: attention_bias(obj, model_type)?,
        bos_token_id: opt_token(obj, "bos_token_id")?,
        eos_token_id: opt_token(obj, "eos_token_id")?,
        sliding_window,
        layer_types,
        rope_local_theta,
        query_pre_attn_scalar: match gemma {
            true => Some(opt_f64(obj, "query_pre_attn_scalar")?.unwrap_or(256.0)),
            false => None,
        },
    })
}

/// Whether the q/k/v projections have biases: as `attention_bias` says for Llama, Qwen2 and
/// Qwen3; never for Mistral and Phi-3 (transformers ignores the key); refused for Gemma 3,
/// whose biased variant also has one on the output projection, which bpo does not compute.
fn attention_bias(obj: &Map<String, Value>, model_type: ModelType) -> Result<bool, ModelError> {
    let said = opt_bool(obj, "attention_bias")?;
    match model_type {
        ModelType::Mistral | ModelType::Phi3 => Ok(false),
        ModelType::Gemma3 if said == Some(true) => Err(ModelError::Config(
            "config.json field `attention_bias`: true is not supported for Gemma 3 (biases on \
             q, k, v and o); bpo refuses rather than compute something other than this model"
                .into(),
        )),
        _ => Ok(said.unwrap_or(model_type.block().qkv_bias)),
    }
}

/// The sliding window and which layers use it, as transformers reads them: Mistral's window
/// defaults to 4096 and covers every layer, Phi-3's covers every layer, Gemma 3's (4096 by
/// default) five of every six (`sliding_window_pattern`), Qwen2's and Qwen3's apply only with
/// `use_sliding_window`, from layer `max_window_layers` on; an explicit `layer_types` wins
/// where transformers reads it. Llama has none (transformers ignores the key).
fn attention_layers(
    obj: &Map<String, Value>,
    model_type: ModelType,
    num_layers: usize,
) -> Result<(Option<usize>, Vec<LayerType>), ModelError> {
    let window_or = |default: usize| match obj.contains_key("sliding_window") {
        true => opt_usize(obj, "sliding_window"),
        false => Ok(Some(default)),
    };
    // The per-layer list is built before `validate` sees the layer count: bound it first.
    if num_layers > MAX_LAYERS {
        return Err(ModelError::Config(format!(
            "num_hidden_layers = {num_layers} is larger than {MAX_LAYERS}: not a model bpo can hold"
        )));
    }
    let qwen_window = opt_bool(obj, "use_sliding_window")?.unwrap_or(false);
    let window = match model_type {
        ModelType::Mistral | ModelType::Gemma3 => window_or(4096)?,
        ModelType::Phi3 => opt_usize(obj, "sliding_window")?,
        ModelType::Qwen2 | ModelType::Qwen3 if qwen_window => window_or(4096)?,
        _ => None,
    };
    let Some(window) = window else {
        if model_type == ModelType::Gemma3 {
            // transformers' Gemma 3 cannot build its sliding layers' mask without one.
            return Err(ModelError::Config(
                "config.json field `sliding_window`: null, but Gemma 3's sliding layers need a \
                 window"
                    .into(),
            ));
        }
        return Ok((None, Vec::new()));
    };
    let listed = field(obj, "layer_types").filter(|_| model_type.reads_layer_types());
    let types = match listed {
        Some(listed) => {
            let names = listed.as_array().filter(|l| l.len() == num_layers);
            let names = names.ok_or_else(|| {
                type_error(
                    "layer_types",
                    &format!("a list of {num_layers} layer types"),
                    listed,
                )
            })?;
            names
                .iter()
                .map(|name| match name.as_str() {
                    Some("full_attention") => Ok(LayerType::Full),
                    Some("sliding_attention") => Ok(LayerType::Sliding),
                    _ => Err(type_error(
                        "layer_types",
                        "`full_attention` or `sliding_attention` for each layer",
                        name,
                    )),
                })
                .collect::<Result<_, _>>()?
        }
        None if matches!(model_type, ModelType::Qwen2 | ModelType::Qwen3) => {
            let first = opt_usize(obj, "max_window_layers")?.unwrap_or(28);
            (0..num_layers)
                .map(|i| match i >= first {
                    true => LayerType::Sliding,
                    false => LayerType::Full,
                })
                .collect()
        }
        None => {
            let pattern = opt_usize(obj, "sliding_window_pattern")?
                .or(opt_usize(obj, "_sliding_window_pattern")?)
                .unwrap_or(6);
            model_type.default_layer_types(num_layers, pattern)
        }
    };
    Ok((Some(window), types))
}

/// Options of the Llama-like families that bpo does not implement: computing without them
/// would give other numbers than transformers, so a checkpoint that sets one is refused by name
/// before any weight is read.
fn refuse_unsupported(obj: &Map<String, Value>) -> Result<(), ModelError> {
    let refuse = |key: &str, value: &Value, why: &str| {
        Err(ModelError::Config(format!(
            "config.json field `{key}`: {value} is not supported ({why}); bpo refuses rather than \
             compute something other than this model"
        )))
    };
    for key in ["rope_scaling", "rope_parameters"] {
        let Some(rope) = field(obj, key) else {
            continue;
        };
        // Gemma 3 keeps one set of parameters per layer type.
        let per_layer_type: Vec<&Value> = ["full_attention", "sliding_attention"]
            .iter()
            .filter_map(|t| rope.get(t))
            .collect();
        let sets = if per_layer_type.is_empty() {
            vec![rope]
        } else {
            per_layer_type
        };
        for set in sets {
            let kind = set.get("rope_type").or_else(|| set.get("type"));
            if kind.and_then(Value::as_str).unwrap_or("default") != "default" {
                return refuse(key, rope, "plain RoPE only");
            }
            if let Some(factor) = set.get("partial_rotary_factor")
                && factor.as_f64() != Some(1.0)
            {
                return refuse(key, rope, "RoPE on whole heads only");
            }
        }
    }
    if let Some(factor) = field(obj, "partial_rotary_factor")
        && factor.as_f64() != Some(1.0)
    {
        return refuse("partial_rotary_factor", factor, "RoPE on whole heads only");
    }
    if let Some(bias) = field(obj, "mlp_bias")
        && bias.as_bool() != Some(false)
    {
        return refuse("mlp_bias", bias, "MLP projections without biases only");
    }
    if let Some(both_ways) = field(obj, "use_bidirectional_attention")
        && both_ways.as_bool() != Some(false)
    {
        return refuse(
            "use_bidirectional_attention",
            both_ways,
            "causal attention only",
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

/// RoPE's bases, of the global layers and (Gemma 3) of the sliding-window layers, where
/// transformers 5 writes them (`rope_parameters`, per layer type for Gemma 3; they win, as in
/// transformers 5), else where older versions did (`rope_theta`, Gemma's
/// `rope_local_base_freq`), else the family's defaults (10000; Gemma 3: 1e6 and 10000).
fn rope_bases(obj: &Map<String, Value>, gemma: bool) -> Result<(f64, Option<f64>), ModelError> {
    let params = field(obj, "rope_parameters");
    let theta_of = |set: Option<&Value>, key: &str| -> Result<Option<f64>, ModelError> {
        set.and_then(|s| s.get("rope_theta"))
            .map(|v| {
                v.as_f64()
                    .ok_or_else(|| type_error(&format!("{key}.rope_theta"), "a number", v))
            })
            .transpose()
    };
    let full = params.and_then(|p| p.get("full_attention"));
    let sliding = params.and_then(|p| p.get("sliding_attention"));
    let theta = match full {
        Some(_) => theta_of(full, "rope_parameters.full_attention")?,
        None => theta_of(params, "rope_parameters")?,
    };
    let theta = match theta {
        Some(theta) => theta,
        None => opt_f64(obj, "rope_theta")?.unwrap_or(if gemma { 1e6 } else { 10000.0 }),
    };
    if !gemma {
        return Ok((theta, None));
    }
    let local = match theta_of(sliding, "rope_parameters.sliding_attention")? {
        Some(local) => local,
        None => opt_f64(obj, "rope_local_base_freq")?.unwrap_or(10000.0),
    };
    Ok((theta, Some(local)))
}
