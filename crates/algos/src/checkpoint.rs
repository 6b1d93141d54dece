//! Checkpoint files: weights (adapters included) and optimizer states in Burn's burnpack format
//! and a JSON state, written atomically so a crash never leaves a half checkpoint. What a
//! checkpoint holds is decided by the trainer ([`crate::trainer::RunDir`]).

use std::path::{Path, PathBuf};

use bpo_model::ModelError;
use bpo_model::burn::module::Module;
use bpo_model::burn::optim::ModuleOptimizer;
use bpo_model::burn::store::RecordError;
use bpo_model::fsutil::{write_atomic, write_dir_atomic};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::AlgoError;

fn ckpt_err(path: &Path, message: impl Into<String>) -> AlgoError {
    AlgoError::Checkpoint {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// What a Burn record error says, without its type prefix.
fn record_message(e: &RecordError) -> &str {
    match e {
        RecordError::Io(message) | RecordError::Validation(message) => message,
    }
}

fn record_err(path: &Path, e: &RecordError) -> AlgoError {
    ckpt_err(path, record_message(e))
}

/// The directory of the checkpoint after `step` steps.
pub fn checkpoint_dir(out: &Path, step: usize) -> PathBuf {
    out.join("checkpoints").join(format!("step-{step:06}"))
}

/// Writes the checkpoint after `step` steps atomically: `state` as `state.json`, each model and
/// optimizer under its file name; then removes the oldest checkpoints beyond `keep`.
pub fn save<M: Module>(
    out: &Path,
    step: usize,
    state: &impl Serialize,
    models: &[(String, &M)],
    optimizers: &[(String, &ModuleOptimizer)],
    keep: usize,
) -> Result<PathBuf, AlgoError> {
    let dir = checkpoint_dir(out, step);
    write_dir_atomic(&dir, |tmp| {
        // Errors name the checkpoint the user will look for, not the temporary directory.
        let io = |file: &str, e: RecordError| {
            ModelError::Input(format!(
                "writing checkpoint {}: {}",
                dir.join(file).display(),
                record_message(&e)
            ))
        };
        for (file, model) in models {
            (*model)
                .clone()
                .save_file(tmp.join(file))
                .map_err(|e| io(file, e))?;
        }
        for (file, optimizer) in optimizers {
            optimizer.save(tmp.join(file)).map_err(|e| io(file, e))?;
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

/// Removes the hidden temporary directories (`.step-N.tmp-PID-n`, `.step-N.old-PID-n`) that a
/// process killed while writing a checkpoint leaves in `<out>/checkpoints`; returns how many.
pub fn remove_stale(out: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(out.join("checkpoints")) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(".step-"))
        })
        .filter(|p| std::fs::remove_dir_all(p).is_ok())
        .count()
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

/// Loads the weights saved under `file` into `model` (same structure, adapters included).
pub fn load_model<M: Module>(dir: &Path, model: M, file: &str) -> Result<M, AlgoError> {
    model
        .try_load_file(dir.join(file))
        .map_err(|e| record_err(&dir.join(file), &e))
}

/// Loads the optimizer state saved under `file`.
pub fn load_optimizer(
    dir: &Path,
    optimizer: ModuleOptimizer,
    file: &str,
) -> Result<ModuleOptimizer, AlgoError> {
    let path = dir.join(file);
    optimizer.load(&path).map_err(|e| record_err(&path, &e))
}
