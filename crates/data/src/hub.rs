//! Datasets on the Hugging Face Hub: `hf:ORG/NAME[:SPLIT][@REVISION]` names the Parquet files
//! of one split (default `train`), downloaded once into the cache `huggingface_hub` and
//! `datasets` share, through the same client, settings and errors as Hub models
//! (`HF_HOME`, `HF_TOKEN`, `HF_ENDPOINT`, `HF_HUB_OFFLINE`).
//!
//! A split's files are found the way `datasets` finds them without a loading script:
//! `data/{split}-00000-of-00003.parquet` (what `push_to_hub` writes), files in a directory named
//! after the split (`{split}/*.parquet`, `{config}/{split}/*.parquet`), or a file named after it
//! (`{split}.parquet`, `{split}-*.parquet`). A dataset without Parquet files on its revision
//! (JSON, CSV, scripts) is read from the Parquet conversion the Hub builds for every public
//! dataset (the `refs/convert/parquet` branch, config `default`) unless a revision was named.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bpo_model::hub::{Failure, HubId, HubRepo, HubSettings, RepoKind, hub_err};

use crate::error::DataError;

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
    /// The split.
    pub split: String,
    /// Whether the spec named the revision (then no other branch is tried).
    pub pinned: bool,
}

impl DatasetSpec {
    /// Parses `hf:ORG/NAME[:SPLIT][@REVISION]`: `Ok(None)` when `spec` does not start with
    /// `hf:`, an error naming the expected form when it does but is malformed.
    pub fn parse(spec: &str) -> Result<Option<DatasetSpec>, DataError> {
        let Some(rest) = spec.strip_prefix(PREFIX) else {
            return Ok(None);
        };
        let bad = || {
            DataError::Prepare(format!(
                "`{spec}`: a Hub dataset is hf:ORG/NAME[:SPLIT][@REVISION], e.g. \
                 hf:trl-lib/ultrafeedback_binarized:test"
            ))
        };
        let (rest, revision) = match rest.split_once('@') {
            Some((rest, revision)) if !revision.is_empty() => (rest, Some(revision)),
            Some(_) => return Err(bad()),
            None => (rest, None),
        };
        let (repo, split) = match rest.split_once(':') {
            Some((repo, split)) => (repo, split),
            None => (rest, DEFAULT_SPLIT),
        };
        let split_ok = !split.is_empty()
            && split
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        let id = HubId::new(RepoKind::Dataset, repo, revision.unwrap_or("main"))
            .filter(|_| split_ok)
            .ok_or_else(bad)?;
        Ok(Some(DatasetSpec {
            id,
            split: split.to_owned(),
            pinned: revision.is_some(),
        }))
    }
}

/// The split a Parquet file of a dataset repository belongs to, by the rules `datasets`
/// follows; `None` for files that are not Parquet.
pub fn split_of(path: &str) -> Option<&str> {
    let file_stem = path.rsplit('/').next()?.strip_suffix(".parquet")?;
    let parent = path.rsplit('/').nth(1).filter(|dir| *dir != "data");
    // `{split}-00000-of-00003` (with an optional `-{hash}` after it).
    let sharded = file_stem.find("-of-").and_then(|at| {
        let before = &file_stem[..at];
        let (split, index) = before.rsplit_once('-')?;
        (index.len() == 5 && index.bytes().all(|b| b.is_ascii_digit())).then_some(split)
    });
    let named = file_stem.split('-').next().filter(|s| !s.is_empty());
    sharded.or(parent).or(named)
}

/// The Parquet files of each split among `files`, sorted (shard order).
fn splits(files: &[String], config_dir: Option<&str>) -> BTreeMap<String, Vec<String>> {
    let mut splits: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for file in files {
        if let Some(dir) = config_dir
            && !file.starts_with(&format!("{dir}/"))
        {
            continue;
        }
        if let Some(split) = split_of(file) {
            splits
                .entry(split.to_owned())
                .or_default()
                .push(file.clone());
        }
    }
    for shards in splits.values_mut() {
        shards.sort();
    }
    splits
}

/// The config directory of the Parquet conversion branch.
fn config_dir(id: &HubId) -> Option<&'static str> {
    (id.revision == PARQUET_BRANCH).then_some("default")
}

/// The split's Parquet files in the cache, downloading what is missing (or, offline or with
/// the Hub unreachable, from the cache alone).
pub fn resolve(spec: &DatasetSpec, settings: &HubSettings) -> Result<Vec<PathBuf>, DataError> {
    let mut ids = vec![spec.id.clone()];
    if !spec.pinned {
        ids.push(spec.id.at(PARQUET_BRANCH));
    }
    if settings.offline {
        return cached(spec, &ids, &settings.cache).map_err(|missing| {
            hub_err(
                &spec.id,
                format!(
                    "HF_HUB_OFFLINE is set and the cache {} lacks {missing}; download it once \
                     without HF_HUB_OFFLINE (or with `huggingface-cli download --repo-type \
                     dataset {}`)",
                    settings.cache.display(),
                    spec.id.repo
                ),
            )
            .into()
        });
    }
    match download(spec, &ids, settings) {
        Err(Failure::Unreachable(why)) => match cached(spec, &ids, &settings.cache) {
            Ok(files) => {
                eprintln!(
                    "note: {} cannot be reached ({why}); using the cached copy of {}",
                    settings.endpoint, spec.id
                );
                Ok(files)
            }
            Err(missing) => Err(hub_err(
                &spec.id,
                format!(
                    "cannot reach {} ({why}), and the cache {} lacks {missing}; check the \
                     network (or HF_ENDPOINT); HF_HUB_OFFLINE=1 uses a cached dataset without it",
                    settings.endpoint,
                    settings.cache.display()
                ),
            )
            .into()),
        },
        Err(Failure::Other(e)) => Err(e.into()),
        Ok(files) => Ok(files),
    }
}

/// Lists the revision (then the conversion branch, if the revision has no Parquet files) and
/// fetches the split's files.
fn download(
    spec: &DatasetSpec,
    ids: &[HubId],
    settings: &HubSettings,
) -> Result<Vec<PathBuf>, Failure> {
    let mut found = BTreeMap::new();
    for id in ids {
        let repo = HubRepo::new(id, settings).map_err(Failure::Other)?;
        let listing = match repo.list() {
            // The conversion branch is a fallback: a dataset without one has no Parquet at all.
            Err(Failure::Other(_)) if id != &ids[0] => break,
            listing => listing?,
        };
        found = splits(&listing.files, config_dir(id));
        let Some(shards) = found.get(&spec.split) else {
            if found.is_empty() {
                continue;
            }
            break;
        };
        let files = shards
            .iter()
            .map(|f| repo.fetch(&listing.commit, f))
            .collect::<Result<Vec<_>, _>>()
            .map_err(Failure::Other)?;
        repo.pin(&listing.commit).map_err(Failure::Other)?;
        return Ok(files);
    }
    Err(Failure::Other(hub_err(&spec.id, no_split(spec, &found))))
}

fn no_split(spec: &DatasetSpec, found: &BTreeMap<String, Vec<String>>) -> String {
    if found.is_empty() {
        let branch = if spec.pinned {
            String::new()
        } else {
            format!(" nor on its `{PARQUET_BRANCH}` branch")
        };
        format!(
            "has no Parquet files on revision `{}`{branch}",
            spec.id.revision
        )
    } else {
        let names: Vec<&str> = found.keys().map(String::as_str).collect();
        format!(
            "has no split `{}`; its splits: {} (name one as hf:{}:SPLIT)",
            spec.split,
            names.join(", "),
            spec.id.repo
        )
    }
}

/// The split's files from a cached snapshot of the first revision in `ids` the cache has;
/// else what the cache lacks.
fn cached(spec: &DatasetSpec, ids: &[HubId], cache: &Path) -> Result<Vec<PathBuf>, String> {
    for id in ids {
        let Some(commit) = id.cached_commit(cache) else {
            continue;
        };
        let dir = id.snapshot_dir(cache, &commit);
        let mut files = Vec::new();
        list_files(&dir, &dir, &mut files);
        if let Some(shards) = splits(&files, config_dir(id)).remove(&spec.split) {
            return Ok(shards.iter().map(|f| dir.join(f)).collect());
        }
    }
    Err(format!(
        "split `{}` of dataset {}",
        spec.split, spec.id.repo
    ))
}

/// Every file under `dir`, as paths relative to `root` with `/` separators.
fn list_files(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            list_files(root, &path, out);
        } else if let Ok(relative) = path.strip_prefix(root) {
            let parts: Vec<_> = relative.iter().map(|p| p.to_string_lossy()).collect();
            out.push(parts.join("/"));
        }
    }
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
        assert!(!spec.pinned);
        let spec = DatasetSpec::parse("hf:HuggingFaceH4/ultrafeedback_binarized:test_prefs@v1.0")
            .unwrap()
            .unwrap();
        assert_eq!(
            (spec.split.as_str(), spec.id.revision.as_str()),
            ("test_prefs", "v1.0")
        );
        assert!(spec.pinned);
        assert_eq!(DatasetSpec::parse("pairs.jsonl").unwrap(), None);
        for bad in ["hf:tldr", "hf:a/b:", "hf:a/b@", "hf:a/b:x y", "hf:a/b/c"] {
            let err = DatasetSpec::parse(bad).unwrap_err().to_string();
            assert!(
                err.contains("hf:ORG/NAME[:SPLIT][@REVISION]"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn finds_splits_as_datasets_does() {
        let cases = [
            ("data/train-00000-of-00002.parquet", Some("train")),
            (
                "data/train_prefs-00001-of-00002-5f3a.parquet",
                Some("train_prefs"),
            ),
            ("default/test/0000.parquet", Some("test")),
            ("validation/part-1.parquet", Some("validation")),
            ("test.parquet", Some("test")),
            ("data/test.parquet", Some("test")),
            ("train-0.parquet", Some("train")),
            ("README.md", None),
            ("data/train.jsonl", None),
        ];
        for (path, want) in cases {
            assert_eq!(split_of(path), want, "{path}");
        }
        let files: Vec<String> = [
            "default/train/0001.parquet",
            "default/train/0000.parquet",
            "other/train/0000.parquet",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            splits(&files, Some("default"))["train"],
            ["default/train/0000.parquet", "default/train/0001.parquet"]
        );
    }
}
