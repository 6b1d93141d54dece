//! The trained policy: one model and its optimizer, or an ensemble of K (the BPO authors' LoRA
//! ensemble stabiliser: K adapters on one frozen base, trained on the same batches with their
//! own optimizers; the model that samples, serves as the reference and is evaluated is their
//! merge).

use bpo_model::burn::module::Module;
use bpo_model::burn::optim::ModuleOptimizer;
use serde::{Deserialize, Serialize};

use crate::config::OptimConfig;
use crate::optim::adamw;

/// How the K members of an ensemble become one model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MergeRule {
    /// The average of the members' deltas: `W + (s / K) * sum_i A_i B_i` (Burn's `x A B`
    /// layout; `s = alpha / rank`). The default: the uniform mixture in weight space.
    #[default]
    DeltaAverage,
    /// Factor-wise, as the authors' tooling merged: `W + (s / K) * (sum_i A_i)(sum_j B_j)`,
    /// cross terms included. Offered for fidelity to the paper's runs.
    FactorWise,
}

/// Models whose ensembles merge into one autodiff-free model.
pub trait Merge: Module {
    /// Merges `members` (the same structure) by `rule`; one member merges to itself with its
    /// adapters folded in and without autodiff.
    fn merge(members: &[&Self], rule: MergeRule) -> Self;
}

/// One member: a model (LoRA adapters on a frozen base, or a fully trained model) and its own
/// AdamW.
pub struct Member<M> {
    /// The model, with autodiff.
    pub model: M,
    /// Its optimizer.
    pub optimizer: ModuleOptimizer,
}

/// K >= 1 members and how they merge.
pub struct Policy<M> {
    /// The members.
    pub members: Vec<Member<M>>,
    /// The merge rule (irrelevant when K = 1).
    pub rule: MergeRule,
}

impl<M> Policy<M> {
    /// One model with a fresh AdamW.
    pub fn single(model: M, optim: &OptimConfig) -> Self {
        Self::ensemble(vec![model], optim, MergeRule::default())
    }

    /// K models, each with a fresh AdamW.
    pub fn ensemble(models: Vec<M>, optim: &OptimConfig, rule: MergeRule) -> Self {
        Policy {
            members: models
                .into_iter()
                .map(|model| Member {
                    model,
                    optimizer: adamw(optim),
                })
                .collect(),
            rule,
        }
    }

    /// The first member's model (the model itself when K = 1).
    pub fn first(&self) -> &M {
        &self.members[0].model
    }
}

impl<M: Merge> Policy<M> {
    /// The merged model (adapters folded into the weights, no autodiff).
    pub fn merged(&self) -> M {
        let models: Vec<&M> = self.members.iter().map(|m| &m.model).collect();
        M::merge(&models, self.rule)
    }
}
