//! Reading and writing Hugging Face `config.json` of every family, under the family's key names
//! and defaults (`crate::family`): every missing or mistyped field is an error naming it, every
//! option bpo does not compute a refusal naming it.

use serde_json::{Map, Value, json};

use crate::config::json::{
    check_heads_divide, field, opt_bool, opt_f64, opt_str, opt_token, opt_usize, str_field,
    type_error, usize_field,
};
use crate::config::{LayerType, MAX_LAYERS, ModelConfig, ModelType, Positions};
use crate::error::ModelError;
use crate::family::{AttentionBias, ConfigDefaults, Family, Window};

impl ModelConfig {
    /// Reads a Hugging Face `config.json` value of a family bpo computes ([`ModelType`]).
    pub fn from_hf_json(value: &Value) -> Result<Self, ModelError> {
        let obj = value
            .as_object()
            .ok_or_else(|| ModelError::Config("config.json is not a JSON object".into()))?;
        let model_type_name = str_field(obj, "model_type")?;
        let model_type = ModelType::from_hf_name(&model_type_name).ok_or_else(|| {
            let hint = ModelType::refusal_hint(&model_type_name)
                .map(|hint| format!(" ({hint})"))
                .unwrap_or_default();
            ModelError::Config(format!(
                "unsupported model_type `{model_type_name}`{hint} (supported: {})",
                ModelType::supported_names()
            ))
        })?;
        let config = read(obj, model_type)?;
        config.validate()?;
        Ok(config)
    }

    /// Writes the Hugging Face `config.json` that `transformers` needs to load the exported
    /// weights: the family's keys ([`Family`]), its RoPE and window as transformers reads them.
    pub fn to_hf_json(&self) -> Value {
        let family = self.model_type.family();
        let keys = family.hf_keys;
        let mut obj = json!({
            "architectures": [family.hf_class],
            "model_type": family.hf_name,
            (keys.hidden_size): self.hidden_size,
            (keys.intermediate_size): self.intermediate_size,
            (keys.num_layers): self.num_layers,
            (keys.num_heads): self.num_heads,
            (keys.max_position_embeddings): self.max_position_embeddings,
            (keys.norm_eps): self.norm_eps,
            (keys.activation): family.activations.first(),
            "bos_token_id": self.bos_token_id,
            "eos_token_id": self.eos_token_id,
            "torch_dtype": "float32",
            "vocab_size": self.vocab_size,
            "tie_word_embeddings": self.tie_word_embeddings,
        });
        let map = obj.as_object_mut().expect("an object");
        let mut put = |key: &str, value: Value| map.insert(key.to_owned(), value);
        if family.grouped_query {
            put("num_key_value_heads", json!(self.num_kv_heads));
            put("head_dim", json!(self.head_dim));
        }
        if family.attention_bias != AttentionBias::Ignored {
            put("attention_bias", json!(self.attention_bias));
        }
        if family.window != Window::Never {
            put("sliding_window", json!(self.sliding_window));
        }
        if !self.layer_types.is_empty() && family.window.reads_layer_types() {
            let types: Vec<&str> = self.layer_types.iter().map(|t| t.hf_name()).collect();
            put("layer_types", json!(types));
        }
        if family.window == Window::FromLayer {
            let first = self
                .layer_types
                .iter()
                .position(|t| *t == LayerType::Sliding);
            put("use_sliding_window", json!(self.has_sliding_layers()));
            put("max_window_layers", json!(first.unwrap_or(self.num_layers)));
        }
        let rope = |theta: f64| json!({"rope_type": "default", "rope_theta": theta});
        // A family with its own base for the sliding layers keeps one set per layer type.
        let local = family.defaults.rope_local_theta.is_some();
        match (family.block.positions, local) {
            (Positions::Learned, _) => None,
            (Positions::Rope, false) => put("rope_parameters", rope(self.rope_theta)),
            (Positions::Rope, true) => {
                let local = self.rope_local_theta.unwrap_or(self.rope_theta);
                let sets = json!({"full_attention": rope(self.rope_theta), "sliding_attention": rope(local)});
                put("rope_parameters", sets)
            }
        };
        if let Some(alias) = keys.positions_alias {
            put(alias, json!(self.max_position_embeddings));
        }
        if family.defaults.query_pre_attn_scalar.is_some() {
            // transformers' Gemma3TextConfig takes an integer.
            let scalar = self.query_pre_attn_scalar.unwrap_or(self.head_dim as f64);
            put(
                "query_pre_attn_scalar",
                match scalar.fract() == 0.0 && scalar < 1e15 {
                    true => json!(scalar as u64),
                    false => json!(scalar),
                },
            );
        }
        for (key, text) in family.hf_constants {
            put(
                key,
                serde_json::from_str(text).expect("the family's JSON constants parse"),
            );
        }
        obj
    }
}

/// The configuration of any family from its `config.json` object, under the family's key names
/// and defaults ([`Family`]).
fn read(obj: &Map<String, Value>, model_type: ModelType) -> Result<ModelConfig, ModelError> {
    refuse_unsupported(obj)?;
    let family = model_type.family();
    let (defaults, keys) = (family.defaults, family.hf_keys);
    if let Some(found) = opt_str(obj, keys.activation)
        && !family.activations.contains(&found.as_str())
    {
        return Err(ModelError::Config(format!(
            "config.json field `{}`: `{found}` is not supported ({})",
            keys.activation,
            family.activations.join(", ")
        )));
    }
    let hidden_size = usize_field(obj, keys.hidden_size)?;
    let num_heads = usize_field(obj, keys.num_heads)?;
    let head_dim = match (opt_usize(obj, "head_dim")?, defaults.head_dim) {
        (Some(dim), _) | (None, Some(dim)) => dim,
        (None, None) => {
            check_heads_divide(hidden_size, num_heads, keys.hidden_size, keys.num_heads)?;
            hidden_size / num_heads
        }
    };
    let intermediate_size = match defaults.intermediate_multiple {
        Some(multiple) => opt_usize(obj, keys.intermediate_size)?.unwrap_or(multiple * hidden_size),
        None => usize_field(obj, keys.intermediate_size)?,
    };
    let num_kv_heads = match family.grouped_query {
        true => opt_usize(obj, "num_key_value_heads")?
            .unwrap_or(defaults.num_kv_heads.unwrap_or(num_heads)),
        false => num_heads,
    };
    let num_layers = usize_field(obj, keys.num_layers)?;
    let (sliding_window, layer_types) = attention_layers(obj, model_type, num_layers)?;
    let (rope_theta, rope_local_theta) = match family.block.positions {
        Positions::Rope => rope_bases(obj, &defaults)?,
        Positions::Learned => (0.0, None),
    };
    Ok(ModelConfig {
        model_type,
        vocab_size: usize_field(obj, "vocab_size")?,
        hidden_size,
        intermediate_size,
        num_layers,
        num_heads,
        num_kv_heads,
        head_dim,
        max_position_embeddings: opt_usize(obj, keys.max_position_embeddings)?
            .unwrap_or(defaults.max_position_embeddings),
        rope_theta,
        norm_eps: opt_f64(obj, keys.norm_eps)?.unwrap_or(defaults.norm_eps),
        tie_word_embeddings: opt_bool(obj, "tie_word_embeddings")?
            .unwrap_or(defaults.tie_word_embeddings),
        attention_bias: attention_bias(obj, family)?,
        bos_token_id: opt_token(obj, "bos_token_id")?,
        eos_token_id: opt_token(obj, "eos_token_id")?,
        sliding_window,
        layer_types,
        rope_local_theta,
        query_pre_attn_scalar: match defaults.query_pre_attn_scalar {
            Some(default) => Some(opt_f64(obj, "query_pre_attn_scalar")?.unwrap_or(default)),
            None => None,
        },
    })
}

/// Whether the q/k/v projections have biases ([`AttentionBias`]).
fn attention_bias(obj: &Map<String, Value>, family: &Family) -> Result<bool, ModelError> {
    let said = opt_bool(obj, "attention_bias")?;
    match family.attention_bias {
        AttentionBias::Ignored => Ok(family.block.qkv_bias),
        AttentionBias::Refused if said == Some(true) => Err(ModelError::Config(format!(
            "config.json field `attention_bias`: true is not supported for {} (biases on q, k, \
             v and o); bpo refuses rather than compute something other than this model",
            family.name
        ))),
        _ => Ok(said.unwrap_or(family.block.qkv_bias)),
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
    let family = model_type.family();
    let window = match family.window {
        Window::Never => None,
        Window::EveryLayer { default: None } => opt_usize(obj, "sliding_window")?,
        Window::EveryLayer {
            default: Some(default),
        } => window_or(default)?,
        Window::FromLayer => match opt_bool(obj, "use_sliding_window")?.unwrap_or(false) {
            true => window_or(4096)?,
            false => None,
        },
        Window::Pattern => window_or(4096)?,
    };
    let Some(window) = window else {
        if family.window == Window::Pattern {
            // transformers cannot build such a family's sliding layers' mask without one.
            return Err(ModelError::Config(format!(
                "config.json field `sliding_window`: null, but {}'s sliding layers need a window",
                family.name
            )));
        }
        return Ok((None, Vec::new()));
    };
    let listed = field(obj, "layer_types").filter(|_| family.window.reads_layer_types());
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
        None if family.window == Window::FromLayer => {
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

/// RoPE's bases, of the global layers and (for a family with its own there, Gemma 3) of the
/// sliding-window layers, where transformers 5 writes them (`rope_parameters`, per layer type
/// for Gemma 3; they win, as in transformers 5), else where older versions did (`rope_theta`,
/// Gemma's `rope_local_base_freq`), else the family's defaults.
fn rope_bases(
    obj: &Map<String, Value>,
    defaults: &ConfigDefaults,
) -> Result<(f64, Option<f64>), ModelError> {
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
        None => opt_f64(obj, "rope_theta")?.unwrap_or(defaults.rope_theta),
    };
    let Some(local_default) = defaults.rope_local_theta else {
        return Ok((theta, None));
    };
    let local = match theta_of(sliding, "rope_parameters.sliding_attention")? {
        Some(local) => local,
        None => opt_f64(obj, "rope_local_base_freq")?.unwrap_or(local_default),
    };
    Ok((theta, Some(local)))
}
