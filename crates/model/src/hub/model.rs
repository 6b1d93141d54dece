//! Model snapshots: a Hub model id resolved to a local directory holding everything a model
//! needs (config, tokenizer, safetensors weights, every shard of an index). When the Hub
//! cannot be reached, a complete cached snapshot is used with a note, as transformers does;
//! pickle weights are refused, never unpickled.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Failure, HubId, HubRepo, HubSettings, download_or_cached, hub_err};
use crate::error::ModelError;

/// The files a model directory must have besides the weights, each with what its absence means.
const REQUIRED_FILES: [(&str, &str); 2] = [
    (
        "config.json",
        "has no config.json: it is not a transformers model",
    ),
    (
        "tokenizer.json",
        "has no tokenizer.json (bpo reads fast tokenizers: save one with transformers' \
         `AutoTokenizer.save_pretrained`)",
    ),
];
/// The files of a model directory bpo reads when present.
const OPTIONAL_FILES: [&str; 4] = [
    "generation_config.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
];
const SINGLE_WEIGHTS: &str = "model.safetensors";
const WEIGHT_INDEX: &str = "model.safetensors.index.json";

/// The local snapshot directory of `id` holding a loadable model: from the cache when it is
/// there (offline, or when the Hub cannot be reached), downloading what is missing otherwise.
pub fn snapshot(id: &HubId, settings: &HubSettings) -> Result<PathBuf, ModelError> {
    download_or_cached(
        id,
        settings,
        &format!("huggingface-cli download {}", id.repo),
        || {
            let dir = cached_snapshot(id, &settings.cache)?;
            let described = format!("snapshot {}", dir.display());
            Ok((dir, described))
        },
        || download_snapshot(id, settings),
    )
}

/// The cached snapshot of `id` when it holds every file a model needs; else what it lacks.
fn cached_snapshot(id: &HubId, cache: &Path) -> Result<PathBuf, String> {
    let commit = id
        .cached_commit(cache)
        .ok_or_else(|| format!("the revision `{}` of {}", id.revision, id.repo))?;
    let dir = id.snapshot_dir(cache, &commit);
    let missing: Vec<String> = required_files(&dir)
        .into_iter()
        .filter(|f| !dir.join(f).is_file())
        .collect();
    if missing.is_empty() {
        Ok(dir)
    } else {
        Err(format!("{} in snapshot {commit}", missing.join(", ")))
    }
}

/// The files a snapshot directory must hold: config, tokenizer and every weight file.
fn required_files(dir: &Path) -> Vec<String> {
    let mut files: Vec<String> = REQUIRED_FILES.iter().map(|(f, _)| f.to_string()).collect();
    if dir.join(SINGLE_WEIGHTS).is_file() {
        files.push(SINGLE_WEIGHTS.into());
    } else {
        match shard_names(&dir.join(WEIGHT_INDEX)) {
            Ok(shards) => files.extend(shards),
            Err(_) => files.push(SINGLE_WEIGHTS.into()),
        }
    }
    files
}

/// The shard files a `model.safetensors.index.json` names.
fn shard_names(index: &Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(index).map_err(|e| e.to_string())?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or("no `weight_map`")?;
    let mut shards: Vec<String> = map
        .values()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    shards.sort();
    shards.dedup();
    Ok(shards)
}

/// Asks the Hub for the revision's commit and files, downloads those missing from the cache.
fn download_snapshot(id: &HubId, settings: &HubSettings) -> Result<PathBuf, Failure> {
    let repo = HubRepo::new(id, settings).map_err(Failure::Other)?;
    let listing = repo.list()?;
    let listed = |name: &str| listing.files.iter().any(|f| f == name);
    let dir = id.snapshot_dir(&settings.cache, &listing.commit);
    let fetch = |name: &str| repo.fetch(&listing.commit, name).map_err(Failure::Other);
    for (name, missing) in REQUIRED_FILES {
        if !listed(name) {
            return Err(Failure::Other(hub_err(id, missing)));
        }
        fetch(name)?;
    }
    for name in OPTIONAL_FILES.into_iter().filter(|f| listed(f)) {
        fetch(name)?;
    }
    if listed(SINGLE_WEIGHTS) {
        fetch(SINGLE_WEIGHTS)?;
    } else if listed(WEIGHT_INDEX) {
        let index = fetch(WEIGHT_INDEX)?;
        let shards = shard_names(&index)
            .map_err(|e| Failure::Other(hub_err(id, format!("{WEIGHT_INDEX}: {e}"))))?;
        for shard in shards {
            if shard.contains('/') || !listed(&shard) {
                let why = format!("{WEIGHT_INDEX} names `{shard}`, which the repository lacks");
                return Err(Failure::Other(hub_err(id, why)));
            }
            fetch(&shard)?;
        }
    } else {
        let pickled = listing
            .files
            .iter()
            .any(|f| f.ends_with(".bin") || f.ends_with(".pt") || f.ends_with(".pth"));
        let why = if pickled {
            "has PyTorch pickle weights only (.bin), which bpo never unpickles: convert them to \
             safetensors (transformers: `model.save_pretrained(dir, safe_serialization=True)`)"
        } else {
            "has no safetensors weights (model.safetensors or model.safetensors.index.json)"
        };
        return Err(Failure::Other(hub_err(id, why)));
    }
    repo.pin(&listing.commit).map_err(Failure::Other)?;
    Ok(dir)
}

/// The Hub repository and commit of a model loaded from a snapshot of the Hugging Face cache:
/// what a run records so that it can be reproduced, and resumed only on the same weights.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HubRevision {
    /// `ORG/NAME`.
    pub repo: String,
    /// The commit hash.
    pub commit: String,
}

impl HubRevision {
    /// The revision a model directory holds when it is a snapshot of the cache
    /// (`.../models--ORG--NAME/snapshots/COMMIT`), as Hub ids resolve to; none otherwise.
    pub fn of_snapshot(dir: &Path) -> Option<HubRevision> {
        let commit = dir.file_name()?.to_str()?;
        let snapshots = dir.parent()?;
        if snapshots.file_name()? != "snapshots" {
            return None;
        }
        let folder = snapshots.parent()?.file_name()?.to_str()?;
        let (org, name) = folder.strip_prefix("models--")?.split_once("--")?;
        Some(HubRevision {
            repo: format!("{org}/{name}"),
            commit: commit.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cache_snapshot_names_its_repository_and_commit() {
        let dir = Path::new("/c/hub/models--Qwen--Qwen3-0.6B/snapshots/0123abcd");
        assert_eq!(
            HubRevision::of_snapshot(dir),
            Some(HubRevision {
                repo: "Qwen/Qwen3-0.6B".into(),
                commit: "0123abcd".into()
            })
        );
        assert_eq!(HubRevision::of_snapshot(Path::new("/models/qwen3")), None);
        let dataset = Path::new("/c/hub/datasets--a--b/snapshots/0123abcd");
        assert_eq!(HubRevision::of_snapshot(dataset), None);
    }
}
