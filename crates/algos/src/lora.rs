//! LoRA through Burn's built-in `apply_lora`: adapters on the weights whose module path matches
//! the configured targets, saved separately in PEFT's layout, merged for export.

use std::path::Path;

use bpo_model::arch::Arch;
use bpo_model::burn::module::{Lora, Module, ModuleVisitor, Param, ParamGroup, ParamId};
use bpo_model::burn::tensor::Tensor;
use bpo_model::fsutil::write_atomic;
use bpo_model::host::to_f32_vec;
use bpo_model::weights::params::{self, ModulePath};
use bpo_model::weights::{HostTensor, TensorMap, safetensors};
use bpo_model::{ModelType, Transformer};

use crate::config::LoraConfig;
use crate::error::AlgoError;

/// Adds adapters to `model` (base weights frozen; A ~ N(0, 1/rank) drawn from `seed`, B = 0, so the model's outputs are unchanged).
pub fn apply_lora(
    model: Transformer,
    config: &LoraConfig,
    seed: u64,
) -> Result<Transformer, AlgoError> {
    let group = check_targets(&model, config)?.group;
    let device = model.device();
    Ok(bpo_model::seed::seeded_init(&device, seed, || {
        model.apply_lora(Lora::new(config.rank, config.alpha).set_param_group(group))
    }))
}

/// What `lora.targets` select in a model.
pub struct Targets {
    /// The parameter group of the selected weights (what `apply_lora` adapts).
    pub group: ParamGroup,
    /// The paths of the selected weights, sorted.
    pub weights: Vec<String>,
    /// Targets that select nothing in this model (e.g. `gate` on GPT-2, whose MLP has none).
    pub unmatched: Vec<String>,
}

/// Checks `config` against `model` without changing it, so that a run can refuse bad targets
/// before it parses data or runs a model: the targets together must select at least one
/// weight, and each selected weight must be one PEFT can name (a block's linear layer or
/// `lm_head`), or the adapters could not be written.
pub fn check_targets(model: &Transformer, config: &LoraConfig) -> Result<Targets, AlgoError> {
    config.validate()?;
    let regexes = |patterns: Vec<String>| {
        ParamGroup::from_any_regexes(patterns)
            .map_err(|e| AlgoError::Config(format!("lora.targets: {e:?}")))
    };
    // The targets' groups match paths only (regexes), so every matrix is asked under one id.
    let id = ParamId::new();
    let matrices: Vec<String> = params::shapes(model)
        .into_iter()
        .filter(|(_, shape)| shape.len() == 2)
        .map(|(path, _)| path)
        .collect();
    let selects = |group: &ParamGroup| -> Vec<String> {
        let matched = matrices
            .iter()
            .filter(|path| group.matches(&id, Some(path)));
        matched.cloned().collect()
    };
    let mut unmatched = Vec::new();
    for (target, pattern) in config.targets.iter().zip(config.patterns()) {
        if selects(&regexes(vec![pattern])?).is_empty() {
            unmatched.push(target.clone());
        }
    }
    let group = regexes(config.patterns())?;
    let weights = selects(&group);
    if weights.is_empty() {
        let tied = if model.config.tie_word_embeddings && unmatched.iter().any(|t| t == "lm_head") {
            " (this model ties its output head to the token embedding: it has no separate \
             `lm_head` weight)"
        } else {
            ""
        };
        return Err(AlgoError::Config(format!(
            "lora.targets {:?} matched no weight of this model{tied}",
            config.targets
        )));
    }
    let arch = Arch::of(model.config.model_type);
    if let Some(path) = weights.iter().find(|p| arch.peft_module(p).is_none()) {
        return Err(AlgoError::Config(format!(
            "lora.targets {:?} select `{path}`, which has no PEFT LoRA layer of this layout: \
             adapt the blocks' linear layers (q k v o gate up down) or `lm_head`",
            config.targets
        )));
    }
    Ok(Targets {
        group,
        weights,
        unmatched,
    })
}

/// One adapter: the adapted weight's module path and its factors in Burn's layout
/// (`a`: `[d_in, rank]`, `b`: `[rank, d_out]`).
#[derive(Debug, Clone, PartialEq)]
pub struct Adapter {
    /// Path of the adapted weight, e.g. `layers.3.attn.q.weight`.
    pub path: String,
    /// Down projection.
    pub a: HostTensor,
    /// Up projection.
    pub b: HostTensor,
}

#[derive(Default)]
struct CollectAdapters {
    path: ModulePath,
    found: Vec<(String, HostTensor)>,
}

impl ModuleVisitor for CollectAdapters {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.enter(name);
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.exit();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let path = self.path.joined();
        if path.contains(".lora.") {
            let value = param.val();
            self.found.push((
                path,
                HostTensor::new(value.dims().to_vec(), to_f32_vec(value)),
            ));
        }
    }
}

/// The adapters of a model, in module order.
pub fn adapters(model: &Transformer) -> Vec<Adapter> {
    let mut v = CollectAdapters::default();
    model.visit(&mut v);
    let mut out: Vec<Adapter> = Vec::new();
    for (path, tensor) in v.found {
        let Some((weight, factor)) = path.rsplit_once(".lora.") else {
            continue;
        };
        match out.last_mut() {
            Some(last) if last.path == weight && factor == "b" => last.b = tensor,
            _ => out.push(Adapter {
                path: weight.to_owned(),
                a: tensor,
                b: HostTensor::new(vec![0], vec![]),
            }),
        }
    }
    out
}

/// PEFT's module name of an adapted weight (from the architecture's table): e.g.
/// `layers.3.attn.q.weight` -> `base_model.model.model.layers.3.self_attn.q_proj`.
fn peft_module(path: &str, model_type: ModelType) -> Result<String, AlgoError> {
    Arch::of(model_type).peft_module(path).ok_or_else(|| {
        AlgoError::Config(format!(
            "the adapter on `{path}` has no PEFT name (lora.targets are checked when a run \
             starts; this model was adapted some other way)"
        ))
    })
}

/// Writes the adapters of `model` to `dir` in PEFT's layout: `adapter_model.safetensors`
/// (`lora_A.weight` `[rank, in]`, `lora_B.weight` `[out, rank]`) and `adapter_config.json`.
/// (GPT-2's q/k/v adapters keep separate names, as PEFT's fused `c_attn` has no equivalent.)
pub fn save_adapters(
    model: &Transformer,
    config: &LoraConfig,
    base_model: &str,
    dir: &Path,
) -> Result<(), AlgoError> {
    std::fs::create_dir_all(dir).map_err(|e| AlgoError::io(dir, e))?;
    let mut map = TensorMap::new(dir.display().to_string());
    let mut modules = std::collections::BTreeSet::new();
    for adapter in adapters(model) {
        let name = peft_module(&adapter.path, model.config.model_type)?;
        modules.insert(name.rsplit('.').next().unwrap_or_default().to_owned());
        map.insert(format!("{name}.lora_A.weight"), adapter.a.transposed());
        map.insert(format!("{name}.lora_B.weight"), adapter.b.transposed());
    }
    safetensors::write(&dir.join("adapter_model.safetensors"), &map)?;
    let peft = serde_json::json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model,
        "r": config.rank,
        "lora_alpha": config.alpha,
        "lora_dropout": config.dropout,
        "target_modules": modules,
        "bias": "none",
        "fan_in_fan_out": false,
        "use_rslora": false,
        "layers_to_transform": config.layers,
    });
    let text = serde_json::to_string_pretty(&peft).expect("json");
    write_atomic(&dir.join("adapter_config.json"), text.as_bytes())?;
    Ok(())
}

/// Replaces the adapters of `model` (already adapted with the same targets and rank) by those
/// written with [`save_adapters`] in `dir`: e.g. to start from an SFT adapter.
pub fn load_adapters(model: Transformer, dir: &Path) -> Result<Transformer, AlgoError> {
    let file = dir.join("adapter_model.safetensors");
    let mut map = TensorMap::new(file.display().to_string());
    safetensors::read_into(&file, &mut map)?;
    let mut values = std::collections::HashMap::new();
    for adapter in adapters(&model) {
        let name = peft_module(&adapter.path, model.config.model_type)?;
        let (a, b) = (&adapter.a.shape, &adapter.b.shape);
        let lora_a = map.take(&format!("{name}.lora_A.weight"), &[a[1], a[0]])?;
        let lora_b = map.take(&format!("{name}.lora_B.weight"), &[b[1], b[0]])?;
        values.insert(format!("{}.lora.a", adapter.path), lora_a.transposed());
        values.insert(format!("{}.lora.b", adapter.path), lora_b.transposed());
    }
    Ok(model.map(&mut SetLora {
        path: ModulePath::default(),
        values,
    }))
}

/// Sets LoRA factors by path.
struct SetLora {
    path: ModulePath,
    values: std::collections::HashMap<String, HostTensor>,
}

impl bpo_model::burn::module::ModuleMapper for SetLora {
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
            let data = bpo_model::burn::tensor::TensorData::new(host.data, old.shape());
            // Keep the factor trainable (a fresh tensor would not track gradients).
            Tensor::from_data(data, &old.device()).set_require_grad(old.is_require_grad())
        })
    }
}

/// The model with every adapter merged into its weight (`W + alpha / rank * A B`), no autodiff.
pub fn merged(model: &Transformer) -> Transformer {
    model.valid().materialize()
}
