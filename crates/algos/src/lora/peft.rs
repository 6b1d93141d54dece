//! Adapters in PEFT's layout: `adapter_model.safetensors` (`lora_A.weight` `[rank, in]`,
//! `lora_B.weight` `[out, rank]` per module) and `adapter_config.json`, written and read back
//! (the configuration checked against the run's LoRA settings).
//!
//! Where the checkpoint fuses several of our weights into one module (GPT-2's `c_attn` holds
//! q, k and v; Phi-3's `qkv_proj` q, k and v, `gate_up_proj` gate and up), the n adapted parts
//! become one PEFT adapter of rank n x r that computes exactly the same update: `lora_A` stacks
//! the parts' A factors, `lora_B` is block-diagonal (part i's B in part i's output rows and
//! i's block of columns, zeros elsewhere, so the rows of a part not adapted stay zero), and
//! `rank_pattern` / `alpha_pattern` give the module rank n x r and alpha n x alpha, so that
//! PEFT's scaling alpha / rank stays the parts' own. GPT-2's modules are `Conv1D`s, which PEFT
//! adapts with `fan_in_fan_out`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use bpo_model::Transformer;
use bpo_model::burn::module::{Module, ModuleMapper, Param};
use bpo_model::burn::tensor::{Tensor, TensorData};
use bpo_model::fsutil::write_atomic;
use bpo_model::peft::PeftTarget;
use bpo_model::weights::params::{self, ModulePath};
use bpo_model::weights::{HostTensor, TensorMap, safetensors};

use super::{Adapter, adapters};
use crate::config::LoraConfig;
use crate::error::AlgoError;

/// Where PEFT keeps the adapter on `path` (from the architecture's table).
fn target(path: &str, model: &Transformer) -> Result<PeftTarget, AlgoError> {
    model
        .config
        .model_type
        .arch()
        .peft_target(path)
        .ok_or_else(|| {
            AlgoError::Config(format!(
                "the adapter on `{path}` has no PEFT name (lora.targets are checked when a run \
                 starts; this model was adapted some other way)"
            ))
        })
}

/// One PEFT module and the adapters of its parts, in the order of its output rows.
struct PeftModule {
    target: PeftTarget,
    adapters: Vec<(usize, Adapter)>,
}

/// The model's adapters grouped by PEFT module.
fn modules(model: &Transformer) -> Result<BTreeMap<String, PeftModule>, AlgoError> {
    let mut modules: BTreeMap<String, PeftModule> = BTreeMap::new();
    for adapter in adapters(model) {
        let target = target(&adapter.path, model)?;
        let part = target.part;
        modules
            .entry(target.module.clone())
            .or_insert(PeftModule {
                target,
                adapters: Vec::new(),
            })
            .adapters
            .push((part, adapter));
    }
    for module in modules.values_mut() {
        module.adapters.sort_by_key(|(part, _)| *part);
    }
    Ok(modules)
}

/// The output rows of each part of a fused module: `(first row, rows)`.
fn part_rows(
    target: &PeftTarget,
    shapes: &BTreeMap<String, Vec<usize>>,
) -> Result<Vec<(usize, usize)>, AlgoError> {
    let mut offset = 0;
    target
        .parts
        .iter()
        .map(|part| {
            let rows = shapes.get(part).and_then(|s| s.get(1)).copied();
            let rows = rows.ok_or_else(|| {
                AlgoError::Config(format!(
                    "{}: no weight `{part}` in the model",
                    target.module
                ))
            })?;
            offset += rows;
            Ok((offset - rows, rows))
        })
        .collect()
}

/// PEFT's `(lora_A, lora_B)` of a module from its parts' adapters (Burn layout: `a` `[in, r]`,
/// `b` `[r, out]`).
fn fuse(module: &PeftModule, rows: &[(usize, usize)]) -> (HostTensor, HostTensor) {
    let first = &module.adapters[0].1;
    let (d_in, rank) = (first.a.shape[0], first.a.shape[1]);
    let fused_rank = rank * module.adapters.len();
    let out: usize = rows.iter().map(|r| r.1).sum();
    let mut a = Vec::with_capacity(fused_rank * d_in);
    let mut b = vec![0.0; out * fused_rank];
    for (j, (part, adapter)) in module.adapters.iter().enumerate() {
        a.extend(adapter.a.transposed().data);
        let (row0, part_rows) = rows[*part];
        let bt = adapter.b.transposed(); // [part_rows, rank]
        for r in 0..part_rows {
            let dst = (row0 + r) * fused_rank + j * rank;
            b[dst..dst + rank].copy_from_slice(&bt.data[r * rank..(r + 1) * rank]);
        }
    }
    (
        HostTensor::new(vec![fused_rank, d_in], a),
        HostTensor::new(vec![out, fused_rank], b),
    )
}

/// Writes the adapters of `model` to `dir` in PEFT's layout (see the module documentation).
pub fn save_adapters(
    model: &Transformer,
    config: &LoraConfig,
    base_model: &str,
    dir: &Path,
) -> Result<(), AlgoError> {
    std::fs::create_dir_all(dir).map_err(|e| AlgoError::io(dir, e))?;
    let shapes = params::shapes(model);
    let mut map = TensorMap::new(dir.display().to_string());
    let mut names = std::collections::BTreeSet::new();
    let mut rank_pattern = BTreeMap::new();
    let mut conv1d = false;
    for (name, module) in modules(model)? {
        let short = module.target.name.clone();
        let (lora_a, lora_b) = fuse(&module, &part_rows(&module.target, &shapes)?);
        if module.target.parts.len() > 1 {
            let parts = module.adapters.len();
            if *rank_pattern.entry(short.clone()).or_insert(parts) != parts {
                return Err(AlgoError::Config(format!(
                    "{name}: other parts adapted than in the other layers' `{short}`: PEFT's \
                     rank_pattern cannot describe it"
                )));
            }
        }
        conv1d |= module.target.conv1d;
        names.insert(short);
        map.insert(format!("{name}.lora_A.weight"), lora_a);
        map.insert(format!("{name}.lora_B.weight"), lora_b);
    }
    safetensors::write(&dir.join("adapter_model.safetensors"), &map)?;
    let ranks: BTreeMap<&String, usize> = rank_pattern
        .iter()
        .map(|(k, n)| (k, n * config.rank))
        .collect();
    let alphas: BTreeMap<&String, f64> = rank_pattern
        .iter()
        .map(|(k, n)| (k, *n as f64 * config.alpha))
        .collect();
    let peft = serde_json::json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model,
        "r": config.rank,
        "lora_alpha": config.alpha,
        "rank_pattern": ranks,
        "alpha_pattern": alphas,
        "lora_dropout": config.dropout,
        "target_modules": names,
        "bias": "none",
        "fan_in_fan_out": conv1d,
        "use_rslora": false,
        "layers_to_transform": config.layers,
    });
    let text = serde_json::to_string_pretty(&peft).expect("json");
    write_atomic(&dir.join("adapter_config.json"), text.as_bytes())?;
    Ok(())
}

/// The rank or alpha PEFT gives module `module` (its `target_modules` name `name`): the entry
/// of `pattern` whose key is the name or a suffix of the module's path, else `default`.
fn per_module(pattern: &serde_json::Value, module: &PeftTarget, default: f64) -> f64 {
    let matches = |key: &String| key == &module.name || module.module.ends_with(&format!(".{key}"));
    pattern
        .as_object()
        .and_then(|p| p.iter().find(|(key, _)| matches(key)))
        .and_then(|(_, v)| v.as_f64())
        .unwrap_or(default)
}

/// Checks that the adapter configuration in `dir` scales every module's update as `lora` does
/// (alpha / r, no rsLoRA): factors loaded at another scale would change the model silently.
fn check_scale(
    dir: &Path,
    lora: &LoraConfig,
    modules: &BTreeMap<String, PeftModule>,
) -> Result<(), AlgoError> {
    let path = dir.join("adapter_config.json");
    let bad = |message: String| AlgoError::Config(format!("{}: {message}", path.display()));
    let text = std::fs::read_to_string(&path).map_err(|e| AlgoError::io(&path, e))?;
    let config: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
    if config["use_rslora"].as_bool() == Some(true) {
        return Err(bad(
            "use_rslora: rsLoRA's scale alpha / sqrt(r) is not supported".into(),
        ));
    }
    let number = |field: &str| {
        config[field]
            .as_f64()
            .ok_or_else(|| bad(format!("field `{field}` is missing or not a number")))
    };
    let (r, alpha) = (number("r")?, number("lora_alpha")?);
    let expected = lora.alpha / lora.rank as f64;
    for module in modules.values() {
        let target = &module.target;
        let parts = module.adapters.len() as f64;
        let rank = per_module(&config["rank_pattern"], target, r);
        let scale = per_module(&config["alpha_pattern"], target, alpha) / rank;
        if (scale - expected).abs() > 1e-9 * expected.abs() || rank != parts * lora.rank as f64 {
            return Err(bad(format!(
                "`{}` has rank {rank} and scale alpha / r = {scale}; this run's lora (rank {}, \
                 alpha {}) needs rank {} and scale {expected}: load it with the lora.rank and \
                 lora.alpha it was trained with",
                target.name,
                lora.rank,
                lora.alpha,
                parts * lora.rank as f64
            )));
        }
    }
    Ok(())
}

/// Replaces the adapters of `model` (adapted with `lora`) by those written with
/// [`save_adapters`] in `dir`: e.g. to start from an SFT adapter. The adapter must have been
/// trained with the same targets, rank and scale (checked against `adapter_config.json`; a
/// tensor no adapter of the model takes is an error), and a fused module's adapter must be
/// block-diagonal as `save_adapters` writes it (one trained by PEFT on the fused module is
/// refused: its parts share one rank).
pub fn load_adapters(
    model: Transformer,
    lora: &LoraConfig,
    dir: &Path,
) -> Result<Transformer, AlgoError> {
    let file = dir.join("adapter_model.safetensors");
    let mut map = TensorMap::new(file.display().to_string());
    safetensors::read_into(&file, &mut map)?;
    let shapes = params::shapes(&model);
    let modules = modules(&model)?;
    check_scale(dir, lora, &modules)?;
    let mut values = HashMap::new();
    for (name, module) in modules {
        let rows = part_rows(&module.target, &shapes)?;
        let d_in = module.adapters[0].1.a.shape[0];
        let fused_rank: usize = module.adapters.iter().map(|(_, a)| a.a.shape[1]).sum();
        let out: usize = rows.iter().map(|r| r.1).sum();
        let lora_a = map.take(&format!("{name}.lora_A.weight"), &[fused_rank, d_in])?;
        let lora_b = map.take(&format!("{name}.lora_B.weight"), &[out, fused_rank])?;
        let rank = fused_rank / module.adapters.len();
        let mut in_blocks = 0usize;
        for (j, (part, adapter)) in module.adapters.iter().enumerate() {
            let a = &lora_a.data[j * rank * lora_a.shape[1]..(j + 1) * rank * lora_a.shape[1]];
            let (row0, part_rows) = rows[*part];
            let mut b = Vec::with_capacity(part_rows * rank);
            for r in row0..row0 + part_rows {
                let row = &lora_b.data[r * fused_rank..(r + 1) * fused_rank];
                b.extend_from_slice(&row[j * rank..(j + 1) * rank]);
                in_blocks += row[j * rank..(j + 1) * rank]
                    .iter()
                    .filter(|v| **v != 0.0)
                    .count();
            }
            let a = HostTensor::new(vec![rank, lora_a.shape[1]], a.to_vec());
            let b = HostTensor::new(vec![part_rows, rank], b);
            values.insert(format!("{}.lora.a", adapter.path), a.transposed());
            values.insert(format!("{}.lora.b", adapter.path), b.transposed());
        }
        let nonzero = lora_b.data.iter().filter(|v| **v != 0.0).count();
        if nonzero != in_blocks {
            return Err(AlgoError::Config(format!(
                "{}: `{name}.lora_B.weight` is not block-diagonal: bpo adapts the parts of a \
                 fused module separately and reads fused adapters only as it writes them",
                file.display()
            )));
        }
    }
    if let Some(name) = map.tensors.keys().next() {
        return Err(AlgoError::Config(format!(
            "{}: `{name}` belongs to no adapter of this model (trained with other lora.targets \
             or lora.layers?)",
            file.display()
        )));
    }
    Ok(model.map(&mut SetLora {
        path: ModulePath::default(),
        values,
    }))
}

/// Sets LoRA factors by path.
struct SetLora {
    path: ModulePath,
    values: HashMap<String, HostTensor>,
}

impl ModuleMapper for SetLora {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.enter(name);
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.exit();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some(host) = self.values.remove(&self.path.joined()) else {
            return param;
        };
        param.map(|old| {
            let data = TensorData::new(host.data, old.shape());
            // Keep the factor trainable (a fresh tensor would not track gradients).
            Tensor::from_data(data, &old.device()).set_require_grad(old.is_require_grad())
        })
    }
}
