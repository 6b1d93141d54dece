//! A run's directory: `config.json`, `metrics.jsonl` (one line per optimizer step) and
//! `checkpoints/step-N/` (every member's weights and optimizer, the objective's state model,
//! the position to continue from and the fingerprints of the data files), for any trained
//! model type.

use std::io::Read;
use std::path::{Path, PathBuf};

use bpo_model::burn::module::Module;
use bpo_model::fsutil::write_atomic;
use bpo_model::hub::HubRevision;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::checkpoint;
use crate::error::AlgoError;
use crate::reference::hex;
use crate::trainer::policy::{Member, Policy};

/// Checkpoint file of the objective's state model (the EMA reference).
const STATE_MODEL: &str = "reference.bpk";

fn member_file(i: usize) -> String {
    format!("member-{i}.bpk")
}

fn optimizer_file(i: usize) -> String {
    format!("optimizer-{i}.bpk")
}

/// What, besides tensors, a run needs to continue exactly where it stopped. Data order and
/// initialisation derive from the seed, so steps and `position` are the whole data cursor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunState<P> {
    /// Optimizer steps done.
    pub step: usize,
    /// Steps of the learning-rate schedule.
    pub total_steps: usize,
    /// The run's configuration, as JSON; resuming checks it is unchanged.
    pub config: serde_json::Value,
    /// Where the caller stands (online: the phase and its collection; offline: nothing).
    pub position: P,
    /// The data files the run read, as they were when it started; resuming checks them
    /// (checkpoints written before bpo recorded them have none).
    #[serde(default)]
    pub data: Vec<DataFile>,
    /// The Hub commit of the model the run started from, when it came from the Hub cache;
    /// resuming checks it.
    #[serde(default)]
    pub model: Option<HubRevision>,
}

/// A data file a run reads, fingerprinted by size and SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataFile {
    /// What the file is to the run: its config field (`data.train`, `prompts`).
    pub field: String,
    /// The file.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// SHA-256 of its content, hex.
    pub sha256: String,
}

impl DataFile {
    /// Fingerprints what config field `field` names: a file, or the files of a directory of
    /// Parquet shards or of a Hub dataset split (their contents in reading order), read in
    /// blocks: any size.
    pub fn read(field: &str, path: &Path) -> Result<Self, AlgoError> {
        let mut hasher = Sha256::new();
        let mut block = vec![0u8; 1 << 20];
        let mut bytes = 0u64;
        for file in bpo_data::resolve_files(path)? {
            let io = |e| AlgoError::io(&file, e);
            let mut reader = std::fs::File::open(&file).map_err(io)?;
            loop {
                let n = reader.read(&mut block).map_err(io)?;
                if n == 0 {
                    break;
                }
                hasher.update(&block[..n]);
                bytes += n as u64;
            }
        }
        let sha256 = hex(&hasher.finalize());
        Ok(DataFile {
            field: field.to_owned(),
            path: path.to_path_buf(),
            bytes,
            sha256,
        })
    }

    /// Why resuming on `self` (the file now) is wrong, if the run started on `then`.
    fn changed_since(&self, then: &DataFile) -> Option<String> {
        (self.bytes != then.bytes || self.sha256 != then.sha256).then(|| {
            format!(
                "{} `{}` changed since the run started (then {} bytes, sha256 {}; now {} bytes, \
                 sha256 {}): resuming needs the data the run started on; to train on the new \
                 file, start a new run (another run.out)",
                self.field,
                self.path.display(),
                then.bytes,
                then.sha256.get(..12).unwrap_or(&then.sha256),
                self.bytes,
                &self.sha256[..12],
            )
        })
    }
}

/// The output directory of a run and its configuration.
pub struct RunDir {
    /// The directory.
    pub out: PathBuf,
    /// The configuration the run started with.
    pub config: serde_json::Value,
    /// Checkpoints kept (oldest removed first).
    pub keep_checkpoints: usize,
    /// The data files the run reads (each with its config field), fingerprinted now.
    pub data: Vec<DataFile>,
    /// The Hub commit of the model, when it was loaded from the Hub cache (set by
    /// [`crate::trainer::load_for_training`]).
    pub model: Option<HubRevision>,
}

impl RunDir {
    /// Creates `out` (if needed) for a run of `config` that reads the data files `data`
    /// (config field, path), which are fingerprinted here: a missing file is the first error.
    pub fn create(
        out: &Path,
        config: &impl Serialize,
        keep_checkpoints: usize,
        data: &[(&str, &Path)],
    ) -> Result<Self, AlgoError> {
        let data = data
            .iter()
            .map(|(field, path)| DataFile::read(field, path))
            .collect::<Result<_, _>>()?;
        std::fs::create_dir_all(out).map_err(|e| AlgoError::io(out, e))?;
        Ok(RunDir {
            out: out.to_path_buf(),
            config: serde_json::to_value(config).expect("json"),
            keep_checkpoints,
            data,
            model: None,
        })
    }

    /// A file in the run directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.out.join(name)
    }

    /// Writes `config.json` of a fresh run, and `model.json` (the Hub repository and commit)
    /// when the model came from the Hub cache.
    pub fn write_config(&self) -> Result<(), AlgoError> {
        let text = serde_json::to_string_pretty(&self.config).expect("json");
        write_atomic(&self.path("config.json"), text.as_bytes())?;
        if let Some(model) = &self.model {
            let text = serde_json::to_string_pretty(model).expect("json");
            write_atomic(&self.path("model.json"), text.as_bytes())?;
        }
        Ok(())
    }

    /// The checkpoint `path` names (a checkpoint or the run's latest) and its state, checked
    /// against this run's configuration and data files. Temporary directories of interrupted
    /// checkpoint writes are removed.
    pub fn read_checkpoint<P: DeserializeOwned>(
        &self,
        path: &Path,
    ) -> Result<(PathBuf, RunState<P>), AlgoError> {
        checkpoint::remove_stale(&self.out);
        let dir = checkpoint::resolve(path)?;
        let state: RunState<P> = checkpoint::load_state(&dir)?;
        if state.config != self.config {
            return Err(AlgoError::Checkpoint {
                path: dir,
                message: "the configuration differs from the one the run started with".into(),
            });
        }
        for now in &self.data {
            let then = state.data.iter().find(|d| d.field == now.field);
            if let Some(message) = then.and_then(|then| now.changed_since(then)) {
                return Err(AlgoError::Checkpoint { path: dir, message });
            }
        }
        if let (Some(then), Some(now)) = (&state.model, &self.model)
            && then != now
        {
            let message = format!(
                "the model {} is at commit {} now; the run started from commit {}, and its \
                 checkpoints were trained on those weights: start a new run (another run.out), \
                 with the model pinned as {}@{} to repeat this one (pin a revision for runs you \
                 may resume)",
                now.repo, now.commit, then.commit, then.repo, then.commit
            );
            return Err(AlgoError::Checkpoint { path: dir, message });
        }
        Ok((dir, state))
    }

    /// Writes a checkpoint of `policy` (and the objective's `state_model`) at `state`.
    pub fn save<M: Module, P: Serialize>(
        &self,
        state: &RunState<P>,
        policy: &Policy<M>,
        state_model: Option<&M>,
    ) -> Result<PathBuf, AlgoError> {
        let mut models: Vec<(String, &M)> = policy
            .members
            .iter()
            .enumerate()
            .map(|(i, m)| (member_file(i), &m.model))
            .collect();
        models.extend(state_model.map(|m| (STATE_MODEL.to_owned(), m)));
        let optimizers: Vec<_> = policy
            .members
            .iter()
            .enumerate()
            .map(|(i, m)| (optimizer_file(i), &m.optimizer))
            .collect();
        checkpoint::save(
            &self.out,
            state.step,
            state,
            &models,
            &optimizers,
            self.keep_checkpoints,
        )
    }

    /// Loads the checkpoint in `dir` into `policy` and `state_model`.
    pub fn load<M: Module>(
        dir: &Path,
        policy: &mut Policy<M>,
        state_model: Option<&mut M>,
    ) -> Result<(), AlgoError> {
        let members = std::mem::take(&mut policy.members);
        policy.members = members
            .into_iter()
            .enumerate()
            .map(|(i, m)| {
                Ok(Member {
                    model: checkpoint::load_model(dir, m.model, &member_file(i))?,
                    optimizer: checkpoint::load_optimizer(dir, m.optimizer, &optimizer_file(i))?,
                })
            })
            .collect::<Result<_, AlgoError>>()?;
        if let Some(model) = state_model {
            *model = checkpoint::load_model(dir, model.clone(), STATE_MODEL)?;
        }
        Ok(())
    }
}
