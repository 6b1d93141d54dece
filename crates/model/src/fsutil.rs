//! Atomic, durable file and directory writes: readers never see a half-written file or
//! checkpoint, and a renamed file survives a power loss.
//!
//! A rename alone is not durable on ext4 or xfs: after a crash the new name can point at an
//! empty file whose data never reached the disk. So every write here goes: data to a temporary
//! sibling, `fsync` of that file (and, for a directory, of everything in it), rename, `fsync` of
//! the parent directory (which makes the rename itself durable). Errors name the path the
//! caller asked for, never the temporary one.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::error::ModelError;

/// Writes `bytes` to `path` through a temporary file in the same directory, synced, renamed
/// into place, and the directory synced.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ModelError> {
    let tmp = sibling(path, "tmp");
    let written = File::create(&tmp)
        .and_then(|mut file| {
            file.write_all(bytes)?;
            file.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| ModelError::io(path, e));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    sync_parent(path)
}

/// Makes a rename to (or creation of) `path` durable: `fsync` of its parent directory.
pub fn sync_parent(path: &Path) -> Result<(), ModelError> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    sync_dir(parent).map_err(|e| ModelError::io(path, e))
}

/// `fsync` of a directory (a no-op where directories cannot be opened as files: Windows).
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    if cfg!(unix) {
        File::open(dir)?.sync_all()
    } else {
        Ok(())
    }
}

/// `fsync` of a file written before (Windows flushes only through a handle with write access).
fn sync_file(path: &Path) -> std::io::Result<()> {
    let file = if cfg!(unix) {
        File::open(path)?
    } else {
        std::fs::OpenOptions::new().write(true).open(path)?
    };
    file.sync_all()
}

/// `fsync` of every file and directory under `dir`, `dir` last.
fn sync_tree(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            sync_tree(&entry.path())?;
        } else if kind.is_file() {
            sync_file(&entry.path())?;
        }
    }
    sync_dir(dir)
}

/// A hidden name beside `path`, unique to this process and call.
pub fn sibling(path: &Path, tag: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{tag}-{}-{n}", std::process::id()))
}

/// Fills a directory completely before it appears at its final path.
///
/// `write` receives a fresh temporary directory beside `dir`; when it succeeds, everything in
/// it is synced and the temporary directory replaces `dir` (an existing `dir` is moved aside
/// first and removed after); when it fails the temporary directory is removed and `dir` is
/// untouched. I/O errors that `write` reports under the temporary directory are reported
/// under `dir`.
pub fn write_dir_atomic(
    dir: &Path,
    write: impl FnOnce(&Path) -> Result<(), ModelError>,
) -> Result<(), ModelError> {
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| ModelError::io(parent, e))?;
    }
    let tmp = sibling(dir, "tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir(&tmp).map_err(|e| ModelError::io(dir, e))?;
    let filled = write(&tmp)
        .map_err(|e| under(e, &tmp, dir))
        .and_then(|()| sync_tree(&tmp).map_err(|e| ModelError::io(dir, e)));
    if let Err(e) = filled {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    let old = sibling(dir, "old");
    let had_old = dir.exists();
    let moved_aside = if had_old {
        let _ = std::fs::remove_dir_all(&old);
        std::fs::rename(dir, &old)
    } else {
        Ok(())
    };
    let placed = moved_aside.and_then(|()| {
        std::fs::rename(&tmp, dir).inspect_err(|_| {
            // Put the old directory back: a failed write leaves `dir` as it was.
            if had_old {
                let _ = std::fs::rename(&old, dir);
            }
        })
    });
    if let Err(e) = placed {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(ModelError::io(dir, e));
    }
    if had_old {
        let _ = std::fs::remove_dir_all(&old);
    }
    sync_parent(dir)
}

/// `error` with a path under `tmp` renamed to the same path under `dir`.
fn under(error: ModelError, tmp: &Path, dir: &Path) -> ModelError {
    match error {
        ModelError::Io { path, error } => match path.strip_prefix(tmp) {
            Ok(rest) => ModelError::io(dir.join(rest), error),
            Err(_) => ModelError::Io { path, error },
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_requested_path_and_leave_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no-such-dir").join("file.json");
        let err = write_atomic(&missing, b"x").unwrap_err().to_string();
        assert!(err.starts_with(&missing.display().to_string()), "{err}");
        assert!(!err.contains(".tmp-"), "{err}");

        let target = dir.path().join("model");
        let err = write_dir_atomic(&target, |tmp| {
            write_atomic(&tmp.join("sub").join("config.json"), b"{}")
        })
        .unwrap_err()
        .to_string();
        let expected = target.join("sub").join("config.json");
        assert!(err.starts_with(&expected.display().to_string()), "{err}");
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn a_directory_replaces_the_old_one_whole() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("ckpt");
        for text in ["first", "second"] {
            write_dir_atomic(&target, |tmp| {
                write_atomic(&tmp.join("state.json"), text.as_bytes())
            })
            .unwrap();
        }
        let text = std::fs::read_to_string(target.join("state.json")).unwrap();
        assert_eq!(text, "second");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
