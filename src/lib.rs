//! `bpo`: direct alignment from preferences (DPO, IPO, SLiC), offline, online and with the
//! behavior-model reference (BPO), in pure Rust on Burn. This crate re-exports the workspace
//! crates; see each for details.

pub use bpo_algos as algos;
pub use bpo_data as data;
pub use bpo_model as model;
