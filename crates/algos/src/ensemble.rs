//! Merging the LoRA ensemble of BPO's authors (K adapters on one frozen base, see
//! [`crate::trainer::Policy`]) into one transformer.

use bpo_model::Transformer;
use bpo_model::burn::module::Module;

use crate::lora::merged;
use crate::optim::{blend_into, combine_into};
use crate::trainer::Merge;
pub use crate::trainer::MergeRule;

impl Merge for Transformer {
    fn merge(members: &[&Self], rule: MergeRule) -> Self {
        merge(members, rule)
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
