//! Hugging Face model directories: `config.json`, `model.safetensors` (or shards with
//! `model.safetensors.index.json`), `tokenizer.json` and `tokenizer_config.json`.
//! Our own checkpoints use the same layout, so `transformers` can load them.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

use crate::config::ModelConfig;
use crate::error::ModelError;
use crate::fsutil::{write_atomic, write_dir_atomic};
use crate::tokenizer::Tokenizer;
use crate::weights::safetensors;
use crate::weights::tensor::TensorMap;

/// Reads `config.json` of a model directory.
pub fn read_config(dir: &Path) -> Result<ModelConfig, ModelError> {
    read_config_json(dir, ModelConfig::from_hf_json)
}

/// Reads `config.json` of a model directory through `parse`; errors name the file.
pub fn read_config_json<T>(
    dir: &Path,
    parse: impl FnOnce(&Value) -> Result<T, ModelError>,
) -> Result<T, ModelError> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|e| ModelError::io(&path, e))?;
    let value: Value = serde_json::from_str(&text)
        .map_err(|e| ModelError::Config(format!("{}: {e}", path.display())))?;
    parse(&value).map_err(|e| match e {
        ModelError::Config(message) => ModelError::Config(format!("{}: {message}", path.display())),
        other => other,
    })
}

/// Reads all weights of a model directory (single file or shards).
pub fn read_tensors(dir: &Path) -> Result<TensorMap, ModelError> {
    let mut map = TensorMap::new(dir.display().to_string());
    let single = dir.join("model.safetensors");
    if single.exists() {
        safetensors::read_into(&single, &mut map)?;
        return Ok(map);
    }
    let index_path = dir.join("model.safetensors.index.json");
    let text = std::fs::read_to_string(&index_path).map_err(|_| ModelError::Weights {
        source_name: dir.display().to_string(),
        message: "neither model.safetensors nor model.safetensors.index.json found".into(),
    })?;
    let index: Value = serde_json::from_str(&text)
        .map_err(|e| ModelError::Config(format!("{}: {e}", index_path.display())))?;
    let shards: BTreeSet<&str> = index
        .get("weight_map")
        .and_then(Value::as_object)
        .ok_or_else(|| {
            ModelError::Config(format!("{}: missing `weight_map`", index_path.display()))
        })?
        .values()
        .filter_map(Value::as_str)
        .collect();
    for shard in shards {
        if shard.contains('/') || shard.contains("..") {
            return Err(ModelError::Config(format!(
                "{}: shard name `{shard}` leaves the directory",
                index_path.display()
            )));
        }
        safetensors::read_into(&dir.join(shard), &mut map)?;
    }
    Ok(map)
}

/// Writes a complete Hugging Face directory (config, F32 weights, tokenizer) atomically:
/// `dir` appears only once every file is written.
pub fn write(
    dir: &Path,
    config: &ModelConfig,
    tensors: &TensorMap,
    tokenizer: &Tokenizer,
) -> Result<(), ModelError> {
    write_with_config(dir, &config.to_hf_json(), config, tensors, tokenizer)
}

/// [`write`] with `config_json` as `config.json` (a classifier's, say) for a model of `config`.
pub fn write_with_config(
    dir: &Path,
    config_json: &Value,
    config: &ModelConfig,
    tensors: &TensorMap,
    tokenizer: &Tokenizer,
) -> Result<(), ModelError> {
    write_dir_atomic(dir, |tmp| {
        let config_text = serde_json::to_string_pretty(config_json)
            .map_err(|e| ModelError::Config(e.to_string()))?;
        write_atomic(&tmp.join("config.json"), config_text.as_bytes())?;
        // Every id that stops generation, as Llama 3 Instruct lists them, so that transformers'
        // `generate` stops where bpo's does.
        let stop = tokenizer.stop_ids();
        let eos = match stop.as_slice() {
            [] => serde_json::json!(config.eos_token_id),
            [one] => serde_json::json!(one),
            many => serde_json::json!(many),
        };
        let generation = serde_json::json!({
            "bos_token_id": config.bos_token_id,
            "eos_token_id": eos,
        });
        write_atomic(
            &tmp.join("generation_config.json"),
            generation.to_string().as_bytes(),
        )?;
        safetensors::write(&tmp.join("model.safetensors"), tensors)?;
        tokenizer.save(tmp)
    })
}
