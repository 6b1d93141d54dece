//! Hugging Face Hub ids (`--model ORG/NAME[@REVISION]`) against a Hub stand-in on 127.0.0.1:
//! the first run downloads into the shared cache layout, later runs read the cache (offline,
//! or with the server gone), errors say what to do, an interrupted download is never taken as
//! whole and resumes. With `BPO_PYTHON` (a Python with huggingface_hub and transformers, as CI's
//! venv), the cache is also exchanged with huggingface_hub and transformers both ways.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use bpo_model::weights::TensorMap;
use bpo_model::weights::safetensors;
use bpo_testkit::{Access, HubServer};
use common::{bpo, bpo_hub, hub_train_config, json, python_ok, stderr, stdout, tiny_model};

const TOKEN: &str = "hf_s3cretT0ken";

/// A short greedy generation as JSON lines (equal outputs mean equal models and tokenizers).
fn generate(model: &str, env: &[(&str, &str)]) -> Output {
    let args = [
        "generate", "--model", model, "--prompt", "the good", "--greedy",
    ];
    bpo_hub(
        &[&args[..], &["--max-new-tokens", "6", "--json"]].concat(),
        env,
    )
}

fn fails_with(out: &Output, needles: &[&str]) -> String {
    common::fails_with(out, needles, &[TOKEN])
}

fn resolves(server: &HubServer) -> usize {
    let requests = server.requests();
    requests
        .iter()
        .filter(|r| r.path.contains("/resolve/"))
        .count()
}

fn repo_cache(hf_home: &Path, repo: &str) -> PathBuf {
    hf_home
        .join("hub")
        .join(format!("models--{}", repo.replace('/', "--")))
}

#[test]
fn downloads_once_then_runs_from_the_cache_offline_and_without_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let server = HubServer::start();
    let commit = server.add_dir("bpo-test/tiny", Path::new(&model), Access::Public);
    let hf_home = dir.path().join("hf");
    let home = hf_home.to_str().unwrap();
    let endpoint = server.endpoint.clone();
    let env = [("HF_HOME", home), ("HF_ENDPOINT", endpoint.as_str())];

    let local = stdout(&generate(&model, &[]));
    let first = generate("bpo-test/tiny", &env);
    assert_eq!(stdout(&first), local);
    assert!(stderr(&first).contains("downloading bpo-test/tiny/model.safetensors"));
    let cached = repo_cache(&hf_home, "bpo-test/tiny");
    let main_ref = std::fs::read_to_string(cached.join("refs/main")).unwrap();
    assert_eq!(main_ref.trim(), commit);
    let weights = cached
        .join("snapshots")
        .join(&commit)
        .join("model.safetensors");
    assert!(weights.symlink_metadata().unwrap().is_symlink());
    assert_eq!(
        std::fs::read(&weights).unwrap(),
        std::fs::read(Path::new(&model).join("model.safetensors")).unwrap()
    );
    let downloads = resolves(&server);
    assert!(downloads >= 3, "{:?}", server.requests());

    let again = generate("bpo-test/tiny", &env);
    assert_eq!(stdout(&again), local);
    assert_eq!(
        resolves(&server),
        downloads,
        "a cached file is not downloaded again"
    );
    let pinned = format!("bpo-test/tiny@{commit}");
    assert_eq!(stdout(&generate(&pinned, &env)), local);

    server.stop();
    let gone = generate("bpo-test/tiny", &env);
    assert_eq!(stdout(&gone), local);
    assert!(
        stderr(&gone).contains("cannot be reached"),
        "{}",
        stderr(&gone)
    );
    let offline_env = [env[0], env[1], ("HF_HUB_OFFLINE", "1")];
    let offline = generate("bpo-test/tiny", &offline_env);
    assert_eq!(stdout(&offline), local);
    assert!(!stderr(&offline).contains("cannot be reached"));

    let run = dir.path().join("run");
    let config = hub_train_config(dir.path(), "bpo-test/tiny", &run);
    let trained = bpo_hub(
        &["train", "--config", config.to_str().unwrap()],
        &offline_env,
    );
    assert!(trained.status.success(), "{}", stderr(&trained));
    assert!(run.join("metrics.jsonl").exists());
    let text = std::fs::read_to_string(run.join("model.json")).unwrap();
    let recorded: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(recorded["repo"], "bpo-test/tiny");
    assert_eq!(recorded["commit"], commit.as_str());
}

#[test]
fn hub_errors_say_what_to_do_and_never_show_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let server = HubServer::start();
    server.add_dir(
        "bpo-test/private",
        Path::new(&model),
        Access::Private(TOKEN.into()),
    );
    server.add_dir(
        "bpo-test/gated",
        Path::new(&model),
        Access::Gated(TOKEN.into()),
    );
    let mut pickled = BTreeMap::new();
    for name in ["config.json", "tokenizer.json"] {
        pickled.insert(
            name.into(),
            std::fs::read(Path::new(&model).join(name)).unwrap(),
        );
    }
    pickled.insert("pytorch_model.bin".into(), b"PK\x03\x04 pickle".to_vec());
    server.add_repo("bpo-test/pickled", pickled, Access::Public);
    let home = dir.path().join("hf");
    let home = home.to_str().unwrap();
    let endpoint = server.endpoint.as_str();
    let env = [("HF_HOME", home), ("HF_ENDPOINT", endpoint)];
    let with_token = |token: &'static str| [env[0], env[1], ("HF_TOKEN", token)];

    let err = fails_with(
        &generate("bpo-test/nope", &env),
        &["no such repository", "HF_TOKEN"],
    );
    assert!(err.contains("bpo-test/nope"), "{err}");
    fails_with(
        &generate("bpo-test/private", &env),
        &["or it is private", "HF_TOKEN"],
    );
    fails_with(
        &generate("bpo-test/private", &with_token("hf_wrong")),
        &["lacks access"],
    );
    stdout(&generate("bpo-test/private", &with_token(TOKEN)));
    let bearer = format!("Bearer {TOKEN}");
    assert!(
        server
            .requests()
            .iter()
            .any(|r| r.authorization.as_deref() == Some(&bearer))
    );

    fails_with(
        &generate("bpo-test/gated", &env),
        &[
            "gated",
            "accept its licence",
            &format!("{endpoint}/bpo-test/gated"),
            "HF_TOKEN",
        ],
    );
    fails_with(
        &generate("bpo-test/gated", &with_token("hf_wrong")),
        &["gated", "lacks access"],
    );
    std::fs::write(Path::new(home).join("token"), format!("{TOKEN}\n")).unwrap();
    stdout(&generate("bpo-test/gated", &env));

    fails_with(
        &generate("bpo-test/private@v9", &with_token(TOKEN)),
        &["no revision `v9`"],
    );
    fails_with(
        &generate("bpo-test/pickled", &env),
        &["pickle", "never unpickles"],
    );

    let offline = [env[0], env[1], ("HF_HUB_OFFLINE", "1")];
    fails_with(
        &generate("bpo-test/never-fetched", &offline),
        &["HF_HUB_OFFLINE is set", "lacks", "huggingface-cli download"],
    );
    let dead = [env[0], ("HF_ENDPOINT", "http://127.0.0.1:9")];
    fails_with(
        &generate("bpo-test/never-fetched", &dead),
        &["cannot reach", "HF_HUB_OFFLINE=1"],
    );
}

#[test]
fn an_interrupted_download_is_never_taken_as_whole_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let original = std::fs::read(Path::new(&model).join("model.safetensors")).unwrap();
    let server = HubServer::start();
    let commit = server.add_dir("bpo-test/tiny", Path::new(&model), Access::Public);
    let hf_home = dir.path().join("hf");
    let home = hf_home.to_str().unwrap();
    let env = [("HF_HOME", home), ("HF_ENDPOINT", server.endpoint.as_str())];
    let local = stdout(&generate(&model, &[]));

    // Every attempt (the first and its retries) drops after 1000 bytes: the run fails.
    server.drop_file("model.safetensors", 1000, 100);
    fails_with(
        &generate("bpo-test/tiny", &env),
        &["model.safetensors", "interrupted", "rerun resumes"],
    );
    let cached = repo_cache(&hf_home, "bpo-test/tiny");
    assert!(
        !cached
            .join("snapshots")
            .join(&commit)
            .join("model.safetensors")
            .exists()
    );
    let parts: Vec<PathBuf> = std::fs::read_dir(cached.join("blobs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "part"))
        .collect();
    assert_eq!(parts.len(), 1, "{parts:?}");
    let kept = std::fs::metadata(&parts[0]).unwrap().len() as usize;
    assert!(kept > 0 && kept < original.len(), "{kept}");
    let offline = [env[0], env[1], ("HF_HUB_OFFLINE", "1")];
    fails_with(
        &generate("bpo-test/tiny", &offline),
        &["lacks model.safetensors"],
    );

    // The server recovers: the rerun asks for the rest only and the file is whole.
    server.drop_file("model.safetensors", 0, 0);
    assert_eq!(stdout(&generate("bpo-test/tiny", &env)), local);
    let range = format!("bytes={kept}-");
    assert!(
        server
            .requests()
            .iter()
            .any(|r| r.range.as_deref() == Some(&range)),
        "{:?}",
        server.requests()
    );
    let weights = cached
        .join("snapshots")
        .join(&commit)
        .join("model.safetensors");
    assert_eq!(std::fs::read(weights).unwrap(), original);

    // A single drop is recovered within the run.
    let other_home = dir.path().join("hf2");
    let other = [("HF_HOME", other_home.to_str().unwrap()), env[1]];
    server.drop_file("model.safetensors", 1000, 1);
    let recovered = generate("bpo-test/tiny", &other);
    assert_eq!(stdout(&recovered), local);
    assert!(
        server
            .requests()
            .iter()
            .any(|r| r.range.as_deref() == Some("bytes=1000-"))
    );
}

#[test]
fn sharded_weights_are_fetched_by_their_index() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let sharded = dir.path().join("sharded");
    std::fs::create_dir_all(&sharded).unwrap();
    for entry in std::fs::read_dir(&model).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() != "model.safetensors" {
            std::fs::copy(entry.path(), sharded.join(entry.file_name())).unwrap();
        }
    }
    let mut all = TensorMap::new("tiny");
    safetensors::read_into(&Path::new(&model).join("model.safetensors"), &mut all).unwrap();
    let names: Vec<String> = all.tensors.keys().cloned().collect();
    let mut weight_map = serde_json::Map::new();
    for (i, chunk) in names.chunks(names.len().div_ceil(2)).enumerate() {
        let file = format!("model-0000{}-of-00002.safetensors", i + 1);
        let mut shard = TensorMap::new(file.clone());
        for name in chunk {
            shard.insert(name.clone(), all.tensors[name].clone());
            weight_map.insert(name.clone(), file.clone().into());
        }
        safetensors::write(&sharded.join(&file), &shard).unwrap();
    }
    let index = serde_json::json!({ "metadata": {}, "weight_map": weight_map });
    std::fs::write(
        sharded.join("model.safetensors.index.json"),
        index.to_string(),
    )
    .unwrap();

    let server = HubServer::start();
    server.add_dir("bpo-test/sharded", &sharded, Access::Public);
    let home = dir.path().join("hf");
    let env = [
        ("HF_HOME", home.to_str().unwrap()),
        ("HF_ENDPOINT", server.endpoint.as_str()),
    ];
    let local = stdout(&generate(&model, &[]));
    let out = generate("bpo-test/sharded", &env);
    assert_eq!(stdout(&out), local);
    assert!(stderr(&out).contains("model-00002-of-00002.safetensors"));
}

/// The cache is shared with Python both ways: huggingface_hub's `snapshot_download` fills a
/// cache bpo reads offline, and transformers loads offline what bpo downloaded.
#[test]
fn the_cache_is_shared_with_huggingface_hub_and_transformers() {
    let Some(python) = std::env::var_os("BPO_PYTHON") else {
        eprintln!("skipped: set BPO_PYTHON to a Python with huggingface_hub and transformers");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let server = HubServer::start();
    let commit = server.add_dir("bpo-test/tiny", Path::new(&model), Access::Public);
    let local = stdout(&generate(&model, &[]));

    let python_home = dir.path().join("hf-python");
    let python_home = python_home.to_str().unwrap();
    let download = python_ok(
        &python,
        "import huggingface_hub as h; print(h.snapshot_download('bpo-test/tiny'))",
        &[("HF_HOME", python_home), ("HF_ENDPOINT", &server.endpoint)],
    );
    assert!(download.trim().ends_with(&commit), "{download}");
    let offline = [("HF_HOME", python_home), ("HF_HUB_OFFLINE", "1")];
    assert_eq!(stdout(&generate("bpo-test/tiny", &offline)), local);

    let bpo_home = dir.path().join("hf-bpo");
    let bpo_home = bpo_home.to_str().unwrap();
    stdout(&generate(
        "bpo-test/tiny",
        &[("HF_HOME", bpo_home), ("HF_ENDPOINT", &server.endpoint)],
    ));
    server.stop();
    let expected = json(&bpo(&[
        "logprobs",
        "--model",
        &model,
        "--prompt",
        "the",
        "--response",
        " good",
    ]));
    let script = format!(
        "import json, torch, transformers as t\n\
         tok = t.AutoTokenizer.from_pretrained('bpo-test/tiny')\n\
         m = t.AutoModelForCausalLM.from_pretrained('bpo-test/tiny', dtype=torch.float32)\n\
         p, r = tok('the')['input_ids'], {}\n\
         lp = torch.log_softmax(m(torch.tensor([p + r])).logits[0].float(), -1)\n\
         print(json.dumps([lp[len(p) + i - 1, t].item() for i, t in enumerate(r)]))\n",
        expected["ids"]
    );
    let loaded = python_ok(
        &python,
        &script,
        &[("HF_HOME", bpo_home), ("HF_HUB_OFFLINE", "1")],
    );
    let theirs: Vec<f64> = serde_json::from_str(loaded.trim()).unwrap();
    let ours: Vec<f64> = expected["logprobs"]
        .as_array()
        .unwrap_or_else(|| panic!("{expected}"))
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(theirs.len(), ours.len());
    for (a, b) in theirs.iter().zip(&ours) {
        assert!((a - b).abs() < 1e-4, "{theirs:?} vs {ours:?}");
    }
}
