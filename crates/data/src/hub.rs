//! Datasets on the Hugging Face Hub: `hf:ORG/NAME[/CONFIG][:SPLIT][@REVISION]` names the Parquet
//! files of one split (default `train`) of one config (default `default`, else the only one),
//! downloaded once into the cache `huggingface_hub` and `datasets` share, through the same
//! client, settings and errors as Hub models (`HF_HOME`, `HF_TOKEN`, `HF_ENDPOINT`,
//! `HF_HUB_OFFLINE`).
//!
//! A split's files are found as `datasets` finds them (see [`crate::layout`]). A dataset without
//! Parquet files on its revision (JSON, CSV, scripts) is read from the Parquet conversion the Hub
//! builds for every public dataset (the `refs/convert/parquet` branch) unless a revision was
//! named. A cached split is used only when every shard its file names promise is there.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use bpo_model::hub::{Failure, HubId, HubRepo, HubSettings, RepoKind, download_or_cached, hub_err};

use crate::error::DataError;
use crate::layout::{
    Splits, conversion_splits, files_under, missing_shards, repository_splits, select,
};

/// The prefix of a Hub dataset spec.
pub const PREFIX: &str = "hf:";
/// The split read when a spec names none.
pub const DEFAULT_SPLIT: &str = "train";
/// The branch holding the Hub's Parquet conversion of a dataset.
pub const PARQUET_BRANCH: &str = "refs/convert/parquet";

/// One split of a dataset on the Hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetSpec {
    /// The repository and revision (`main` when none is named).
    pub id: HubId,
    /// The config, when named.
    pub config: Option<String>,
    /// The split.
    pub split: String,
    /// Whether the spec named the revision (then no other branch is tried).
    pub pinned: bool,
}

impl DatasetSpec {
    /// Parses `hf:ORG/NAME[/CONFIG][:SPLIT][@REVISION]`: `Ok(None)` when `spec` does not start
    /// with `hf:`, an error naming the expected form when it does but is malformed.
    pub fn parse(spec: &str) -> Result<Option<DatasetSpec>, DataError> {
        let Some(rest) = spec.strip_prefix(PREFIX) else {
            return Ok(None);
        };
        let bad = || {
            DataError::Prepare(format!(
                "`{spec}`: a Hub dataset is hf:ORG/NAME[/CONFIG][:SPLIT][@REVISION], e.g. \
                 hf:trl-lib/ultrafeedback_binarized:test"
            ))
        };
        let (rest, revision) = match rest.split_once('@') {
            Some((rest, revision)) => (rest, Some(revision)),
            None => (rest, None),
        };
        let (path, split) = rest.split_once(':').unwrap_or((rest, DEFAULT_SPLIT));
        let mut parts = path.splitn(3, '/');
        let (org, name, config) = (parts.next(), parts.next(), parts.next());
        let name_ok = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                && !s.starts_with('.')
        };
        if !name_ok(split) || config.is_some_and(|c| !name_ok(c)) {
            return Err(bad());
        }
        let repo = format!("{}/{}", org.unwrap_or_default(), name.ok_or_else(bad)?);
        let id =
            HubId::new(RepoKind::Dataset, &repo, revision.unwrap_or("main")).ok_or_else(bad)?;
        Ok(Some(DatasetSpec {
            id,
            config: config.map(str::to_owned),
            split: split.to_owned(),
            pinned: revision.is_some(),
        }))
    }

    /// The revisions to look at, in order: the named one, or `main` then the conversion branch.
    fn revisions(&self) -> Vec<HubId> {
        let mut ids = vec![self.id.clone()];
        if !self.pinned {
            ids.push(self.id.at(PARQUET_BRANCH));
        }
        ids
    }

    /// The configs and splits of a revision's `files`.
    fn splits(id: &HubId, files: &[String]) -> Splits {
        if id.revision == PARQUET_BRANCH {
            conversion_splits(files)
        } else {
            repository_splits(files)
        }
    }

    fn select<'a>(&self, splits: &'a Splits) -> Result<&'a [String], String> {
        select(splits, self.config.as_deref(), &self.split)
    }
}

/// Specs resolved in this process: each is listed on the Hub once, so every reader of a run
/// (fingerprint, training, evaluation) sees the same commit.
static RESOLVED: Mutex<BTreeMap<String, Vec<PathBuf>>> = Mutex::new(BTreeMap::new());

/// The split's Parquet files in the cache, downloading what is missing (or, offline or with the
/// Hub unreachable, from the cache alone).
pub fn resolve(spec: &DatasetSpec, settings: &HubSettings) -> Result<Vec<PathBuf>, DataError> {
    let key = format!("{spec:?}");
    if let Some(files) = RESOLVED.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return Ok(files.clone());
    }
    let ids = spec.revisions();
    let fill = match spec.pinned {
        true => format!(
            "huggingface-cli download --repo-type dataset --revision {} {}",
            spec.id.revision, spec.id.repo
        ),
        false => format!(
            "huggingface-cli download --repo-type dataset {}",
            spec.id.repo
        ),
    };
    let files = download_or_cached(
        &spec.id,
        settings,
        &fill,
        || cached(spec, &ids, &settings.cache),
        || download(spec, &ids, settings),
    )?;
    RESOLVED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, files.clone());
    Ok(files)
}

/// Lists the revision (then the conversion branch, if the revision has no Parquet files) and
/// fetches the split's files.
fn download(
    spec: &DatasetSpec,
    ids: &[HubId],
    settings: &HubSettings,
) -> Result<Vec<PathBuf>, Failure> {
    for (i, id) in ids.iter().enumerate() {
        let repo = HubRepo::new(id, settings).map_err(Failure::Other)?;
        let listing = match repo.list() {
            // The conversion branch is a fallback: a dataset without one has no Parquet at all.
            Err(Failure::Missing(_)) if i > 0 => break,
            listing => listing?,
        };
        let splits = DatasetSpec::splits(id, &listing.files);
        match spec.select(&splits) {
            Ok(shards) => {
                let files = shards
                    .iter()
                    .map(|f| repo.fetch(&listing.commit, f))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(Failure::Other)?;
                repo.pin(&listing.commit).map_err(Failure::Other)?;
                return Ok(files);
            }
            Err(_) if splits.is_empty() => continue,
            Err(message) => return Err(Failure::Other(hub_err(id, message))),
        }
    }
    let branch = match spec.pinned {
        true => String::new(),
        false => format!(" nor on its `{PARQUET_BRANCH}` branch"),
    };
    let message = format!(
        "has no Parquet files on revision `{}`{branch}",
        spec.id.revision
    );
    Err(Failure::Other(hub_err(&spec.id, message)))
}

/// The split's files from a cached snapshot of the first revision in `ids` the cache has whole,
/// with how to name it; else what the cache lacks.
fn cached(
    spec: &DatasetSpec,
    ids: &[HubId],
    cache: &Path,
) -> Result<(Vec<PathBuf>, String), String> {
    let mut lacks = format!("split `{}` of dataset {}", spec.split, spec.id.repo);
    for id in ids {
        let Some(commit) = id.cached_commit(cache) else {
            continue;
        };
        let dir = id.snapshot_dir(cache, &commit);
        let splits = DatasetSpec::splits(id, &files_under(&dir));
        let Ok(shards) = spec.select(&splits) else {
            continue;
        };
        if let Some(missing) = missing_shards(shards) {
            lacks = format!("{lacks} whole (it holds {missing})");
            continue;
        }
        let described = format!("copy of {id} (commit {commit})");
        return Ok((shards.iter().map(|f| dir.join(f)).collect(), described));
    }
    Err(lacks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_specs_and_refuses_malformed_ones() {
        let spec = DatasetSpec::parse("hf:trl-lib/tldr").unwrap().unwrap();
        assert_eq!(
            (
                spec.id.repo.as_str(),
                spec.split.as_str(),
                spec.id.revision.as_str()
            ),
            ("trl-lib/tldr", "train", "main")
        );
        assert_eq!(spec.config, None);
        assert!(!spec.pinned);
        let spec = DatasetSpec::parse("hf:HuggingFaceH4/ultrafeedback_binarized:test_prefs@v1.0")
            .unwrap()
            .unwrap();
        assert_eq!(
            (spec.split.as_str(), spec.id.revision.as_str()),
            ("test_prefs", "v1.0")
        );
        assert!(spec.pinned);
        let spec = DatasetSpec::parse("hf:org/name/fr:test@refs/convert/parquet")
            .unwrap()
            .unwrap();
        assert_eq!(spec.config.as_deref(), Some("fr"));
        assert_eq!(spec.id.revision, "refs/convert/parquet");
        assert_eq!(DatasetSpec::parse("pairs.jsonl").unwrap(), None);
        for bad in [
            "hf:tldr",
            "hf:a/b:",
            "hf:a/b@",
            "hf:a/b:x y",
            "hf:a/b/c/d",
            "hf:a/b@v1:test",
            "hf:a/b@../../etc",
            "hf:a/b@/x",
            "hf:a/b/:test",
        ] {
            let err = DatasetSpec::parse(bad).unwrap_err().to_string();
            assert!(
                err.contains("hf:ORG/NAME[/CONFIG][:SPLIT][@REVISION]"),
                "{bad}: {err}"
            );
        }
    }
}
