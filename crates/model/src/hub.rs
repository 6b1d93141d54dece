//! Hugging Face Hub model ids (`ORG/NAME[@REVISION]`), resolved through the `hf-hub` crate into
//! the cache that `huggingface_hub` and transformers share (`HF_HUB_CACHE`, else
//! `HF_HOME/hub`, else `~/.cache/huggingface/hub`): a model another tool fetched is used without
//! a download, and what bpo downloads is found by them.
//!
//! Settings come from the environment as `huggingface_hub` reads it: `HF_ENDPOINT`, `HF_TOKEN`
//! (else the token file `huggingface-cli login` writes), `HF_HUB_OFFLINE=1` (the cache only,
//! never the network). When the Hub cannot be reached, a complete cached snapshot is used with
//! a note, as transformers does. A file is downloaded to `blobs/<etag>.part` and renamed when
//! whole, so an interrupted download never looks complete; a rerun resumes it.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use hf_hub::api::Progress;
use hf_hub::api::sync::{ApiBuilder, ApiError, ApiRepo};
use hf_hub::{Cache, Repo, RepoType};

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

/// A model repository on the Hub and the revision (branch, tag or commit) to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubId {
    /// `ORG/NAME`.
    pub repo: String,
    /// The revision after `@`, `main` when none is given.
    pub revision: String,
}

impl HubId {
    /// Parses `ORG/NAME` or `ORG/NAME@REVISION`; `None` when `spec` is not shaped like one.
    pub fn parse(spec: &str) -> Option<HubId> {
        let (repo, revision) = match spec.split_once('@') {
            Some((repo, revision)) if !revision.is_empty() => (repo, revision),
            Some(_) => return None,
            None => (spec, "main"),
        };
        let (org, name) = repo.split_once('/')?;
        let part_ok = |part: &str| {
            !part.is_empty()
                && !part.starts_with(['.', '-'])
                && !part.ends_with('.')
                && !part.contains("..")
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        (part_ok(org) && part_ok(name)).then(|| HubId {
            repo: repo.to_owned(),
            revision: revision.to_owned(),
        })
    }

    fn hf_repo(&self) -> Repo {
        Repo::with_revision(self.repo.clone(), RepoType::Model, self.revision.clone())
    }

    /// The repository's folder in the cache (`models--ORG--NAME`).
    pub fn cache_dir(&self, cache: &Path) -> PathBuf {
        cache.join(self.hf_repo().folder_name())
    }
}

/// Where and how the Hub is reached, read from the environment like `huggingface_hub` does.
#[derive(Clone)]
pub struct HubSettings {
    /// The hub cache (`HF_HUB_CACHE`, else `HF_HOME/hub`, else `~/.cache/huggingface/hub`).
    pub cache: PathBuf,
    /// The Hub's address (`HF_ENDPOINT`, else `https://huggingface.co`).
    pub endpoint: String,
    /// The access token (`HF_TOKEN`, else the file at `HF_TOKEN_PATH` or `HF_HOME/token`).
    pub token: Option<String>,
    /// `HF_HUB_OFFLINE`: use the cache only.
    pub offline: bool,
}

impl std::fmt::Debug for HubSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubSettings")
            .field("cache", &self.cache)
            .field("endpoint", &self.endpoint)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("offline", &self.offline)
            .finish()
    }
}

impl HubSettings {
    /// The settings the environment gives.
    pub fn from_env() -> HubSettings {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let home = var("HF_HOME").map(PathBuf::from).unwrap_or_else(|| {
            let cache = var("XDG_CACHE_HOME").map(PathBuf::from).unwrap_or_else(|| {
                let home = var("HOME").unwrap_or_else(|| ".".into());
                Path::new(&home).join(".cache")
            });
            cache.join("huggingface")
        });
        let cache = var("HF_HUB_CACHE")
            .or_else(|| var("HUGGINGFACE_HUB_CACHE"))
            .map(PathBuf::from)
            .unwrap_or_else(|| home.join("hub"));
        let token_file = var("HF_TOKEN_PATH")
            .map(PathBuf::from)
            .unwrap_or_else(|| home.join("token"));
        let token = var("HF_TOKEN").or_else(|| {
            let text = std::fs::read_to_string(token_file).ok()?;
            Some(text.trim().to_owned()).filter(|t| !t.is_empty())
        });
        let offline = var("HF_HUB_OFFLINE").is_some_and(|v| {
            matches!(v.to_ascii_lowercase().as_str(), "1" | "on" | "yes" | "true")
        });
        let endpoint = var("HF_ENDPOINT").unwrap_or_else(|| "https://huggingface.co".into());
        HubSettings {
            cache,
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            token,
            offline,
        }
    }
}

fn hub_err(id: &HubId, message: impl Into<String>) -> ModelError {
    ModelError::Hub {
        repo: format!("{}@{}", id.repo, id.revision),
        message: message.into(),
    }
}

/// The local snapshot directory of `id` holding a loadable model: from the cache when it is
/// there (offline, or when the Hub cannot be reached), downloading what is missing otherwise.
pub fn snapshot(id: &HubId, settings: &HubSettings) -> Result<PathBuf, ModelError> {
    if settings.offline {
        return cached_snapshot(id, &settings.cache).map_err(|missing| {
            hub_err(
                id,
                format!(
                    "HF_HUB_OFFLINE is set and the cache {} lacks {missing}; download it once \
                     without HF_HUB_OFFLINE (or with `huggingface-cli download {}`)",
                    settings.cache.display(),
                    id.repo
                ),
            )
        });
    }
    match download_snapshot(id, settings) {
        Err(Failure::Unreachable(why)) => match cached_snapshot(id, &settings.cache) {
            Ok(dir) => {
                eprintln!(
                    "note: {} cannot be reached ({why}); using the cached snapshot {}",
                    settings.endpoint,
                    dir.display()
                );
                Ok(dir)
            }
            Err(missing) => Err(hub_err(
                id,
                format!(
                    "cannot reach {} ({why}), and the cache {} lacks {missing}; check the \
                     network (or HF_ENDPOINT); HF_HUB_OFFLINE=1 uses a cached model without it",
                    settings.endpoint,
                    settings.cache.display()
                ),
            )),
        },
        Err(Failure::Other(e)) => Err(e),
        Ok(dir) => Ok(dir),
    }
}

/// The cached snapshot of `id` when it holds every file a model needs; else what it lacks.
fn cached_snapshot(id: &HubId, cache: &Path) -> Result<PathBuf, String> {
    let repo_dir = id.cache_dir(cache);
    let commit = if is_commit(&id.revision) {
        id.revision.clone()
    } else {
        let ref_path = repo_dir.join("refs").join(&id.revision);
        let text = std::fs::read_to_string(&ref_path)
            .map_err(|_| format!("the revision `{}` of {}", id.revision, id.repo))?;
        text.trim().to_owned()
    };
    let dir = repo_dir.join("snapshots").join(&commit);
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

fn is_commit(revision: &str) -> bool {
    revision.len() == 40 && revision.chars().all(|c| c.is_ascii_hexdigit())
}

enum Failure {
    /// The Hub could not be reached at all (a cached snapshot may stand in).
    Unreachable(String),
    Other(ModelError),
}

/// Asks the Hub for the revision's commit and files, downloads those missing from the cache.
fn download_snapshot(id: &HubId, settings: &HubSettings) -> Result<PathBuf, Failure> {
    let api = ApiBuilder::from_cache(Cache::new(settings.cache.clone()))
        .with_endpoint(settings.endpoint.clone())
        .with_token(settings.token.clone())
        .with_progress(false)
        .with_retries(3)
        .with_user_agent("bpo", env!("CARGO_PKG_VERSION"))
        .build()
        .map_err(|e| Failure::Other(hub_err(id, e.to_string())))?;
    let repo = api.repo(id.hf_repo());
    let info = repo.info().map_err(|e| match e {
        ApiError::RequestError(e) if matches!(*e, ureq::Error::Transport(_)) => {
            Failure::Unreachable(e.to_string())
        }
        e => Failure::Other(request_error(id, settings, None, e)),
    })?;
    let listed = |name: &str| info.siblings.iter().any(|s| s.rfilename == name);
    let dir = id
        .cache_dir(&settings.cache)
        .join("snapshots")
        .join(&info.sha);
    let fetch = |name: &str| fetch_file(&repo, id, settings, &dir, name).map_err(Failure::Other);
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
        let pickled = info.siblings.iter().any(|s| {
            s.rfilename.ends_with(".bin")
                || s.rfilename.ends_with(".pt")
                || s.rfilename.ends_with(".pth")
        });
        let why = if pickled {
            "has PyTorch pickle weights only (.bin), which bpo never unpickles: convert them to \
             safetensors (transformers: `model.save_pretrained(dir, safe_serialization=True)`)"
        } else {
            "has no safetensors weights (model.safetensors or model.safetensors.index.json)"
        };
        return Err(Failure::Other(hub_err(id, why)));
    }
    let cache_repo = Cache::new(settings.cache.clone()).repo(id.hf_repo());
    if !is_commit(&id.revision) {
        cache_repo
            .create_ref(&info.sha)
            .map_err(|e| Failure::Other(ModelError::io(id.cache_dir(&settings.cache), e)))?;
    }
    Ok(dir)
}

/// `dir/name`, downloaded into the cache unless already there.
fn fetch_file(
    repo: &ApiRepo,
    id: &HubId,
    settings: &HubSettings,
    dir: &Path,
    name: &str,
) -> Result<PathBuf, ModelError> {
    let path = dir.join(name);
    if path.is_file() {
        return Ok(path);
    }
    let got = repo
        .download_with_progress(name, DownloadReport::new(&id.repo, name))
        .map_err(|e| request_error(id, settings, Some(name), e))?;
    if got != path {
        return Err(hub_err(
            id,
            format!(
                "the revision moved to another commit during the download ({} instead of {}); \
                 run again",
                got.display(),
                path.display()
            ),
        ));
    }
    Ok(path)
}

/// A failed request, said with what to do about it.
fn request_error(
    id: &HubId,
    settings: &HubSettings,
    file: Option<&str>,
    error: ApiError,
) -> ModelError {
    let what = file.map(|f| format!("{f}: ")).unwrap_or_default();
    let message = match error {
        ApiError::RequestError(e) => match *e {
            ureq::Error::Status(status, response) => {
                status_message(id, settings, status, response.header("x-error-code"))
            }
            transport => format!("the request failed: {transport}"),
        },
        ApiError::TooManyRetries(e) => format!(
            "the download was interrupted ({e}) and did not recover after retries; the part \
             downloaded is kept in the cache and a rerun resumes it"
        ),
        other => other.to_string(),
    };
    hub_err(id, format!("{what}{message}"))
}

fn status_message(id: &HubId, settings: &HubSettings, status: u16, code: Option<&str>) -> String {
    let page = format!("{}/{}", settings.endpoint, id.repo);
    let token = if settings.token.is_some() {
        "the token in use (HF_TOKEN or the token file) lacks access"
    } else {
        "no token is set: set HF_TOKEN or run `huggingface-cli login`"
    };
    match (status, code) {
        (_, Some("GatedRepo")) | (403, None) => format!(
            "HTTP {status}: the repository is gated or private; accept its licence at {page} \
             and use a token with access ({token})"
        ),
        (_, Some("RevisionNotFound")) => format!(
            "HTTP {status}: no revision `{}` (a branch, tag or commit of {page})",
            id.revision
        ),
        (_, Some("EntryNotFound")) => format!("HTTP {status}: no such file in the repository"),
        (401 | 404, _) => format!(
            "HTTP {status}: no such repository, or it is private ({token}); check the id at \
             {page} (no local directory of that name exists either)"
        ),
        (429, _) => format!(
            "HTTP 429: rate-limited by {}; wait and run again",
            settings.endpoint
        ),
        (status, _) => format!("HTTP {status} from {}", settings.endpoint),
    }
}

/// Download progress: a bar on a terminal, a line per file otherwise.
struct DownloadReport {
    label: String,
    bar: Option<indicatif::ProgressBar>,
    size: usize,
    started: Instant,
    announced: bool,
}

impl DownloadReport {
    fn new(repo: &str, file: &str) -> Self {
        let bar = std::io::stderr()
            .is_terminal()
            .then(|| indicatif::ProgressBar::new(0));
        DownloadReport {
            label: format!("{repo}/{file}"),
            bar,
            size: 0,
            started: Instant::now(),
            announced: false,
        }
    }
}

fn megabytes(bytes: usize) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

impl Progress for DownloadReport {
    fn init(&mut self, size: usize, _filename: &str) {
        self.size = size;
        match &mut self.bar {
            Some(bar) => Progress::init(bar, size, &self.label),
            None if !self.announced => {
                eprintln!("downloading {} ({})", self.label, megabytes(size));
                self.announced = true;
            }
            None => {}
        }
    }

    fn update(&mut self, size: usize) {
        if let Some(bar) = &mut self.bar {
            Progress::update(bar, size);
        }
    }

    fn finish(&mut self) {
        match &mut self.bar {
            Some(bar) => Progress::finish(bar),
            None => eprintln!(
                "downloaded {} ({}) in {:.1} s",
                self.label,
                megabytes(self.size),
                self.started.elapsed().as_secs_f64()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hub_ids_and_refuses_other_shapes() {
        let id = HubId::parse("Qwen/Qwen3-0.6B").unwrap();
        assert_eq!(
            (id.repo.as_str(), id.revision.as_str()),
            ("Qwen/Qwen3-0.6B", "main")
        );
        let id = HubId::parse("HuggingFaceTB/SmolLM2-135M-Instruct@v1.0").unwrap();
        assert_eq!(id.revision, "v1.0");
        for spec in [
            "smollm2-135m",
            "a/b/c",
            "./x/y",
            "/abs/path",
            "a/",
            "/b",
            "a/b@",
            "a/..x",
            "a/b c",
        ] {
            assert_eq!(HubId::parse(spec), None, "{spec}");
        }
        let cache = Path::new("/c");
        assert_eq!(
            HubId::parse("Qwen/Qwen3-0.6B").unwrap().cache_dir(cache),
            Path::new("/c/models--Qwen--Qwen3-0.6B")
        );
    }
}
