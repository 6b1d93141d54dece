//! The LoRA ensemble stabiliser of BPO's authors: K adapters on one frozen base, trained on the
//! same batches with their own optimizers; the model that samples, serves as the BPO reference
//! and is evaluated is their merge.

use bpo_model::Transformer;
use bpo_model::burn::module::Module;
use bpo_model::burn::optim::ModuleOptimizer;
use serde::{Deserialize, Serialize};

use crate::lora::merged;
use crate::optim::{blend_into, combine_into};

/// How the K adapters become one model.
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

/// One member: a policy (LoRA adapters on the shared frozen base, or a fully trained model
/// when K = 1) and its own AdamW.
pub struct Member {
    /// The policy, with autodiff.
    pub model: Transformer,
    /// Its optimizer.
    pub optimizer: ModuleOptimizer,
}

/// The members and how they merge.
pub struct Ensemble {
    /// K >= 1 members.
    pub members: Vec<Member>,
    /// The merge rule (irrelevant when K = 1).
    pub rule: MergeRule,
}

impl Ensemble {
    /// The merged model (adapters folded into the weights, no autodiff).
    pub fn merged(&self) -> Transformer {
        let models: Vec<&Transformer> = self.members.iter().map(|m| &m.model).collect();
        merge(&models, self.rule)
    }
}

/// Merges `members` (LoRA models with the same base and targets) by `rule`. One member merges
/// to itself.
pub fn merge(members: &[&Transformer], rule: MergeRule) -> Transformer {
    assert!(!members.is_empty(), "an ensemble has at least one member");
    if members.len() == 1 {
        return merged(members[0]);
    }
    match rule {
        MergeRule::DeltaAverage => {
            // The running mean of the merged members is W + s * mean_i(A_i B_i).
            let mut mean = merged(members[0]);
            for (k, member) in members.iter().enumerate().skip(1) {
                mean = blend_into(mean, &merged(member), k as f64 / (k + 1) as f64);
            }
            mean
        }
        MergeRule::FactorWise => {
            // A -> mean_i A_i, B -> sum_j B_j, so that s * A B = (s / K)(sum A)(sum B); the
            // frozen base is the same in every member, so its mean is itself.
            let k = members.len() as f64;
            let valid: Vec<Transformer> = members.iter().map(|m| m.valid()).collect();
            let combined = combine_into(valid[0].clone(), &valid, |path| {
                if path.ends_with(".lora.b") {
                    1.0
                } else {
                    1.0 / k
                }
            });
            combined.materialize()
        }
    }
}
