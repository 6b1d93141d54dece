//! Which Parquet files of a dataset make up each config and split, by the rules `datasets`
//! follows for a repository without a loading script (its default data-file patterns):
//!
//! 1. `data/{split}-00000-of-00002*.parquet` (what `push_to_hub` writes; any split name, also
//!    directly under a config directory);
//! 2. else a directory whose name holds a split keyword (`train`/`training`,
//!    `validation`/`valid`/`dev`/`val`, `test`/`testing`/`eval`/`evaluation`, bounded by
//!    `-._ ` or digits: `train/`, `dev-set/`);
//! 3. else a file name holding one (`train.parquet`, `my_test_data.parquet`);
//! 4. else every file is `train`.
//!
//! A top-level directory other than `data` that holds no split keyword is a config
//! (`push_to_hub(config_name=...)` writes `{config}/{split}-*.parquet`); files elsewhere belong to
//! config `default`. The Hub's Parquet conversion (branch `refs/convert/parquet`) is laid out as
//! `{config}/{split}/0000.parquet` (`partial-{split}` for a split cut at 5 GB).

use std::collections::BTreeMap;
use std::path::Path;

/// The canonical split names and the keywords `datasets` maps to them.
const SPLIT_KEYWORDS: [(&str, &[&str]); 3] = [
    ("train", &["train", "training"]),
    ("validation", &["validation", "valid", "dev", "val"]),
    ("test", &["test", "testing", "eval", "evaluation"]),
];

/// The config of files that are in no config directory.
pub const DEFAULT_CONFIG: &str = "default";

/// Config -> split -> files (sorted: shard order).
pub type Splits = BTreeMap<String, BTreeMap<String, Vec<String>>>;

/// Whether a file name or path ends in `.parquet` (any case).
pub fn is_parquet_name(path: &str) -> bool {
    path.rsplit_once('.')
        .is_some_and(|(_, extension)| extension.eq_ignore_ascii_case("parquet"))
}

/// The canonical split a file or directory name holds as a keyword, bounded by `-._ `, digits
/// or its ends.
fn keyword_split(name: &str) -> Option<&'static str> {
    let tokens: Vec<String> = name
        .split(|c: char| matches!(c, '-' | '.' | '_' | ' ') || c.is_ascii_digit())
        .map(str::to_ascii_lowercase)
        .collect();
    SPLIT_KEYWORDS
        .iter()
        .find(|(_, keywords)| keywords.iter().any(|k| tokens.iter().any(|t| t == k)))
        .map(|(split, _)| *split)
}

/// `{split}-00000-of-00002` with anything after it: the split.
fn sharded_split(file_name: &str) -> Option<&str> {
    let (before, after) = file_name.split_once("-of-")?;
    let (split, index) = before.rsplit_once('-')?;
    let digits = |s: &str| s.len() == 5 && s.bytes().all(|b| b.is_ascii_digit());
    (digits(index) && after.get(..5).is_some_and(digits) && !split.is_empty()).then_some(split)
}

/// Stage 1: `data/{split}-00000-of-00002*` (or directly in the config's directory).
fn by_shard_name(relative: &str) -> Option<String> {
    let name = relative.strip_prefix("data/").unwrap_or(relative);
    if name.contains('/') {
        return None;
    }
    sharded_split(name).map(str::to_owned)
}

/// Stage 2: a split keyword in a directory name.
fn by_directory(relative: &str) -> Option<String> {
    let dirs = relative.rsplit_once('/')?.0;
    dirs.split('/').find_map(keyword_split).map(str::to_owned)
}

/// Stage 3: a split keyword in the file name.
fn by_file_name(relative: &str) -> Option<String> {
    keyword_split(relative.rsplit('/').next()?).map(str::to_owned)
}

/// Assigns `paths` (each with its path relative to its config) to splits: the first stage that
/// places any file decides, files it does not place are left out; with none, all are `train`.
fn assign(paths: &[(&str, &str)]) -> BTreeMap<String, Vec<String>> {
    let mut splits: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let stages: [fn(&str) -> Option<String>; 3] = [by_shard_name, by_directory, by_file_name];
    for stage in stages {
        for (path, relative) in paths {
            if let Some(split) = stage(relative) {
                splits.entry(split).or_default().push((*path).to_owned());
            }
        }
        if !splits.is_empty() {
            break;
        }
    }
    if splits.is_empty() && !paths.is_empty() {
        let all = paths.iter().map(|(p, _)| (*p).to_owned()).collect();
        splits.insert("train".to_owned(), all);
    }
    for files in splits.values_mut() {
        files.sort();
    }
    splits
}

/// The configs and splits of the Parquet files among a repository revision's `files`.
pub fn repository_splits(files: &[String]) -> Splits {
    let mut by_config: BTreeMap<&str, Vec<(&str, &str)>> = BTreeMap::new();
    for path in files.iter().filter(|p| is_parquet_name(p)) {
        let config = match path.split_once('/') {
            Some((dir, rest)) if dir != "data" && keyword_split(dir).is_none() => (dir, rest),
            _ => (DEFAULT_CONFIG, path.as_str()),
        };
        by_config
            .entry(config.0)
            .or_default()
            .push((path, config.1));
    }
    by_config
        .into_iter()
        .map(|(config, paths)| (config.to_owned(), assign(&paths)))
        .collect()
}

/// The configs and splits of the Hub's Parquet conversion branch.
pub fn conversion_splits(files: &[String]) -> Splits {
    let mut splits = Splits::new();
    for path in files.iter().filter(|p| is_parquet_name(p)) {
        let parts: Vec<&str> = path.split('/').collect();
        if let [config, split, _file] = parts[..] {
            let split = split.strip_prefix("partial-").unwrap_or(split);
            splits
                .entry(config.to_owned())
                .or_default()
                .entry(split.to_owned())
                .or_default()
                .push(path.clone());
        }
    }
    for files in splits.values_mut().flat_map(|s| s.values_mut()) {
        files.sort();
    }
    splits
}

/// The files of `split` in `config` (by default `default`, else the only config); else what
/// the layout holds instead, for an error message.
pub fn select<'a>(
    splits: &'a Splits,
    config: Option<&str>,
    split: &str,
) -> Result<&'a [String], String> {
    let names = |keys: Vec<&String>| {
        keys.into_iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let chosen = match config {
        Some(config) => splits.get(config).ok_or_else(|| {
            format!(
                "has no config `{config}`; its configs: {}",
                names(splits.keys().collect())
            )
        })?,
        None => match (splits.get(DEFAULT_CONFIG), splits.len()) {
            (Some(default), _) => default,
            (None, 1) => splits.values().next().expect("one config"),
            (None, _) => {
                return Err(format!(
                    "has several configs ({}): name one as hf:ORG/NAME/CONFIG:SPLIT",
                    names(splits.keys().collect())
                ));
            }
        },
    };
    chosen.get(split).map(Vec::as_slice).ok_or_else(|| {
        format!(
            "has no split `{split}`; its splits: {}",
            names(chosen.keys().collect())
        )
    })
}

/// Shards a split's file names say exist but `files` lacks (`-00001-of-00003` names, and the
/// conversion branch's `0000.parquet`, `0001.parquet`, ... numbering), as a message.
pub fn missing_shards(files: &[String]) -> Option<String> {
    let mut totals: BTreeMap<(String, usize), Vec<usize>> = BTreeMap::new();
    let mut numbered: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for path in files {
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        if let Some((before, after)) = name.split_once("-of-")
            && let Some((_, index)) = before.rsplit_once('-')
            && let (Ok(index), Some(Ok(total))) = (index.parse(), after.get(..5).map(str::parse))
        {
            totals
                .entry((dir.to_owned(), total))
                .or_default()
                .push(index);
        } else if let Some(Ok(index)) = name.strip_suffix(".parquet").map(str::parse::<usize>) {
            numbered.entry(dir.to_owned()).or_default().push(index);
        }
    }
    let mut gaps = Vec::new();
    for ((dir, total), indices) in totals {
        let have = indices.len();
        if have < total {
            gaps.push(format!("{have} of {total} shards in `{dir}/`"));
        }
    }
    for (dir, mut indices) in numbered {
        indices.sort_unstable();
        if indices.iter().enumerate().any(|(i, &n)| i != n) {
            gaps.push(format!("a gap in the numbered shards of `{dir}/`"));
        }
    }
    (!gaps.is_empty()).then(|| gaps.join(", "))
}

/// Every file under `root`, as repository paths (relative, `/`-separated), sorted.
pub fn files_under(root: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, out);
            } else if let Ok(relative) = path.strip_prefix(root) {
                let parts: Vec<_> = relative.iter().map(|p| p.to_string_lossy()).collect();
                out.push(parts.join("/"));
            }
        }
    }
    let mut files = Vec::new();
    walk(root, root, &mut files);
    files.sort();
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(files: &[&str]) -> Splits {
        repository_splits(&files.iter().map(|f| f.to_string()).collect::<Vec<_>>())
    }

    fn split_names(splits: &Splits, config: &str) -> Vec<String> {
        splits[config].keys().cloned().collect()
    }

    #[test]
    fn splits_follow_the_datasets_rules_stage_by_stage() {
        // 1. push_to_hub's shards, any split name; other files then ignored.
        let s = layout(&[
            "data/train_prefs-00000-of-00002-5f3a.parquet",
            "data/train_prefs-00001-of-00002-9b1c.parquet",
            "data/test_prefs-00000-of-00001.parquet",
            "data/extra.parquet",
            "README.md",
        ]);
        assert_eq!(split_names(&s, "default"), ["test_prefs", "train_prefs"]);
        assert_eq!(s["default"]["train_prefs"].len(), 2);
        // 2. Keywords in directory names, synonyms mapped.
        let s = layout(&["dev/a.parquet", "training-set/b.parquet", "eval/c.parquet"]);
        assert_eq!(split_names(&s, "default"), ["test", "train", "validation"]);
        // 3. Keywords in file names, bounded by separators or digits.
        let s = layout(&[
            "my_train_data.parquet",
            "test2.parquet",
            "data/valid.parquet",
        ]);
        assert_eq!(split_names(&s, "default"), ["test", "train", "validation"]);
        assert!(
            keyword_split("attest.parquet").is_none(),
            "inside a word is no keyword"
        );
        // 4. Nothing matches: everything is train.
        let s = layout(&["0000.parquet", "dataset.parquet"]);
        assert_eq!(s["default"]["train"], ["0000.parquet", "dataset.parquet"]);
    }

    #[test]
    fn config_directories_and_the_conversion_branch() {
        let s = layout(&[
            "en/train-00000-of-00001.parquet",
            "fr/train-00000-of-00001.parquet",
            "fr/test-00000-of-00001.parquet",
        ]);
        assert_eq!(s.keys().collect::<Vec<_>>(), ["en", "fr"]);
        let err = select(&s, None, "train").unwrap_err();
        assert!(err.contains("several configs (en, fr): name one"), "{err}");
        assert_eq!(
            select(&s, Some("fr"), "test").unwrap(),
            ["fr/test-00000-of-00001.parquet"]
        );
        let err = select(&s, Some("fr"), "dev").unwrap_err();
        assert_eq!(err, "has no split `dev`; its splits: test, train");

        let files: Vec<String> = [
            "default/train/0001.parquet",
            "default/train/0000.parquet",
            "default/partial-test/0000.parquet",
            "other/train/0000.parquet",
        ]
        .map(String::from)
        .to_vec();
        let s = conversion_splits(&files);
        assert_eq!(
            select(&s, None, "train").unwrap(),
            ["default/train/0000.parquet", "default/train/0001.parquet"]
        );
        assert_eq!(select(&s, None, "test").unwrap().len(), 1);
    }

    #[test]
    fn missing_shards_are_found_by_their_names() {
        let own = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            missing_shards(&own(&["data/train-00000-of-00003.parquet"])).unwrap(),
            "1 of 3 shards in `data/`"
        );
        assert!(
            missing_shards(&own(&[
                "data/train-00000-of-00002.parquet",
                "data/train-00001-of-00002.parquet"
            ]))
            .is_none()
        );
        assert!(missing_shards(&own(&["default/train/0001.parquet"])).is_some());
        assert!(missing_shards(&own(&["default/train/0000.parquet"])).is_none());
    }
}
