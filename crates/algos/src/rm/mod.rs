//! Reward models (`bpo rm train`): a transformer with a scalar head in transformers'
//! sequence-classification format, trained on a pair file with the Bradley-Terry loss through
//! the one trainer, and usable as an annotator
//! ([`crate::annotate::AnnotatorConfig::RewardModel`]) like any such model of the Hub.

mod model;
mod train;

pub use model::{RewardInput, RewardModel};
pub use train::{RewardModelConfig, RewardModelOutcome, accuracy_on, train_reward_model};
