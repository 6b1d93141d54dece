//! Reward models (`bpo rm train`): a transformer with a scalar head, trained on a pair file
//! with the Bradley-Terry loss through the one trainer, and usable as an annotator
//! ([`crate::annotate::AnnotatorConfig::RewardModel`]).

mod model;
mod train;

pub use model::RewardModel;
pub use train::{RewardModelConfig, RewardModelOutcome, accuracy_on, train_reward_model};
