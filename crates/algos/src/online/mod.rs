//! Online DAP and BPO (`bpo online`): an annotation budget of N pairs spent in F collection
//! phases. Each phase, the current (merged) policy becomes the behavior model, samples k
//! responses per fresh prompt in one batched KV-cached generation call (recording its
//! log-probs), the annotator labels them, and every member of the policy ensemble takes one
//! step per batch of the phase's pairs against the configured reference: `initial` (online
//! DAP), `behavior` (BPO, free: the log-probs came with the samples), `ema` or `none`.
//!
//! - [`config`]: what a run is asked to do;
//! - [`prompts`]: where prompts come from;
//! - [`collect`]: one phase's sampling and annotation;
//! - [`run`]: the loop over phases; `train_phase`: one phase (collect, reference, train);
//! - [`phase`]: what each phase reports.

pub mod collect;
pub mod config;
pub mod phase;
pub mod prompts;
pub mod run;
mod train_phase;

pub use collect::{PhaseCollection, collect_pairs, tokenized_from_meta};
pub use config::{EnsembleConfig, OnlineConfig, OnlineRunConfig, OnlineSampling};
pub use phase::{Drift, PhaseRecord};
pub use prompts::{load_prompts, prompt_text, sample_prompts};
pub use run::{OnlineOutcome, train_online};
