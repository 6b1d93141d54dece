//! Writes survive a power loss: checked on the system calls `bpo` makes, traced by strace.
//! Every file of a model directory is fsync'ed before the directory is renamed into place, and
//! the parent directory is fsync'ed after the rename (without it, ext4 and xfs can show the new
//! name with empty files after a crash). Without strace the test prints why and passes; with
//! `BPO_REQUIRE_STRACE=1` (set in CI, which installs it) it fails instead.

mod common;

use std::path::Path;
use std::process::Command;

use common::tiny_model;

/// strace, or `None` (with the reason printed) when it cannot run here.
fn strace() -> Option<&'static str> {
    let works = Command::new("strace")
        .args(["-f", "-o", "/dev/null", "true"])
        .status()
        .is_ok_and(|s| s.success());
    match works {
        true => Some("strace"),
        false if std::env::var_os("BPO_REQUIRE_STRACE").is_some() => {
            panic!("BPO_REQUIRE_STRACE is set but strace does not run")
        }
        false => {
            eprintln!("skipped: strace is not installed or cannot trace here");
            None
        }
    }
}

/// The lines of an strace log (`-y`: file descriptors shown with their paths).
fn trace(dir: &Path, args: &[&str]) -> Vec<String> {
    let log = dir.join("strace.log");
    let status = Command::new("strace")
        .args([
            "-f",
            "-y",
            "-qq",
            "-e",
            "trace=fsync,fdatasync,rename,renameat,renameat2",
        ])
        .arg("-o")
        .arg(&log)
        .arg(env!("CARGO_BIN_EXE_bpo"))
        .args(args)
        .status()
        .unwrap();
    assert!(status.success(), "bpo {args:?} failed");
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_model_directory_is_synced_before_and_after_its_rename() {
    let Some(_) = strace() else { return };
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let out = dir.path().join("exported");
    let lines = trace(
        dir.path(),
        &["export", "--model", &model, "--out", out.to_str().unwrap()],
    );
    let parent = dir.path().canonicalize().unwrap();
    let final_name = format!("\"{}\"", out.display());
    let rename = lines
        .iter()
        .position(|l| {
            l.contains("rename") && l.contains(".exported.tmp-") && l.contains(&final_name)
        })
        .unwrap_or_else(|| {
            panic!(
                "no rename of the directory into place:\n{}",
                lines.join("\n")
            )
        });
    for file in std::fs::read_dir(&out).unwrap() {
        let name = file.unwrap().file_name().into_string().unwrap();
        let synced = lines[..rename].iter().any(|l| {
            l.contains("fsync") && l.contains(".exported.tmp-") && l.contains(&format!("/{name}>"))
        });
        assert!(
            synced,
            "{name} was not fsync'ed before the rename:\n{}",
            lines.join("\n")
        );
    }
    let parent_synced = lines[rename + 1..]
        .iter()
        .any(|l| l.contains("fsync") && l.contains(&format!("<{}>", parent.display())));
    assert!(
        parent_synced,
        "the parent directory was not fsync'ed after the rename:\n{}",
        lines.join("\n")
    );
}
