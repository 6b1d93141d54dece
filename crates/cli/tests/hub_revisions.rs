//! The Hub commit a model resolves to: a training run records it and resumes only on it; an
//! experiment pins a Hub id to the commit it loaded (against a Hub stand-in on 127.0.0.1).

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use bpo_testkit::{Access, HubServer};
use common::{bpo_hub, fails_with, hub_train_config, stderr, tiny_model};

/// A tiny model published as `bpo-test/tiny` on a Hub stand-in, with an empty `HF_HOME` for the
/// bpo a test runs.
struct Published {
    dir: tempfile::TempDir,
    model: String,
    server: HubServer,
    commit: String,
    hf_home: String,
}

fn publish_tiny() -> Published {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let server = HubServer::start();
    let commit = server.add_dir("bpo-test/tiny", Path::new(&model), Access::Public);
    let hf_home = dir.path().join("hf").to_str().unwrap().to_owned();
    Published {
        dir,
        model,
        server,
        commit,
        hf_home,
    }
}

impl Published {
    /// `HF_HOME` and `HF_ENDPOINT` pointing at the empty cache and the stand-in.
    fn env(&self) -> [(&'static str, &str); 2] {
        [
            ("HF_HOME", &self.hf_home),
            ("HF_ENDPOINT", &self.server.endpoint),
        ]
    }
}

#[test]
fn a_run_resumes_only_on_the_hub_commit_it_started_from() {
    let hub = publish_tiny();
    let (dir, model, commit, env) = (&hub.dir, &hub.model, &hub.commit, hub.env());
    let run = dir.path().join("run");
    let config = hub_train_config(dir.path(), "bpo-test/tiny", &run);
    let config = config.to_str().unwrap();
    let trained = bpo_hub(&["train", "--config", config], &env);
    assert!(trained.status.success(), "{}", stderr(&trained));
    assert!(stderr(&trained).contains(&format!("Hub commit {commit}")));
    let resume = [
        "train",
        "--config",
        config,
        "--resume",
        run.to_str().unwrap(),
    ];
    assert!(bpo_hub(&resume, &env).status.success());
    // `main` moves to a new commit: the checkpoints belong to the old weights.
    let mut files: BTreeMap<String, Vec<u8>> = std::fs::read_dir(model)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            (name, std::fs::read(e.path()).unwrap())
        })
        .collect();
    files.insert("README.md".into(), b"version 2".to_vec());
    let moved = hub.server.add_repo("bpo-test/tiny", files, Access::Public);
    assert_ne!(&moved, commit);
    let refused = bpo_hub(&resume, &env);
    let pinned = format!("bpo-test/tiny@{commit}");
    fails_with(&refused, &[commit, &moved, &pinned], &[]);
}

#[test]
fn an_experiment_pins_a_hub_model_to_the_commit_it_loaded() {
    let hub = publish_tiny();
    let (dir, commit, env) = (&hub.dir, &hub.commit, hub.env());
    let out = dir.path().join("experiment");
    let out_arg = out.to_str().unwrap();
    let sets = [
        "--set",
        "online.model=bpo-test/tiny",
        "--set",
        "eval.curve_limit=0",
    ];
    let mut args = vec!["experiment", "--quick", "--out", out_arg];
    args.extend(sets);
    let ran = bpo_hub(&args, &env);
    assert!(ran.status.success(), "{}", stderr(&ran));
    let text = std::fs::read_to_string(out.join("results.json")).unwrap();
    let results: serde_json::Value = serde_json::from_str(&text).unwrap();
    let pinned = format!("bpo-test/tiny@{commit}");
    assert_eq!(results["config"]["online"]["model"], pinned.as_str());
    for run in results["runs"].as_array().unwrap() {
        let run_dir = std::path::Path::new(run["dir"].as_str().unwrap());
        let recorded = std::fs::read_to_string(run_dir.join("model.json")).unwrap();
        assert!(recorded.contains(commit.as_str()), "{recorded}");
    }
}
