//! Running the `bpo` binary in tests, on a tiny model created by the test (no download).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use bpo_testkit::{GgufWriter, tokenizer_metadata};

/// The standard error of a run, as text.
#[allow(dead_code)]
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs `bpo` with `args` and waits for it.
pub fn bpo(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bpo"))
        .args(args)
        .output()
        .expect("bpo runs")
}

/// Runs `bpo` with the Hugging Face Hub settings of `env` only (none inherited from the caller).
#[allow(dead_code)]
pub fn bpo_hub(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_bpo"));
    for var in [
        "HF_HOME",
        "HF_HUB_CACHE",
        "HUGGINGFACE_HUB_CACHE",
        "HF_TOKEN",
        "HF_TOKEN_PATH",
        "HF_HUB_OFFLINE",
        "HF_ENDPOINT",
    ] {
        command.env_remove(var);
    }
    command
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("bpo runs")
}

/// Asserts that a run failed as a user error (exit code 1) with every needle in its stderr and
/// none of `secrets`; returns the stderr.
#[allow(dead_code)]
pub fn fails_with(out: &Output, needles: &[&str], secrets: &[&str]) -> String {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for needle in needles {
        assert!(err.contains(needle), "`{needle}` not in: {err}");
    }
    for secret in secrets {
        assert!(!err.contains(secret), "`{secret}` leaked: {err}");
    }
    err
}

/// Runs `python -c code` with the Hub settings of `env` only (`HF_HUB_OFFLINE` and the others
/// not inherited) and returns its standard output; a failure fails the test with its stderr.
#[allow(dead_code)]
pub fn python_ok(python: &std::ffi::OsStr, code: &str, env: &[(&str, &str)]) -> String {
    let mut command = Command::new(python);
    for var in [
        "HF_HOME",
        "HF_HUB_CACHE",
        "HF_TOKEN",
        "HF_HUB_OFFLINE",
        "HF_ENDPOINT",
    ] {
        command.env_remove(var);
    }
    let out = command
        .args(["-c", code])
        .envs(env.iter().copied())
        .output()
        .expect("python runs");
    assert!(out.status.success(), "python failed: {}", stderr(&out));
    String::from_utf8(out.stdout).unwrap()
}

/// The standard output of a successful run (fails the test with stderr otherwise).
pub fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "bpo failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// The standard output of a successful run, parsed as JSON.
#[allow(dead_code)]
pub fn json(out: &Output) -> serde_json::Value {
    serde_json::from_str(stdout(out).trim()).unwrap()
}

/// A tokenizer-only GGUF file and a tiny model initialised from it.
pub fn tiny_model(dir: &Path) -> String {
    let tok = dir.join("tokenizer.gguf");
    std::fs::write(&tok, tokenizer_metadata(GgufWriter::new()).to_bytes()).unwrap();
    let model = dir.join("tiny");
    let out = bpo(&[
        "init",
        "--arch",
        "llama",
        "--preset",
        "tiny",
        "--tokenizer",
        tok.to_str().unwrap(),
        "--out",
        model.to_str().unwrap(),
    ]);
    assert!(stdout(&out).contains("parameters"));
    model.to_str().unwrap().to_owned()
}

/// Writes `train.toml` into `dir`: one DPO step (2 pairs of the data crate's fixture) of `model`
/// into `run`; returns its path.
#[allow(dead_code)]
pub fn hub_train_config(dir: &Path, model: &str, run: &Path) -> PathBuf {
    let pairs = format!(
        "{}/../data/tests/fixtures/pairs_explicit.jsonl",
        env!("CARGO_MANIFEST_DIR")
    );
    let config = dir.join("train.toml");
    let text = format!(
        "model = \"{model}\"\n[data]\ntrain = \"{pairs}\"\n[run]\nout = \"{}\"\n\
         batch_size = 2\nmax_steps = 1\n",
        run.display()
    );
    std::fs::write(&config, text).unwrap();
    config
}
