//! Reading, writing and checking model configurations.

use super::*;
use serde_json::json;

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
    let nested_linear = json!({"rope_parameters": {
        "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1e6},
        "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}}});
    for (model_type, extra, key) in [
        ("llama", json!({"mlp_bias": true}), "mlp_bias"),
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
        ("gemma3_text", nested_linear, "rope_parameters"),
        (
            "phi3",
            json!({"rope_parameters": {"rope_type": "default", "partial_rotary_factor": 0.75}}),
            "rope_parameters",
        ),
        (
            "phi3",
            json!({"partial_rotary_factor": 0.5}),
            "partial_rotary_factor",
        ),
        (
            "llama",
            json!({"num_local_experts": 8}),
            "num_local_experts",
        ),
        (
            "gemma3_text",
            json!({"attn_logit_softcapping": 50.0}),
            "attn_logit_softcapping",
        ),
        (
            "gemma3_text",
            json!({"use_bidirectional_attention": true}),
            "use_bidirectional_attention",
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
    let err = ModelConfig::from_hf_json(&hf_config("gemma3", json!({}))).unwrap_err();
    assert!(err.to_string().contains("gemma3_text"), "{err}");
    let err = ModelConfig::from_hf_json(&hf_config(
        "gemma3_text",
        json!({"layer_types": ["full_attention", "local"]}),
    ))
    .unwrap_err();
    assert!(err.to_string().contains("`layer_types`"), "{err}");
    // What transformers writes for models bpo computes exactly.
    for (model_type, extra) in [
        ("mistral", json!({"sliding_window": null})),
        ("llama", json!({"mlp_bias": false, "rope_scaling": null})),
        ("llama", json!({"rope_scaling": {"rope_type": "default"}})),
        (
            "phi3",
            json!({"partial_rotary_factor": 1.0, "sliding_window": 2047}),
        ),
    ] {
        ModelConfig::from_hf_json(&hf_config(model_type, extra.clone()))
            .unwrap_or_else(|e| panic!("{model_type} {extra}: {e}"));
    }
}

#[test]
fn sliding_windows_and_layer_types_are_read_as_transformers_reads_them() {
    use LayerType::{Full, Sliding};
    let read = |model_type: &str, extra: serde_json::Value| {
        let config = ModelConfig::from_hf_json(&hf_config(model_type, extra)).unwrap();
        (config.sliding_window, config.layer_types)
    };
    // Mistral: 4096 by default, every layer; Llama ignores the key.
    assert_eq!(read("mistral", json!({})), (Some(4096), vec![Sliding; 2]));
    assert_eq!(
        read("mistral", json!({"sliding_window": 8})),
        (Some(8), vec![Sliding; 2])
    );
    assert_eq!(
        read("mistral", json!({"sliding_window": null})),
        (None, vec![])
    );
    assert_eq!(read("llama", json!({"sliding_window": 8})), (None, vec![]));
    assert_eq!(read("phi3", json!({})), (None, vec![]));
    assert_eq!(
        read("phi3", json!({"sliding_window": 8})),
        (Some(8), vec![Sliding; 2])
    );
    // Qwen2: only with use_sliding_window, from max_window_layers on.
    let qwen = json!({"sliding_window": 8, "max_window_layers": 1});
    assert_eq!(read("qwen2", qwen.clone()), (None, vec![]));
    let on = json!({"use_sliding_window": true, "sliding_window": 8, "max_window_layers": 1});
    assert_eq!(read("qwen2", on), (Some(8), vec![Full, Sliding]));
    let listed = json!({"use_sliding_window": true, "sliding_window": 8,
                        "layer_types": ["sliding_attention", "full_attention"]});
    assert_eq!(read("qwen3", listed), (Some(8), vec![Sliding, Full]));
    // Gemma 3 as older transformers wrote it: a pattern, two RoPE bases at the top level.
    let legacy = json!({"num_hidden_layers": 4, "sliding_window": 16,
        "sliding_window_pattern": 2, "rope_theta": 1e6, "rope_local_base_freq": 1e4,
        "rope_parameters": null, "query_pre_attn_scalar": 32});
    let config = ModelConfig::from_hf_json(&hf_config("gemma3_text", legacy)).unwrap();
    assert_eq!(config.layer_types, vec![Sliding, Full, Sliding, Full]);
    assert_eq!(
        (config.rope_theta, config.rope_local_theta),
        (1e6, Some(1e4))
    );
    assert_eq!(config.attention_scale(), 1.0 / 32f64.sqrt());
    assert!(config.tie_word_embeddings);
    // ... and as transformers 5 writes it.
    let current = json!({"rope_parameters": {
        "full_attention": {"rope_type": "default", "rope_theta": 5e5},
        "sliding_attention": {"rope_type": "default", "rope_theta": 2e4}}});
    let config = ModelConfig::from_hf_json(&hf_config("gemma3_text", current)).unwrap();
    assert_eq!(
        (config.rope_theta, config.rope_local_theta),
        (5e5, Some(2e4))
    );
    assert_eq!(config.layer_types, vec![Sliding, Sliding]);
    // Qwen's window defaults to 4096 once switched on.
    let on = json!({"use_sliding_window": true, "max_window_layers": 0});
    assert_eq!(read("qwen2", on), (Some(4096), vec![Sliding; 2]));
}

#[test]
fn hostile_or_inconsistent_attention_settings_are_errors() {
    let err = |model_type: &str, extra: serde_json::Value| {
        ModelConfig::from_hf_json(&hf_config(model_type, extra))
            .unwrap_err()
            .to_string()
    };
    // A layer count that would allocate without bound is refused before anything is built.
    let e = err(
        "mistral",
        json!({"num_hidden_layers": 1_000_000_000_000_000u64}),
    );
    assert!(e.contains("num_hidden_layers"), "{e}");
    let e = err("gemma3_text", json!({"sliding_window": null}));
    assert!(e.contains("`sliding_window`"), "{e}");
    let e = err("gemma3_text", json!({"attention_bias": true}));
    assert!(e.contains("`attention_bias`"), "{e}");
    // transformers' Mistral and Phi-3 never have q/k/v biases, whatever the key says.
    for model_type in ["mistral", "phi3"] {
        let config =
            ModelConfig::from_hf_json(&hf_config(model_type, json!({"attention_bias": true})))
                .unwrap();
        assert!(!config.attention_bias, "{model_type}");
    }
}

#[test]
fn every_family_round_trips_through_hf_json() {
    for &model_type in MODEL_TYPES {
        let mut config = ModelConfig::preset(model_type, "tiny", 100).unwrap();
        let windowed = model_type.default_layer_types(config.num_layers, 2);
        if windowed.contains(&LayerType::Sliding) {
            config.sliding_window = Some(8);
            config.layer_types = windowed;
        }
        let back = ModelConfig::from_hf_json(&config.to_hf_json()).unwrap();
        assert_eq!(config, back, "{model_type:?}");
        if model_type == ModelType::GEMMA3 {
            config.rope_local_theta = Some(1234.0);
            config.query_pre_attn_scalar = Some(20.0);
        }
        let back = ModelConfig::from_hf_json(&config.to_hf_json()).unwrap();
        assert_eq!(config, back, "{model_type:?}");
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
        model_type: ModelType::LLAMA,
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
        sliding_window: None,
        layer_types: Vec::new(),
        rope_local_theta: None,
        query_pre_attn_scalar: None,
    };
    // The published count of SmolLM2-135M.
    assert_eq!(config.num_parameters(), 134_515_008);
}

#[test]
fn keys_left_out_take_the_defaults_of_transformers_config_classes() {
    // transformers 5.24: `{Llama,Mistral,Qwen2,Qwen3,Phi3,Gemma3Text}Config()`.
    let cases = [
        ("llama", 32, 2048, 1e-6, false),
        ("mistral", 8, 131072, 1e-6, false),
        ("qwen2", 32, 32768, 1e-6, false),
        ("qwen3", 32, 32768, 1e-6, false),
        ("phi3", 32, 4096, 1e-5, false),
        ("gemma3_text", 4, 131072, 1e-6, true),
    ];
    for (model_type, kv_heads, positions, eps, tied) in cases {
        let mut config = hf_config(
            model_type,
            json!({"num_attention_heads": 32, "head_dim": 2}),
        );
        let object = config.as_object_mut().unwrap();
        for key in [
            "num_key_value_heads",
            "max_position_embeddings",
            "rms_norm_eps",
        ] {
            object.remove(key);
        }
        let c = ModelConfig::from_hf_json(&config).unwrap_or_else(|e| panic!("{model_type}: {e}"));
        assert_eq!(
            (
                c.num_kv_heads,
                c.max_position_embeddings,
                c.norm_eps,
                c.tie_word_embeddings
            ),
            (kv_heads, positions, eps, tied),
            "{model_type}"
        );
    }
}
