//! `bpo experiment --frontier`: every method over a grid of betas, compared at matched KL; an
//! experiment that grows reuses its finished runs.

mod common;

use common::{bpo, tiny_model};

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_frontier_runs_every_beta_and_grows_by_reusing_finished_runs() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let out = dir.path().join("frontier");
    let config = dir.path().join("frontier.toml");
    std::fs::write(
        &config,
        format!(
            "out = \"{}\"\n[online]\nmodel = \"{model}\"\n[frontier]\nbetas = [0.1, 1.0]\n",
            out.display()
        ),
    )
    .unwrap();
    let run = |seeds: &str| {
        let output = bpo(&[
            "experiment",
            "--quick",
            "--frontier",
            "--seeds",
            seeds,
            "--config",
            config.to_str().unwrap(),
        ]);
        assert!(output.status.success(), "{}", stderr(&output));
        output
    };
    // One seed: 3 methods x 2 betas, all trained.
    let first = run("1");
    assert!(!stderr(&first).contains("reusing"), "{}", stderr(&first));
    let results = || -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap()
    };
    let one_seed = results();
    assert_eq!(one_seed["runs"].as_array().unwrap().len(), 6);
    // A second seed: the first seed's runs and the initial evaluation are reused, not trained.
    let second = run("2");
    let log = stderr(&second);
    assert_eq!(log.matches("reusing the finished run").count(), 6, "{log}");
    assert!(
        log.contains("reusing the initial policy's evaluation"),
        "{log}"
    );
    let two_seeds = results();
    let runs = two_seeds["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 12);
    for old in one_seed["runs"].as_array().unwrap() {
        assert!(runs.contains(old), "a reused run is the stored one");
    }
    let mut betas: Vec<f64> = runs
        .iter()
        .map(|r| r["settings"]["beta"].as_f64().unwrap())
        .collect();
    betas.sort_by(f64::total_cmp);
    betas.dedup();
    assert_eq!(betas, vec![0.1, 1.0]);
    // Every run kept its KL samples; every method has a frontier of two points.
    for r in runs {
        assert!(!r["report"]["kl_log_ratios"].as_array().unwrap().is_empty());
        assert_eq!(
            r["curve"].as_array().unwrap().len(),
            0,
            "a frontier draws no curves"
        );
    }
    let frontier = &two_seeds["frontier"];
    let curves = frontier["curves"].as_array().unwrap();
    assert_eq!(curves.len(), 3);
    for c in curves {
        let points = c["points"].as_array().unwrap();
        assert_eq!(points.len(), 2);
        assert_eq!(points[0]["kl_per_seed"].as_array().unwrap().len(), 2);
    }
    // BPO - online DAP, BPO - offline, online - offline; gold and held-out.
    assert_eq!(frontier["comparisons"].as_array().unwrap().len(), 6);
    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    assert!(md.contains("### Frontiers"), "{md}");
    assert!(
        md.contains("| BPO (F=2) - online DAP (F=2) | gold |"),
        "{md}"
    );
    assert!(out.join("frontier_gold_dpo.png").exists());
    // Pairwise comparisons are at equal beta only.
    assert!(
        md.contains("BPO (F=2, beta 0.1) vs online DAP (F=2, beta 0.1)"),
        "{md}"
    );
    assert!(
        !md.contains("BPO (F=2, beta 1) vs online DAP (F=2, beta 0.1)"),
        "{md}"
    );
    // The statistics are recomputed by --report-only; what an older bpo stored is not read.
    let mut old = two_seeds.clone();
    old["frontier"] = serde_json::json!({"curves": "an older layout"});
    old["rows"] = serde_json::json!([]);
    std::fs::write(out.join("results.json"), old.to_string()).unwrap();
    let out_dir = out.to_str().unwrap();
    let rewritten = bpo(&["experiment", "--report-only", "--out", out_dir]);
    assert!(rewritten.status.success(), "{}", stderr(&rewritten));
    assert_eq!(std::fs::read_to_string(out.join("results.md")).unwrap(), md);
    // Other settings for a run: trained again, not reused.
    let changed = bpo(&[
        "experiment",
        "--quick",
        "--frontier",
        "--seeds",
        "1",
        "--config",
        config.to_str().unwrap(),
        "--set",
        "online.optim.lr=0.002",
    ]);
    assert!(changed.status.success(), "{}", stderr(&changed));
    assert!(!stderr(&changed).contains("reusing the finished run"));
}
