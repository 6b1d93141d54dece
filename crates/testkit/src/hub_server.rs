//! A Hugging Face Hub stand-in on 127.0.0.1 for tests: it serves model and dataset repositories
//! the way the Hub does for `hf-hub` and `huggingface_hub` (`/api/models/ORG/NAME/revision/REV`
//! and `/api/datasets/...` with the commit and the file list, `/api/{models,datasets}/ORG/NAME/
//! tree/REV`, `/ORG/NAME/resolve/REV/FILE` and `/datasets/ORG/NAME/resolve/REV/FILE` with `ETag`,
//! `X-Repo-Commit`, ranges), branches besides `main` (a dataset's `refs/convert/parquet`),
//! answers private and gated repositories with the Hub's status codes and `X-Error-Code`, can
//! drop a connection part-way through a file, and logs every request.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use crate::local_server::{LocalServer, read_headers};

/// Who may read a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Anyone.
    Public,
    /// Only with this token; others are told the repository does not exist (401).
    Private(String),
    /// Listed for anyone; files only with this token (401 without a token, 403 with another).
    Gated(String),
}

/// One request the server received.
#[derive(Debug, Clone)]
pub struct LoggedRequest {
    /// `GET` or `HEAD`.
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The `Range` header, if any.
    pub range: Option<String>,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
}

/// One revision of a repository: its commit and files.
struct Revision {
    commit: String,
    files: BTreeMap<String, Vec<u8>>,
}

struct HubRepo {
    /// Branch name -> revision; `main` always.
    branches: BTreeMap<String, Revision>,
    access: Access,
}

impl HubRepo {
    /// The revision a branch name or commit hash names.
    fn revision(&self, name: &str) -> Option<&Revision> {
        self.branches
            .get(name)
            .or_else(|| self.branches.values().find(|r| r.commit == name))
    }
}

#[derive(Default)]
struct State {
    /// `ORG/NAME` for models, `datasets/ORG/NAME` for datasets.
    repos: BTreeMap<String, HubRepo>,
    log: Vec<LoggedRequest>,
    /// File name -> (bytes sent before the connection is dropped, how many more times).
    drops: BTreeMap<String, (usize, usize)>,
}

/// The running server; stopped (its port closed) when dropped.
pub struct HubServer {
    /// `http://127.0.0.1:PORT`, for `HF_ENDPOINT`.
    pub endpoint: String,
    state: Arc<Mutex<State>>,
    server: LocalServer,
}

impl HubServer {
    /// Starts a server with no repositories on a free port of 127.0.0.1.
    pub fn start() -> HubServer {
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let server = LocalServer::start(move |stream| serve(stream, &shared));
        HubServer {
            endpoint: format!("http://{}", server.address),
            state,
            server,
        }
    }

    /// Publishes `files` as model repository `repo` (`ORG/NAME`); returns its commit hash.
    pub fn add_repo(&self, repo: &str, files: BTreeMap<String, Vec<u8>>, access: Access) -> String {
        self.publish(repo.to_owned(), files, access)
    }

    /// Publishes `files` (paths may have directories) as dataset repository `repo`
    /// (`ORG/NAME`); returns its commit hash.
    pub fn add_dataset(
        &self,
        repo: &str,
        files: BTreeMap<String, Vec<u8>>,
        access: Access,
    ) -> String {
        self.publish(format!("datasets/{repo}"), files, access)
    }

    fn publish(&self, key: String, files: BTreeMap<String, Vec<u8>>, access: Access) -> String {
        let revision = Revision::new(&key, "main", files);
        let commit = revision.commit.clone();
        let entry = HubRepo {
            branches: BTreeMap::from([("main".to_owned(), revision)]),
            access,
        };
        self.state.lock().unwrap().repos.insert(key, entry);
        commit
    }

    /// Adds branch `branch` (e.g. `refs/convert/parquet`) holding `files` to the published
    /// dataset `repo`; returns its commit hash.
    pub fn add_dataset_branch(
        &self,
        repo: &str,
        branch: &str,
        files: BTreeMap<String, Vec<u8>>,
    ) -> String {
        let key = format!("datasets/{repo}");
        let revision = Revision::new(&key, branch, files);
        let commit = revision.commit.clone();
        let mut state = self.state.lock().unwrap();
        let entry = state.repos.get_mut(&key).expect("dataset published first");
        entry.branches.insert(branch.to_owned(), revision);
        commit
    }

    /// Publishes every file of directory `dir` as `repo`; returns its commit hash.
    pub fn add_dir(&self, repo: &str, dir: &std::path::Path, access: Access) -> String {
        let files = std::fs::read_dir(dir)
            .expect("model directory")
            .map(|e| {
                let e = e.unwrap();
                let name = e.file_name().to_string_lossy().into_owned();
                (name, std::fs::read(e.path()).unwrap())
            })
            .collect();
        self.add_repo(repo, files, access)
    }

    /// The next `times` downloads of `file` send `after` bytes of the body, then drop the
    /// connection (with the full length announced).
    pub fn drop_file(&self, file: &str, after: usize, times: usize) {
        self.state
            .lock()
            .unwrap()
            .drops
            .insert(file.into(), (after, times));
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.state.lock().unwrap().log.clone()
    }

    /// Stops the server and closes its port.
    pub fn stop(mut self) {
        self.server.shutdown();
    }
}

impl Revision {
    /// A revision whose commit hash is derived from the repository, branch and files.
    fn new(key: &str, branch: &str, files: BTreeMap<String, Vec<u8>>) -> Revision {
        let mut hasher = Sha256::new();
        hasher.update(key.as_bytes());
        hasher.update(branch.as_bytes());
        for (name, bytes) in &files {
            hasher.update(name.as_bytes());
            hasher.update(bytes);
        }
        let commit = hex(&hasher.finalize())[..40].to_owned();
        Revision { commit, files }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Send this many bytes of the body, then drop the connection.
    cut_after: Option<usize>,
}

impl Response {
    fn error(status: u16, code: &str) -> Response {
        Response {
            status,
            headers: vec![("X-Error-Code".into(), code.into())],
            body: format!("{{\"error\":\"{code}\"}}").into_bytes(),
            cut_after: None,
        }
    }
}

fn serve(stream: TcpStream, state: &Mutex<State>) {
    let mut reader = BufReader::new(stream.try_clone().expect("stream clone"));
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let mut parts = line.split_whitespace();
    let (method, target) = match (parts.next(), parts.next()) {
        (Some(m), Some(t)) => (m.to_owned(), t.to_owned()),
        _ => return,
    };
    let headers = read_headers(&mut reader);
    let path = target.split('?').next().unwrap_or("").to_owned();
    let request = LoggedRequest {
        method: method.clone(),
        path: path.clone(),
        range: headers.get("range").cloned(),
        authorization: headers.get("authorization").cloned(),
    };
    let response = {
        let mut state = state.lock().unwrap();
        state.log.push(request.clone());
        respond(&mut state, &request)
    };
    write_response(stream, &method, response);
}

fn write_response(mut stream: TcpStream, method: &str, response: Response) {
    let mut head = format!("HTTP/1.1 {} X\r\nConnection: close\r\n", response.status);
    let has_length = response.headers.iter().any(|(k, _)| k == "Content-Length");
    for (k, v) in &response.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !has_length {
        head.push_str(&format!("Content-Length: {}\r\n", response.body.len()));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes());
    if method != "HEAD" {
        let end = response.cut_after.unwrap_or(response.body.len());
        let _ = stream.write_all(&response.body[..end.min(response.body.len())]);
    }
    let _ = stream.flush();
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

fn allowed(access: &Access, authorization: Option<&str>) -> Result<(), Response> {
    let bearer = |token: &str| authorization == Some(format!("Bearer {token}").as_str());
    match access {
        Access::Public => Ok(()),
        Access::Private(token) if bearer(token) => Ok(()),
        Access::Private(_) => Err(Response::error(401, "RepoNotFound")),
        Access::Gated(token) if bearer(token) => Ok(()),
        Access::Gated(_) if authorization.is_none() => Err(Response::error(401, "GatedRepo")),
        Access::Gated(_) => Err(Response::error(403, "GatedRepo")),
    }
}

/// `refs%2Fconvert%2Fparquet` -> `refs/convert/parquet` (clients escape `/` in revisions).
fn unescape(revision: &str) -> String {
    revision.replace("%2F", "/").replace("%2f", "/")
}

fn respond(state: &mut State, request: &LoggedRequest) -> Response {
    let auth = request.authorization.as_deref();
    let api = [("/api/models/", ""), ("/api/datasets/", "datasets/")]
        .into_iter()
        .find_map(|(prefix, key)| Some((request.path.strip_prefix(prefix)?, key)));
    if let Some((rest, key_prefix)) = api {
        let (repo, revision, tree) =
            match (rest.split_once("/revision/"), rest.split_once("/tree/")) {
                (Some((repo, revision)), _) => (repo, revision, false),
                (None, Some((repo, revision))) => (repo, revision, true),
                _ => return Response::error(404, "EntryNotFound"),
            };
        // `tree/REV/PATH` lists a folder; this stand-in lists the whole revision.
        let revision = unescape(revision.split('/').next().unwrap_or_default());
        let Some(entry) = state.repos.get(&format!("{key_prefix}{repo}")) else {
            return Response::error(401, "RepoNotFound");
        };
        if let Access::Private(_) = entry.access
            && let Err(denied) = allowed(&entry.access, auth)
        {
            return denied;
        }
        let Some(revision) = entry.revision(&revision) else {
            return Response::error(404, "RevisionNotFound");
        };
        let body = if tree {
            // huggingface_hub 1.x and later list the files of a snapshot this way.
            let files: Vec<serde_json::Value> = revision
                .files
                .iter()
                .map(|(path, bytes)| {
                    let oid = hex(&Sha256::digest(bytes));
                    serde_json::json!({ "type": "file", "path": path, "size": bytes.len(), "oid": oid })
                })
                .collect();
            serde_json::Value::from(files)
        } else {
            let siblings: Vec<serde_json::Value> = revision
                .files
                .keys()
                .map(|f| serde_json::json!({ "rfilename": f }))
                .collect();
            serde_json::json!({ "id": repo, "sha": revision.commit, "siblings": siblings })
        };
        return Response {
            status: 200,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.to_string().into_bytes(),
            cut_after: None,
        };
    }
    let Some((key, rest)) = request.path[1..].split_once("/resolve/") else {
        return Response::error(404, "EntryNotFound");
    };
    let Some(entry) = state.repos.get(key) else {
        return Response::error(401, "RepoNotFound");
    };
    if let Err(denied) = allowed(&entry.access, auth) {
        return denied;
    }
    let Some((revision, file)) = rest.split_once('/') else {
        return Response::error(404, "EntryNotFound");
    };
    let Some(revision) = entry.revision(&unescape(revision)) else {
        return Response::error(404, "RevisionNotFound");
    };
    let Some(bytes) = revision.files.get(file) else {
        return Response::error(404, "EntryNotFound");
    };
    let etag = hex(&Sha256::digest(bytes));
    let mut headers = vec![
        ("ETag".into(), format!("\"{etag}\"")),
        ("X-Repo-Commit".into(), revision.commit.clone()),
        ("Accept-Ranges".into(), "bytes".into()),
    ];
    let total = bytes.len();
    let (status, start, end) = match request.range.as_deref().and_then(parse_range) {
        Some((start, end)) => {
            let end = end
                .unwrap_or(total.saturating_sub(1))
                .min(total.saturating_sub(1));
            headers.push((
                "Content-Range".into(),
                format!("bytes {start}-{end}/{total}"),
            ));
            (206, start.min(total), (end + 1).max(start.min(total)))
        }
        None => (200, 0, total),
    };
    let body = bytes[start..end].to_vec();
    let mut cut_after = None;
    if request.method == "GET"
        && let Some((after, times)) = state.drops.get_mut(file)
        && *times > 0
        && body.len() > *after
    {
        *times -= 1;
        cut_after = Some(*after);
    }
    Response {
        status,
        headers,
        body,
        cut_after,
    }
}

/// `bytes=START-` or `bytes=START-END`.
fn parse_range(header: &str) -> Option<(usize, Option<usize>)> {
    let (start, end) = header.strip_prefix("bytes=")?.split_once('-')?;
    let end = if end.is_empty() {
        None
    } else {
        Some(end.parse().ok()?)
    };
    Some((start.parse().ok()?, end))
}
