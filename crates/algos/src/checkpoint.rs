//! Checkpoints: weights (adapters included) and optimizer state in Burn's burnpack format, the
//! trainer state as JSON, written atomically so a crash never leaves a half checkpoint.

use std::path::{Path, PathBuf};

use bpo_model::ModelError;
use bpo_model::Transformer;
use bpo_model::burn::module::Module;
use bpo_model::burn::optim::ModuleOptimizer;
use bpo_model::fsutil::{write_atomic, write_dir_atomic};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::AlgoError;

/// What, besides tensors, a run needs to continue exactly where it stopped. Data order and
/// LoRA initialisation derive from the seed, so the step is the whole data cursor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    /// Optimizer steps done.
    pub step: usize,
    /// Steps the run will make in total.
    pub total_steps: usize,
    /// The run's configuration, as JSON; resuming checks it is unchanged.
    pub config: serde_json::Value,
}

fn ckpt_err(path: &Path, message: impl Into<String>) -> AlgoError {
    AlgoError::Checkpoint {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

fn record_err(path: &Path, e: impl std::fmt::Debug) -> AlgoError {
    ckpt_err(path, format!("{e:?}"))
}

/// The directory of the checkpoint after `step` steps.
pub fn checkpoint_dir(out: &Path, step: usize) -> PathBuf {
    out.join("checkpoints").join(format!("step-{step:06}"))
}

/// Writes the checkpoint after `step` steps atomically: `state` as `state.json`, each model and
/// optimizer under its file name; then removes the oldest checkpoints beyond `keep`.
pub fn save(
    out: &Path,
    step: usize,
    state: &impl Serialize,
    models: &[(&str, &Transformer)],
    optimizers: &[(&str, &ModuleOptimizer)],
    keep: usize,
) -> Result<PathBuf, AlgoError> {
    let dir = checkpoint_dir(out, step);
    write_dir_atomic(&dir, |tmp| {
        let io = |e: String| ModelError::Input(format!("writing checkpoint: {e}"));
        for (file, model) in models {
            (*model)
                .clone()
                .save_file(tmp.join(file))
                .map_err(|e| io(format!("{e:?}")))?;
        }
        for (file, optimizer) in optimizers {
            optimizer
                .save(tmp.join(file))
                .map_err(|e| io(format!("{e:?}")))?;
        }
        let text = serde_json::to_string_pretty(state).expect("json");
        write_atomic(&tmp.join("state.json"), text.as_bytes())
    })?;
    let mut all = list(out);
    while all.len() > keep.max(1) {
        let oldest = all.remove(0);
        let _ = std::fs::remove_dir_all(oldest);
    }
    Ok(dir)
}

/// Checkpoint directories of a run, oldest first.
pub fn list(out: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(out.join("checkpoints"))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("step-"))
                        && p.join("state.json").exists()
                })
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    dirs
}

/// A checkpoint directory, or the latest checkpoint of a run directory.
pub fn resolve(path: &Path) -> Result<PathBuf, AlgoError> {
    if path.join("state.json").exists() {
        return Ok(path.to_path_buf());
    }
    list(path).pop().ok_or_else(|| {
        ckpt_err(
            path,
            "neither a checkpoint nor a run directory with checkpoints",
        )
    })
}

/// Reads the state of a checkpoint.
pub fn load_state<T: DeserializeOwned>(dir: &Path) -> Result<T, AlgoError> {
    let path = dir.join("state.json");
    let text = std::fs::read_to_string(&path).map_err(|e| AlgoError::io(&path, e))?;
    serde_json::from_str(&text).map_err(|e| ckpt_err(dir, format!("state.json: {e}")))
}

/// Loads the checkpoint's weights into `policy` (same structure, adapters included).
pub fn load_model(dir: &Path, policy: Transformer, file: &str) -> Result<Transformer, AlgoError> {
    policy
        .try_load_file(dir.join(file))
        .map_err(|e| record_err(&dir.join(file), e))
}

/// Loads the optimizer state saved under `file`.
pub fn load_optimizer(
    dir: &Path,
    optimizer: ModuleOptimizer,
    file: &str,
) -> Result<ModuleOptimizer, AlgoError> {
    let path = dir.join(file);
    optimizer.load(&path).map_err(|e| record_err(&path, e))
}
