//! LoRA through Burn's built-in `apply_lora`: adapters on the weights whose module path matches
//! the configured targets, saved separately in PEFT's layout (`peft`), merged for export.

mod peft;

pub use peft::{load_adapters, save_adapters};

use bpo_model::Transformer;
use bpo_model::burn::module::{Lora, Module, ModuleVisitor, Param, ParamGroup, ParamId};
use bpo_model::burn::tensor::Tensor;
use bpo_model::host::to_f32_vec;
use bpo_model::weights::HostTensor;
use bpo_model::weights::params::{self, ModulePath};

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
    let arch = model.config.model_type.arch();
    if let Some(path) = weights.iter().find(|p| arch.peft_target(p).is_none()) {
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

/// The model with every adapter merged into its weight (`W + alpha / rank * A B`), no autodiff.
pub fn merged(model: &Transformer) -> Transformer {
    model.valid().materialize()
}
