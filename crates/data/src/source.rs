//! What a data argument names: a JSONL or JSON file, a Parquet file, a directory of Parquet
//! shards (`DIR`, or `DIR:SPLIT` when it holds several splits), or a split of a Hub dataset
//! (`hf:ORG/NAME[/CONFIG][:SPLIT][@REVISION]`). Every command that reads pairs or prompts takes
//! any of them.

use std::path::{Path, PathBuf};

use bpo_model::hub::HubSettings;

use crate::error::DataError;
use crate::hub::DatasetSpec;
use crate::layout::{Splits, files_under, repository_splits, select};

/// The files `spec` names, in reading order: itself; the Parquet files of a directory (searched
/// recursively, one config and split of it as [`crate::layout`] assigns them, in name order); or
/// the split's Parquet files of a Hub dataset (downloaded once into the Hub cache).
pub fn resolve_files(spec: &Path) -> Result<Vec<PathBuf>, DataError> {
    if let Some(dataset) = spec.to_str().map(DatasetSpec::parse).transpose()?.flatten() {
        return crate::hub::resolve(&dataset, &HubSettings::from_env());
    }
    if spec.is_dir() {
        return directory_files(spec, None);
    }
    if !spec.exists()
        && let Some((dir, split)) = spec.to_str().and_then(|s| s.rsplit_once(':'))
        && Path::new(dir).is_dir()
    {
        return directory_files(Path::new(dir), Some(split));
    }
    Ok(vec![spec.to_path_buf()])
}

/// The Parquet files of `dir` that make up `split` (or its only split).
fn directory_files(dir: &Path, split: Option<&str>) -> Result<Vec<PathBuf>, DataError> {
    let error = |message: String| DataError::file(dir.display(), message);
    let splits: Splits = repository_splits(&files_under(dir));
    if splits.is_empty() {
        return Err(error(
            "is a directory without .parquet files (a directory is read as Parquet shards; name \
             a JSONL file directly)"
                .into(),
        ));
    }
    let chosen = match split {
        Some(split) => select(&splits, None, split).map_err(error)?,
        None => {
            let all: Vec<(&String, &String)> = splits
                .iter()
                .flat_map(|(config, s)| s.keys().map(move |split| (config, split)))
                .collect();
            match all[..] {
                [(config, split)] => &splits[config][split],
                _ => {
                    let names: Vec<String> = all
                        .iter()
                        .map(|(config, split)| match config.as_str() {
                            crate::layout::DEFAULT_CONFIG => split.to_string(),
                            config => format!("{config}/{split}"),
                        })
                        .collect();
                    return Err(error(format!(
                        "holds several splits ({}): name one as {}:SPLIT",
                        names.join(", "),
                        dir.display()
                    )));
                }
            }
        }
    };
    Ok(chosen.iter().map(|f| dir.join(f)).collect())
}
