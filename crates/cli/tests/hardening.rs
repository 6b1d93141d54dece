//! Broken input never panics and never passes silently: each case ends with exit code 1 and a
//! message naming the flag, file, field or limit. Also: a run killed with SIGKILL resumes to
//! exactly the result of an uninterrupted run.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bpo_model::weights::TensorMap;
use bpo_model::weights::safetensors;
use common::{bpo, stderr, stdout, tiny_model};

/// Runs `bpo` and returns its stderr, asserting that it failed with exit code 1.
fn fails(args: &[&str]) -> String {
    let out = bpo(args);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
    stderr(&out)
}

fn fixture(name: &str) -> String {
    format!(
        "{}/../data/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

#[test]
fn numeric_flags_name_themselves_and_reject_bad_values() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let generate = |flag: &str, value: &str| {
        fails(&["generate", "--model", &model, "--prompt", "x", flag, value])
    };
    for (flag, value, expected) in [
        ("--temperature", "-1", "> 0"),
        ("--top-p", "-0.5", "(0, 1]"),
        ("--top-k", "-3", "non-negative"),
        ("--seed", "-1", "non-negative"),
        ("--batch-size", "0", "at least 1"),
        ("--max-new-tokens", "0", "at least 1"),
        ("--num-samples", "0", "at least 1"),
    ] {
        let err = generate(flag, value);
        assert!(
            err.contains(flag) && err.contains(expected),
            "{flag}: {err}"
        );
    }
    let err = fails(&["experiment", "--seeds", "0"]);
    assert!(
        err.contains("--seeds") && err.contains("at least 1"),
        "{err}"
    );
}

#[test]
fn sequences_past_the_context_are_rejected_with_the_length_and_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let long = "x".repeat(1100);
    let err = fails(&[
        "logprobs",
        "--model",
        &model,
        "--prompt",
        "a",
        "--response",
        &long,
    ]);
    assert!(
        err.contains("1024 positions") && err.contains("1101 tokens"),
        "{err}"
    );

    let pairs = dir.path().join("long.jsonl");
    std::fs::write(
        &pairs,
        format!("{{\"prompt\": \"a\", \"chosen\": \"{long}\", \"rejected\": \"b\"}}\n"),
    )
    .unwrap();
    let config = dir.path().join("dpo.toml");
    std::fs::write(
        &config,
        format!(
            "model = \"{model}\"\n[data]\ntrain = \"{}\"\n[run]\nout = \"{}\"\n",
            pairs.display(),
            dir.path().join("run").display()
        ),
    )
    .unwrap();
    let err = fails(&["train", "--config", config.to_str().unwrap()]);
    assert!(
        err.contains("long.jsonl pair 1") && err.contains("1024 positions"),
        "{err}"
    );
}

/// A copy of the model directory `model` with its weights rewritten by `edit`.
fn broken_copy(model: &str, name: &str, edit: impl FnOnce(&Path)) -> String {
    let out = Path::new(model).with_file_name(name);
    std::fs::create_dir_all(&out).unwrap();
    for entry in std::fs::read_dir(model).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), out.join(entry.file_name())).unwrap();
    }
    edit(&out);
    out.display().to_string()
}

fn edit_tensors(dir: &Path, edit: impl FnOnce(&mut TensorMap)) {
    let file = dir.join("model.safetensors");
    let mut map = TensorMap::new("test");
    safetensors::read_into(&file, &mut map).unwrap();
    edit(&mut map);
    safetensors::write(&file, &map).unwrap();
}

fn edit_config(dir: &Path, key: &str, value: serde_json::Value) {
    let path = dir.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    match value {
        serde_json::Value::Null => config.as_object_mut().unwrap().remove(key),
        value => config
            .as_object_mut()
            .unwrap()
            .insert(key.to_owned(), value),
    };
    std::fs::write(&path, config.to_string()).unwrap();
}

#[test]
fn info_validates_the_weights_of_a_model_directory() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let weights = |d: &Path| d.join("model.safetensors");
    let cases: Vec<(String, &str)> = vec![
        (
            broken_copy(&model, "truncated", |d| {
                let bytes = std::fs::read(weights(d)).unwrap();
                std::fs::write(weights(d), &bytes[..bytes.len() / 2]).unwrap();
            }),
            "model.safetensors",
        ),
        (
            broken_copy(&model, "garbage-header", |d| {
                let mut bytes = 16u64.to_le_bytes().to_vec();
                bytes.extend_from_slice(b"this is not json");
                std::fs::write(weights(d), bytes).unwrap();
            }),
            "not a valid safetensors file",
        ),
        (
            broken_copy(&model, "huge-header", |d| {
                std::fs::write(weights(d), u64::MAX.to_le_bytes()).unwrap();
            }),
            "not a valid safetensors file",
        ),
        (
            broken_copy(&model, "missing-tensor", |d| {
                edit_tensors(d, |m| {
                    m.tensors.remove("model.layers.1.mlp.up_proj.weight");
                })
            }),
            "missing tensor `model.layers.1.mlp.up_proj.weight`",
        ),
        (
            broken_copy(&model, "misshaped-tensor", |d| {
                edit_tensors(d, |m| {
                    let t = m.tensors.get_mut("model.norm.weight").unwrap();
                    t.shape = vec![t.data.len() / 2, 2];
                })
            }),
            "tensor `model.norm.weight` has shape",
        ),
        (
            broken_copy(&model, "huge-config", |d| {
                edit_config(d, "hidden_size", serde_json::json!(1u64 << 40))
            }),
            "hidden_size",
        ),
        (
            broken_copy(&model, "heads-do-not-divide", |d| {
                edit_config(d, "num_attention_heads", serde_json::json!(6));
                edit_config(d, "head_dim", serde_json::Value::Null);
            }),
            "`num_attention_heads` (6) must divide `hidden_size` (64)",
        ),
    ];
    for (broken, expected) in cases {
        let err = fails(&["info", "--model", &broken]);
        assert!(err.contains(expected), "{broken}: {err}");
    }
}

#[test]
fn config_is_validated_before_any_work_and_io_errors_name_the_users_path_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("dpo.toml");
    std::fs::write(
        &config,
        format!(
            "model = \"/no/such/model\"\n[data]\ntrain = \"{}\"\n[run]\nout = \"{}\"\n[optim]\nlr = -1.0\n",
            fixture("pairs_explicit.jsonl"),
            dir.path().join("run").display()
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let err = fails(&["train", "--config", config]);
    assert!(
        err.contains("optim.lr") && !err.contains("/no/such/model"),
        "{err}"
    );

    for args in [
        &["data", "validate", "/no/such/pairs.jsonl"][..],
        &["train", "--config", "/no/such/config.toml"],
    ] {
        let err = fails(args);
        assert_eq!(err.matches("os error 2").count(), 1, "{err}");
        assert!(err.contains("/no/such/"), "{err}");
    }

    // An output directory that cannot be created is named as given.
    let err = fails(&[
        "train",
        "--config",
        config,
        "--set",
        "optim.lr=1e-3",
        "--set",
        "run.out=/proc/bpo-test/run",
    ]);
    assert!(err.contains("/proc/bpo-test/run"), "{err}");
    assert!(!err.contains("reference-cache"), "{err}");
}

fn train_config(dir: &Path, model: &str, out: &Path) -> PathBuf {
    let config = dir.join(format!(
        "{}.toml",
        out.file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(
        &config,
        format!(
            "model = \"{model}\"\n[data]\ntrain = \"{}\"\n[optim]\nlr = 1e-3\n[run]\nout = \"{}\"\nbatch_size = 2\nepochs = 150\nsave_every = 3\nkeep_checkpoints = 3\n",
            fixture("pairs_explicit.jsonl"),
            out.display()
        ),
    )
    .unwrap();
    config
}

#[test]
fn a_run_killed_with_sigkill_resumes_to_the_uninterrupted_result() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let full = dir.path().join("full");
    let config = train_config(dir.path(), &model, &full);
    stdout(&bpo(&["train", "--config", config.to_str().unwrap()]));

    let killed = dir.path().join("killed");
    let config = train_config(dir.path(), &model, &killed);
    let config = config.to_str().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_bpo"))
        .args(["train", "--config", config])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !killed.join("checkpoints/step-000012").exists() {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no checkpoint"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "finished before the kill"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // What a kill in the middle of writing a checkpoint leaves behind.
    let stale = killed.join("checkpoints/.step-000099.tmp-4242-0");
    std::fs::create_dir_all(&stale).unwrap();
    std::fs::write(stale.join("member-0.bpk"), b"partial").unwrap();
    let before = std::fs::read_to_string(killed.join("metrics.jsonl")).unwrap();

    let resume = [
        "train",
        "--config",
        config,
        "--resume",
        killed.to_str().unwrap(),
    ];
    stdout(&bpo(&resume));
    assert!(
        !stale.exists(),
        "a stale temporary checkpoint survived the resume"
    );
    let weights = |run: &Path| std::fs::read(run.join("model/model.safetensors")).unwrap();
    assert!(weights(&killed) == weights(&full), "resumed weights differ");
    // Lines written before the kill are kept byte for byte.
    let after = std::fs::read_to_string(killed.join("metrics.jsonl")).unwrap();
    let kept: Vec<&str> = before.lines().take(12).collect();
    assert_eq!(after.lines().take(12).collect::<Vec<_>>(), kept);
    assert_eq!(after.lines().count(), 150 * 2);
}

/// A write that fails names the path the user gave, never the temporary file or directory
/// bpo writes through (`/proc/.forbidden.tmp-25218-0` before).
#[test]
fn failed_writes_name_the_users_path() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let tok = dir.path().join("tokenizer.gguf");
    let target = "/proc/forbidden";
    for args in [
        &[
            "init",
            "--tokenizer",
            tok.to_str().unwrap(),
            "--out",
            target,
        ][..],
        &["export", "--model", &model, "--out", target][..],
    ] {
        let err = fails(args);
        assert!(err.contains(&format!("{target}:")), "{args:?}: {err}");
        assert!(!err.contains(".tmp-"), "{args:?}: {err}");
    }
}
