//! What a data argument names: a JSONL or JSON file, a Parquet file, a directory of Parquet
//! shards, or a split of a Hub dataset (`hf:ORG/NAME[:SPLIT][@REVISION]`). Every command that
//! reads pairs or prompts takes any of them.

use std::io::Read;
use std::path::{Path, PathBuf};

use bpo_model::hub::HubSettings;

use crate::error::DataError;
use crate::hub::DatasetSpec;

/// The files `spec` names, in reading order: itself, the `.parquet` files of a directory
/// (sorted by name), or the split's Parquet files of a Hub dataset (downloaded once into the
/// Hub cache).
pub fn resolve_files(spec: &Path) -> Result<Vec<PathBuf>, DataError> {
    if let Some(dataset) = spec.to_str().map(DatasetSpec::parse).transpose()?.flatten() {
        return crate::hub::resolve(&dataset, &HubSettings::from_env());
    }
    if !spec.is_dir() {
        return Ok(vec![spec.to_path_buf()]);
    }
    let entries = std::fs::read_dir(spec).map_err(|e| DataError::io(spec, e))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| DataError::io(spec, e))?.path();
        let parquet = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("parquet"));
        if parquet && path.is_file() {
            files.push(path);
        }
    }
    if files.is_empty() {
        return Err(DataError::File {
            source_name: spec.display().to_string(),
            message: "is a directory without .parquet files (a directory is read as Parquet \
                      shards; name a JSONL file directly)"
                .into(),
        });
    }
    files.sort();
    Ok(files)
}

/// Whether `path` is a Parquet file (it starts with Parquet's magic bytes `PAR1`).
pub fn is_parquet(path: &Path) -> Result<bool, DataError> {
    let mut magic = [0u8; 4];
    let mut file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut read = 0;
    while read < magic.len() {
        match file.read(&mut magic[read..]) {
            Ok(0) => return Ok(false),
            Ok(n) => read += n,
            Err(e) => return Err(DataError::io(path, e)),
        }
    }
    Ok(&magic == b"PAR1")
}
