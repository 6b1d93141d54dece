//! The Hugging Face Hub: repository ids (`ORG/NAME[@REVISION]`, models and datasets), the
//! settings `huggingface_hub` reads from the environment, and a client over the `hf-hub` crate
//! that downloads into the cache `huggingface_hub`, transformers and `datasets` share
//! (`HF_HUB_CACHE`, else `HF_HOME/hub`, else `~/.cache/huggingface/hub`): what another tool
//! fetched is used without a download, and what bpo downloads is found by them.
//!
//! Settings: `HF_ENDPOINT`, `HF_TOKEN` (else the token file `huggingface-cli login` writes),
//! `HF_HUB_OFFLINE=1` (the cache only, never the network). A file is downloaded to
//! `blobs/<etag>.part` and renamed when whole, so an interrupted download never looks complete;
//! a rerun resumes it. Failed requests are said with what to do about them.

mod model;
mod progress;

use std::path::{Path, PathBuf};

use hf_hub::api::sync::{ApiBuilder, ApiError, ApiRepo};
use hf_hub::{Cache, Repo, RepoType};

use crate::error::ModelError;
pub use model::{HubRevision, snapshot};
use progress::DownloadReport;

/// What a repository holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepoKind {
    /// A model (`ORG/NAME`, cached as `models--ORG--NAME`).
    Model,
    /// A dataset (`datasets/ORG/NAME` on the Hub, cached as `datasets--ORG--NAME`).
    Dataset,
}

/// A repository on the Hub and the revision (branch, tag or commit) to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubId {
    /// Model or dataset.
    pub kind: RepoKind,
    /// `ORG/NAME`.
    pub repo: String,
    /// The revision after `@`, `main` when none is given.
    pub revision: String,
}

impl HubId {
    /// Parses the model id `ORG/NAME` or `ORG/NAME@REVISION`; `None` when `spec` is not shaped
    /// like one.
    pub fn parse(spec: &str) -> Option<HubId> {
        let (repo, revision) = match spec.split_once('@') {
            Some((repo, revision)) if !revision.is_empty() => (repo, revision),
            Some(_) => return None,
            None => (spec, "main"),
        };
        Self::new(RepoKind::Model, repo, revision)
    }

    /// The repository `repo` (`ORG/NAME`) of `kind` at `revision`; `None` when `repo` is not
    /// shaped like an id.
    pub fn new(kind: RepoKind, repo: &str, revision: &str) -> Option<HubId> {
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
        (part_ok(org) && part_ok(name) && revision_ok(revision)).then(|| HubId {
            kind,
            repo: repo.to_owned(),
            revision: revision.to_owned(),
        })
    }

    /// The same repository at another revision.
    pub fn at(&self, revision: &str) -> HubId {
        HubId {
            revision: revision.to_owned(),
            ..self.clone()
        }
    }

    fn hf_repo(&self) -> Repo {
        let kind = match self.kind {
            RepoKind::Model => RepoType::Model,
            RepoKind::Dataset => RepoType::Dataset,
        };
        Repo::with_revision(self.repo.clone(), kind, self.revision.clone())
    }

    /// The repository's folder in the cache (`models--ORG--NAME`, `datasets--ORG--NAME`).
    pub fn cache_dir(&self, cache: &Path) -> PathBuf {
        cache.join(self.hf_repo().folder_name())
    }

    /// The repository's page on the Hub.
    pub fn page(&self, endpoint: &str) -> String {
        match self.kind {
            RepoKind::Model => format!("{endpoint}/{}", self.repo),
            RepoKind::Dataset => format!("{endpoint}/datasets/{}", self.repo),
        }
    }

    /// The commit the revision points to in the cache (`refs/<revision>`, or the revision
    /// itself when it is a commit hash); `None` when the cache has not seen it.
    pub fn cached_commit(&self, cache: &Path) -> Option<String> {
        if is_commit(&self.revision) {
            return Some(self.revision.clone());
        }
        let ref_path = self.cache_dir(cache).join("refs").join(&self.revision);
        let text = std::fs::read_to_string(ref_path).ok()?;
        Some(text.trim().to_owned()).filter(|c| !c.is_empty())
    }

    /// The snapshot directory of `commit` in the cache.
    pub fn snapshot_dir(&self, cache: &Path, commit: &str) -> PathBuf {
        self.cache_dir(cache).join("snapshots").join(commit)
    }
}

impl std::fmt::Display for HubId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let prefix = match self.kind {
            RepoKind::Model => "",
            RepoKind::Dataset => "datasets/",
        };
        write!(f, "{prefix}{}@{}", self.repo, self.revision)
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

/// An error about repository `id`.
pub fn hub_err(id: &HubId, message: impl Into<String>) -> ModelError {
    ModelError::Hub {
        repo: id.to_string(),
        message: message.into(),
    }
}

/// A branch, tag or commit name: `[A-Za-z0-9._-]` parts joined by `/` (`refs/convert/parquet`),
/// never `.` or `..` (the revision names a file under `refs/` in the cache).
fn revision_ok(revision: &str) -> bool {
    revision.split('/').all(|part| {
        !part.is_empty()
            && part != "."
            && part != ".."
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    })
}

/// A path in a repository bpo will fetch: `/`-separated `[A-Za-z0-9._ =+-]` parts, none of them
/// `.` or `..` (it is joined under the snapshot directory and put in a URL unescaped).
pub fn file_name_ok(name: &str) -> bool {
    name.split('/').all(|part| {
        !part.is_empty()
            && part != "."
            && part != ".."
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '=' | '+'))
    })
}

fn is_commit(revision: &str) -> bool {
    revision.len() == 40 && revision.chars().all(|c| c.is_ascii_hexdigit())
}

/// Why the Hub could not answer.
pub enum Failure {
    /// The Hub could not be reached at all (a cached snapshot may stand in).
    Unreachable(String),
    /// The repository or revision does not exist (HTTP 404), said with what to do about it.
    Missing(ModelError),
    /// Anything else, said with what to do about it.
    Other(ModelError),
}

/// Resolves `id` as `huggingface_hub` does: with `HF_HUB_OFFLINE` from the cache alone
/// (`cached`), else by `download`, and when the Hub cannot be reached from the cache with a
/// note. `cached` gives the value and how to name it in the note, or what the cache lacks;
/// `fill` is the command that fills the cache.
pub fn download_or_cached<T>(
    id: &HubId,
    settings: &HubSettings,
    fill: &str,
    cached: impl Fn() -> Result<(T, String), String>,
    download: impl FnOnce() -> Result<T, Failure>,
) -> Result<T, ModelError> {
    let cache = settings.cache.display();
    if settings.offline {
        return cached().map(|(value, _)| value).map_err(|missing| {
            hub_err(
                id,
                format!(
                    "HF_HUB_OFFLINE is set and the cache {cache} lacks {missing}; download it \
                     once without HF_HUB_OFFLINE (or with `{fill}`)"
                ),
            )
        });
    }
    match download() {
        Err(Failure::Unreachable(why)) => match cached() {
            Ok((value, described)) => {
                eprintln!(
                    "note: {} cannot be reached ({why}); using the cached {described}",
                    settings.endpoint
                );
                Ok(value)
            }
            Err(missing) => Err(hub_err(
                id,
                format!(
                    "cannot reach {} ({why}), and the cache {cache} lacks {missing}; check the \
                     network (or HF_ENDPOINT); HF_HUB_OFFLINE=1 uses a cached copy without it",
                    settings.endpoint
                ),
            )),
        },
        Err(Failure::Missing(e) | Failure::Other(e)) => Err(e),
        Ok(value) => Ok(value),
    }
}

/// A revision of a repository as the Hub lists it.
pub struct Listing {
    /// The commit the revision points to.
    pub commit: String,
    /// Every file, by its path in the repository.
    pub files: Vec<String>,
}

/// A repository at one revision, reached through the Hub's API.
pub struct HubRepo<'a> {
    id: &'a HubId,
    settings: &'a HubSettings,
    api: ApiRepo,
}

impl<'a> HubRepo<'a> {
    /// A client for `id` with `settings` (nothing is requested yet).
    pub fn new(id: &'a HubId, settings: &'a HubSettings) -> Result<Self, ModelError> {
        let api = ApiBuilder::from_cache(Cache::new(settings.cache.clone()))
            .with_endpoint(settings.endpoint.clone())
            .with_token(settings.token.clone())
            .with_progress(false)
            .with_retries(3)
            .with_user_agent("bpo", env!("CARGO_PKG_VERSION"))
            .build()
            .map_err(|e| hub_err(id, e.to_string()))?;
        Ok(HubRepo {
            id,
            settings,
            api: api.repo(id.hf_repo()),
        })
    }

    /// The revision's commit and files.
    pub fn list(&self) -> Result<Listing, Failure> {
        let info = self.api.info().map_err(|e| match e {
            ApiError::RequestError(e) if matches!(*e, ureq::Error::Transport(_)) => {
                Failure::Unreachable(e.to_string())
            }
            ApiError::RequestError(e) if matches!(*e, ureq::Error::Status(404, _)) => {
                Failure::Missing(request_error(
                    self.id,
                    self.settings,
                    None,
                    ApiError::RequestError(e),
                ))
            }
            e => Failure::Other(request_error(self.id, self.settings, None, e)),
        })?;
        Ok(Listing {
            commit: info.sha,
            files: info.siblings.into_iter().map(|s| s.rfilename).collect(),
        })
    }

    /// File `name` of snapshot `commit`, downloaded into the cache unless already there.
    pub fn fetch(&self, commit: &str, name: &str) -> Result<PathBuf, ModelError> {
        if !file_name_ok(name) {
            return Err(hub_err(
                self.id,
                format!(
                    "lists a file bpo will not fetch: `{name}` (a path outside the snapshot, or characters a URL needs escaped)"
                ),
            ));
        }
        let path = self
            .id
            .snapshot_dir(&self.settings.cache, commit)
            .join(name);
        if path.is_file() {
            return Ok(path);
        }
        let got = self
            .api
            .download_with_progress(name, DownloadReport::new(&self.id.repo, name))
            .map_err(|e| request_error(self.id, self.settings, Some(name), e))?;
        if got != path {
            return Err(hub_err(
                self.id,
                format!(
                    "the revision moved to another commit during the download ({} instead of \
                     {}); run again",
                    got.display(),
                    path.display()
                ),
            ));
        }
        Ok(path)
    }

    /// Records in the cache that the revision points to `commit` (as `huggingface_hub` does),
    /// so offline runs find it.
    pub fn pin(&self, commit: &str) -> Result<(), ModelError> {
        if is_commit(&self.id.revision) {
            return Ok(());
        }
        Cache::new(self.settings.cache.clone())
            .repo(self.id.hf_repo())
            .create_ref(commit)
            .map_err(|e| ModelError::io(self.id.cache_dir(&self.settings.cache), e))
    }
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
    let page = id.page(&settings.endpoint);
    let token = if settings.token.is_some() {
        "the token in use (HF_TOKEN or the token file) lacks access"
    } else {
        "no token is set: set HF_TOKEN or run `huggingface-cli login`"
    };
    let what = match id.kind {
        RepoKind::Model => "no such repository, or it is private",
        RepoKind::Dataset => "no such dataset, or it is private",
    };
    let local = match id.kind {
        RepoKind::Model => " (no local directory of that name exists either)",
        RepoKind::Dataset => "",
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
        (401 | 404, _) => {
            format!("HTTP {status}: {what} ({token}); check the id at {page}{local}")
        }
        (429, _) => format!(
            "HTTP 429: rate-limited by {}; wait and run again",
            settings.endpoint
        ),
        (status, _) => format!("HTTP {status} from {}", settings.endpoint),
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
        let dataset =
            HubId::new(RepoKind::Dataset, "trl-lib/tldr", "refs/convert/parquet").unwrap();
        assert_eq!(
            dataset.to_string(),
            "datasets/trl-lib/tldr@refs/convert/parquet"
        );
        assert_eq!(
            dataset.cache_dir(Path::new("/c")),
            Path::new("/c/datasets--trl-lib--tldr")
        );
        let cache = Path::new("/c");
        assert_eq!(
            HubId::parse("Qwen/Qwen3-0.6B").unwrap().cache_dir(cache),
            Path::new("/c/models--Qwen--Qwen3-0.6B")
        );
    }
}
