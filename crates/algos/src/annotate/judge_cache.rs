//! The on-disk cache of an LLM judge's judgments: one JSON line per judgment, keyed by a hash
//! of everything that decides the answer, appended (and flushed) as each arrives. A run that
//! is resumed or repeated reads it instead of asking again; the raw replies stay for audit.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::error::AlgoError;

/// One judgment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Judgment {
    /// The parsed score; `None` when the reply was not an allowed answer.
    pub score: Option<f64>,
    /// The judge's raw reply (the message content, or an excerpt of a body without one).
    pub reply: String,
    /// Prompt tokens the API reported.
    pub prompt_tokens: u64,
    /// Completion tokens the API reported.
    pub completion_tokens: u64,
}

#[derive(Serialize, Deserialize)]
struct Line {
    key: String,
    #[serde(flatten)]
    judgment: Judgment,
}

/// The judgments by key, and the file they are appended to (none: in memory only).
pub struct JudgeCache {
    path: Option<PathBuf>,
    entries: Mutex<HashMap<String, Judgment>>,
    file: Mutex<Option<File>>,
}

impl JudgeCache {
    /// Reads the cache at `path` (a missing file is an empty cache, an unreadable one an error).
    /// A last line cut short by a killed run is dropped (a whole one without its newline is
    /// ended); any other unreadable line is an error naming it.
    pub fn open(path: Option<&Path>) -> Result<Self, AlgoError> {
        let mut entries = HashMap::new();
        let mut file = None;
        if let Some(path) = path {
            let text = match std::fs::read_to_string(path) {
                Ok(text) => Some(text),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(AlgoError::io(path, e)),
            };
            if let Some(text) = text {
                let lines: Vec<&str> = text.lines().collect();
                for (n, line) in lines.iter().enumerate() {
                    match serde_json::from_str::<Line>(line) {
                        Ok(l) => {
                            entries.insert(l.key, l.judgment);
                        }
                        Err(_) if n + 1 == lines.len() && !text.ends_with('\n') => {}
                        Err(e) => {
                            return Err(AlgoError::Annotator(format!(
                                "{} line {}: {e}",
                                path.display(),
                                n + 1
                            )));
                        }
                    }
                }
                if !text.is_empty() && !text.ends_with('\n') {
                    // A last line without its newline: ended if it is whole (it was read), else
                    // dropped, so that the next append starts a fresh line.
                    let start = text.rfind('\n').map_or(0, |i| i + 1);
                    let mut f = OpenOptions::new()
                        .append(true)
                        .open(path)
                        .map_err(|e| AlgoError::io(path, e))?;
                    let fixed = match serde_json::from_str::<Line>(&text[start..]).is_ok() {
                        true => f.write_all(b"\n"),
                        false => f.set_len(start as u64),
                    };
                    fixed.map_err(|e| AlgoError::io(path, e))?;
                }
            }
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| AlgoError::io(dir, e))?;
            }
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| AlgoError::io(path, e))?;
            file = Some(f);
        }
        Ok(JudgeCache {
            path: path.map(Path::to_path_buf),
            entries: Mutex::new(entries),
            file: Mutex::new(file),
        })
    }

    /// The judgment of `key`, if the cache holds one.
    pub fn get(&self, key: &str) -> Option<Judgment> {
        self.entries.lock().expect("lock").get(key).cloned()
    }

    /// Records a judgment: appended to the file (one write, flushed), then kept in memory.
    pub fn insert(&self, key: &str, judgment: Judgment) -> Result<(), AlgoError> {
        let line = Line {
            key: key.to_owned(),
            judgment,
        };
        let mut text = serde_json::to_string(&line).expect("json");
        text.push('\n');
        if let Some(file) = self.file.lock().expect("lock").as_mut() {
            let path = self.path.as_deref().unwrap_or(Path::new("judge cache"));
            file.write_all(text.as_bytes())
                .and_then(|()| file.flush())
                .map_err(|e| AlgoError::io(path, e))?;
        }
        self.entries
            .lock()
            .expect("lock")
            .insert(line.key, line.judgment);
        Ok(())
    }
}
