//! End-to-end runs of the `bpo` binary on a tiny model created by the test (no download).

mod common;

use common::{bpo, json, stdout, tiny_model};

#[test]
fn init_info_tokenize_generate_logprobs() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());

    let info = json(&bpo(&["info", "--model", &model, "--json"]));
    assert_eq!(info["architecture"], "llama");
    assert_eq!(info["layers"], 2);
    assert_eq!(info["tokenizer"]["eos"], "<|im_end|>");

    let tok = json(&bpo(&[
        "tokenize",
        "--model",
        &model,
        "--text",
        " the good",
    ]));
    assert_eq!(tok["tokens"], serde_json::json!(["Ġthe", "Ġgood"]));

    let args = [
        "generate",
        "--model",
        &model,
        "--prompt",
        "the",
        "--prompt",
        "good",
        "--max-new-tokens",
        "5",
    ];
    let sampled = bpo(&[&args[..], &["--json", "--seed", "9", "--num-samples", "2"]].concat());
    let lines: Vec<serde_json::Value> = stdout(&sampled)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    for line in &lines {
        let n = line["token_ids"].as_array().unwrap().len();
        assert!((1..=5).contains(&n));
        assert_eq!(line["logprobs"].as_array().unwrap().len(), n);
    }
    let again = bpo(&[&args[..], &["--json", "--seed", "9", "--num-samples", "2"]].concat());
    assert_eq!(stdout(&sampled), stdout(&again), "same seed, same samples");
    assert!(
        bpo(&[&args[..], &["--greedy", "--chat"]].concat())
            .status
            .success()
    );

    let lp = json(&bpo(&[
        "logprobs",
        "--model",
        &model,
        "--prompt",
        "the",
        "--response",
        " good",
    ]));
    let values = lp["logprobs"].as_array().unwrap();
    let sum: f64 = values.iter().map(|v| v.as_f64().unwrap()).sum();
    assert!((sum - lp["sum"].as_f64().unwrap()).abs() < 1e-4);
    assert!(values.iter().all(|v| v.as_f64().unwrap() < 0.0));
}

#[test]
fn user_errors_exit_non_zero_with_a_message() {
    let out = bpo(&["info", "--model", "/no/such/model"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such file or directory"));

    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let out = bpo(&[
        "--device", "tpu", "generate", "--model", &model, "--prompt", "x",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown device `tpu`"));
    let out = bpo(&[
        "generate", "--model", &model, "--prompt", "x", "--top-p", "2",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("top-p"));
    let out = bpo(&["fetch", "gpt-5"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown model `gpt-5`"));
}

#[test]
fn online_help_lists_every_reference_mode() {
    let help = stdout(&bpo(&["online", "--help"]));
    for mode in bpo_algos::ReferenceMode::ALL {
        let name = serde_json::to_string(&mode).unwrap();
        let line = format!("reference.mode = {name}");
        assert!(help.contains(&line), "`{line}` missing from:\n{help}");
    }
}

/// On a headless machine with Mesa (no display, `XDG_RUNTIME_DIR` unset) the default device
/// probe used to print libwayland's "error: XDG_RUNTIME_DIR is invalid" twice through wgpu's
/// OpenGL probe, then run on the CPU. A successful run prints no `error`.
#[test]
fn the_default_device_probe_prints_no_error() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    for args in [
        &[
            "generate",
            "--model",
            &model,
            "--prompt",
            "x",
            "--max-new-tokens",
            "2",
        ][..],
        &["info", "--devices"][..],
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_bpo"))
            .args(args)
            .env_remove("XDG_RUNTIME_DIR")
            .env_remove("WAYLAND_DISPLAY")
            .env_remove("DISPLAY")
            .output()
            .unwrap();
        stdout(&out);
        let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
        assert!(!err.contains("error"), "{args:?}: {err}");
    }
}

fn data_fixture(name: &str) -> String {
    format!(
        "{}/../data/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

#[test]
fn data_validate_and_stats() {
    let good = bpo(&["data", "validate", &data_fixture("pairs_explicit.jsonl")]);
    assert!(stdout(&good).contains("3 valid records (3 pairs, 0 prompts), 0 skipped"));

    let broken = data_fixture("broken_missing_field.jsonl");
    let strict = bpo(&["data", "validate", &broken]);
    assert_eq!(strict.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&strict.stderr).contains("line 3: field `rejected`: is missing")
    );
    let skipping = bpo(&["data", "validate", &broken, "--skip-invalid"]);
    assert_eq!(skipping.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&skipping.stdout).contains("3 valid records"));
    assert!(String::from_utf8_lossy(&skipping.stderr).contains("line 3: field `rejected`"));

    let s = json(&bpo(&[
        "data",
        "stats",
        &data_fixture("prompts.jsonl"),
        "--json",
    ]));
    assert_eq!(s["prompts"], 3);
    assert_eq!(s["unit"], "chars");
    let sentiment = format!(
        "{}/../../data/sentiment/train.jsonl",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = stdout(&bpo(&["data", "stats", &sentiment]));
    assert!(text.contains("5000 records"), "{text}");
}

#[test]
fn train_and_sft_from_toml_with_overrides() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let config = dir.path().join("dpo.toml");
    std::fs::write(
        &config,
        format!(
            "model = \"{model}\"\n[data]\ntrain = \"{}\"\n[loss]\nkind = \"ipo\"\n[run]\nout = \"{}\"\nbatch_size = 2\nepochs = 3\n",
            data_fixture("pairs_explicit.jsonl"),
            dir.path().join("run").display()
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let out = bpo(&[
        "train",
        "--config",
        config,
        "--set",
        "run.max_steps=2",
        "--set",
        "optim.lr=1e-3",
    ]);
    let last = json(&out);
    assert_eq!(last["step"], 2.0);
    assert!(last["rewards/accuracies"].is_number());
    assert!(dir.path().join("run/metrics.jsonl").exists());

    let bad = bpo(&[
        "train",
        "--config",
        config,
        "--set",
        "optim.learning_rate=1",
    ]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("learning_rate"));

    let sft = dir.path().join("sft.toml");
    std::fs::write(
        &sft,
        format!(
            "model = \"{model}\"\n[data]\ntrain = \"{}\"\n[run]\nout = \"{}\"\nbatch_size = 1\nmax_steps = 2\n",
            data_fixture("prompts.jsonl").replace("prompts.jsonl", "pairs_explicit.jsonl"),
            dir.path().join("sft").display()
        ),
    )
    .unwrap();
    let last = json(&bpo(&["sft", "--config", sft.to_str().unwrap()]));
    assert_eq!(last["step"], 2.0);
}

#[test]
fn online_bpo_then_eval_with_a_paired_comparison() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let config = dir.path().join("online.toml");
    std::fs::write(
        &config,
        format!(
            "model = \"{model}\"\nbudget = 8\nphases = 2\n[annotator]\nkind = \"count\"\npattern = \"e\"\n[sampling]\nmax_new_tokens = 6\nsamples_per_prompt = 4\n[run]\nout = \"{}\"\nbatch_size = 2\n",
            dir.path().join("run").display()
        ),
    )
    .unwrap();
    let out = bpo(&["online", "--config", config.to_str().unwrap()]);
    let text = stdout(&out);
    let phases: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(phases.len(), 2);
    assert!(phases[1]["kl/behavior_initial"].is_number());
    let trained = dir.path().join("run/model");
    assert!(dir.path().join("run/pairs/phase-02.jsonl").exists());
    let report = dir.path().join("eval.json");
    let out = bpo(&[
        "eval",
        "--model",
        trained.to_str().unwrap(),
        "--compare",
        &model,
        "--initial",
        &model,
        "--prompts",
        "sentiment:dev",
        "--limit",
        "6",
        "--max-new-tokens",
        "4",
        "--out",
        report.to_str().unwrap(),
    ]);
    let lines: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["prompts"], 6);
    assert!(
        lines[0]["heldout"][0]
            .as_str()
            .unwrap()
            .starts_with("afinn")
    );
    assert!(lines[2]["p_value"].as_f64().unwrap() <= 1.0);
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(report).unwrap()).unwrap();
    assert_eq!(doc["reports"][0]["wins"].as_array().unwrap().len(), 6);
    let bad = bpo(&["eval", "--model", &model, "--gold", "nonsense"]);
    assert!(!bad.status.success());
}

#[test]
fn experiment_quick_runs_all_three_methods_and_writes_a_report() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let out = dir.path().join("experiment");
    let config = dir.path().join("experiment.toml");
    std::fs::write(
        &config,
        format!(
            "out = \"{}\"\n[online]\nmodel = \"{model}\"\n[eval]\ncurve_limit = 2\n",
            out.display()
        ),
    )
    .unwrap();
    let report = stdout(&bpo(&[
        "experiment",
        "--quick",
        "--config",
        config.to_str().unwrap(),
    ]));
    for method in ["initial policy", "offline DAP", "online DAP", "BPO"] {
        assert!(report.contains(&format!("| {method} |")), "{report}");
    }
    assert!(report.contains("BPO (F=2) vs offline DAP"));
    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    assert_eq!(md.trim(), report.trim());
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    let runs = results["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 3);
    for run in runs {
        let win = run["report"]["win_rate"]["value"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&win));
        assert_eq!(run["report"]["prompts"], 8);
        assert_eq!(
            run["curve"].as_array().unwrap().len(),
            1 + run["phases"].as_u64().unwrap() as usize
        );
        assert!(
            std::path::Path::new(run["dir"].as_str().unwrap())
                .join("pairs/phase-01.jsonl")
                .exists()
        );
    }
    assert_eq!(results["rows"].as_array().unwrap().len(), 4);
    assert!(out.join("win_rate_vs_pairs_dpo.png").exists());
    // The report can be rewritten from results.json alone, with the same statistics.
    std::fs::remove_file(out.join("results.md")).unwrap();
    let rewritten = stdout(&bpo(&[
        "experiment",
        "--report-only",
        "--out",
        out.to_str().unwrap(),
    ]));
    assert_eq!(rewritten.trim(), md.trim());
    let refused = bpo(&["experiment", "--report-only", "--seeds", "2", "--out", "x"]);
    assert!(!refused.status.success());
}
