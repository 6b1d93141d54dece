//! Parquet and Hub datasets through the binary: the same training run from pairs.jsonl and
//! pairs.parquet, `bpo data convert`, and `hf:ORG/NAME[/CONFIG][:SPLIT][@REVISION]` against a Hub
//! stand-in on 127.0.0.1 (download once into the shared cache, offline reads, the Parquet
//! conversion branch, errors that list the splits). With `BPO_PYTHON` (CI's venv), the cache is
//! exchanged with huggingface_hub and bpo's Parquet is read by `datasets.load_dataset`.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;

use bpo_testkit::{Access, HubServer};
use common::{bpo, bpo_hub, json, python_ok, stderr, stdout, tiny_model};

fn data_fixture(name: &str) -> String {
    format!(
        "{}/../data/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn fails_with(out: &Output, needles: &[&str]) {
    common::fails_with(out, needles, &["hf_t0ken"]);
}

/// `jsonl` converted to Parquet by bpo, as bytes.
fn parquet_of(jsonl: &str, dir: &Path) -> Vec<u8> {
    let out = dir.join("converted.parquet");
    let done = bpo(&["data", "convert", jsonl, out.to_str().unwrap()]);
    assert!(done.status.success(), "{}", stderr(&done));
    std::fs::read(out).unwrap()
}

#[test]
fn the_same_run_from_jsonl_and_parquet_gives_identical_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let jsonl = data_fixture("pairs_explicit.jsonl");
    let parquet = dir.path().join("pairs.parquet");
    let converted = bpo(&["data", "convert", &jsonl, parquet.to_str().unwrap()]);
    assert!(
        stdout(&converted).contains("3 pairs written (0 skipped)"),
        "{}",
        stderr(&converted)
    );
    let metrics = |data: &str, run: &str| {
        let out = dir.path().join(run);
        let last = json(&bpo(&[
            "train",
            "--config",
            &format!(
                "{}/../../examples/configs/dpo_full_tiny.toml",
                env!("CARGO_MANIFEST_DIR")
            ),
            "--set",
            &format!("model=\"{model}\""),
            "--set",
            &format!("data.train=\"{data}\""),
            "--set",
            &format!("run.out=\"{}\"", out.display()),
            "--set",
            "run.max_steps=3",
        ]));
        assert_eq!(last["step"], 3.0);
        std::fs::read_to_string(out.join("metrics.jsonl")).unwrap()
    };
    let from_jsonl = metrics(&jsonl, "run-jsonl");
    let from_parquet = metrics(parquet.to_str().unwrap(), "run-parquet");
    let strip_time = |text: &str| -> Vec<serde_json::Value> {
        text.lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                let map = v.as_object_mut().unwrap();
                map.retain(|k, _| !k.contains("time") && !k.contains("per_s"));
                v
            })
            .collect()
    };
    assert_eq!(strip_time(&from_jsonl), strip_time(&from_parquet));
}

/// Publishes `bpo-test/prefs`: split `train` in two different shards (pairs_explicit, then
/// pairs_implicit), split `test` (pairs_conversational), a README.
fn publish_prefs(server: &HubServer, dir: &Path) -> String {
    let shard = |name: &str| parquet_of(&data_fixture(name), dir);
    let files = BTreeMap::from([
        ("README.md".to_owned(), b"---\nlicense: mit\n---\n".to_vec()),
        (
            "data/train-00000-of-00002.parquet".to_owned(),
            shard("pairs_explicit.jsonl"),
        ),
        (
            "data/train-00001-of-00002.parquet".to_owned(),
            shard("pairs_implicit.jsonl"),
        ),
        (
            "data/test-00000-of-00001.parquet".to_owned(),
            shard("pairs_conversational.jsonl"),
        ),
    ]);
    server.add_dataset("bpo-test/prefs", files, Access::Public)
}

/// What bpo reads from `spec`, as its canonical JSONL.
fn records(spec: &str, env: &[(&str, &str)], dir: &Path) -> String {
    let out = dir.join("records.jsonl");
    let done = bpo_hub(&["data", "convert", spec, out.to_str().unwrap()], env);
    assert!(done.status.success(), "{}", stderr(&done));
    std::fs::read_to_string(out).unwrap()
}

#[test]
fn a_hub_dataset_split_downloads_once_then_reads_offline() {
    let dir = tempfile::tempdir().unwrap();
    let server = HubServer::start();
    let commit = publish_prefs(&server, dir.path());
    let home = dir.path().join("hf");
    let home = home.to_str().unwrap();
    let online = [("HF_HOME", home), ("HF_ENDPOINT", server.endpoint.as_str())];
    let stats =
        |spec: &str, env: &[(&str, &str)]| json(&bpo_hub(&["data", "stats", spec, "--json"], env));

    let train = records("hf:bpo-test/prefs", &online, dir.path());
    let shards = [
        records(&data_fixture("pairs_explicit.jsonl"), &[], dir.path()),
        records(&data_fixture("pairs_implicit.jsonl"), &[], dir.path()),
    ];
    assert_eq!(train, shards.concat(), "both shards, in order");
    assert_eq!(stats("hf:bpo-test/prefs:test", &online)["pairs"], 2);
    let snapshot = Path::new(home)
        .join("hub/datasets--bpo-test--prefs/snapshots")
        .join(&commit);
    assert!(snapshot.join("data/train-00001-of-00002.parquet").is_file());
    let refs = Path::new(home).join("hub/datasets--bpo-test--prefs/refs/main");
    assert_eq!(std::fs::read_to_string(refs).unwrap().trim(), commit);
    // Downloads, not hf-hub's metadata probes (a GET of byte 0).
    let downloads = || {
        server
            .requests()
            .iter()
            .filter(|r| r.method == "GET" && r.path.contains("/resolve/"))
            .filter(|r| r.range.as_deref() != Some("bytes=0-0"))
            .count()
    };
    assert_eq!(downloads(), 3, "the three shards, not README.md");
    assert_eq!(stats("hf:bpo-test/prefs", &online)["pairs"], 5);
    assert_eq!(downloads(), 3, "a second run reads the cache");

    fails_with(
        &bpo_hub(&["data", "stats", "hf:bpo-test/prefs:dev"], &online),
        &["has no split `dev`; its splits: test, train"],
    );
    fails_with(
        &bpo_hub(&["data", "stats", "hf:bpo-test/nope"], &online),
        &[
            "datasets/bpo-test/nope@main",
            "no such dataset, or it is private",
            "HF_TOKEN",
        ],
    );
    fails_with(
        &bpo_hub(&["data", "stats", "hf:bpo-test"], &online),
        &["hf:ORG/NAME[/CONFIG][:SPLIT][@REVISION]"],
    );

    server.stop();
    let offline = [("HF_HOME", home), ("HF_HUB_OFFLINE", "1")];
    assert_eq!(records("hf:bpo-test/prefs", &offline, dir.path()), train);
    let unreachable = [("HF_HOME", home), ("HF_ENDPOINT", "http://127.0.0.1:9")];
    let out = bpo_hub(
        &["data", "stats", "hf:bpo-test/prefs:test", "--json"],
        &unreachable,
    );
    assert_eq!(json(&out)["pairs"], 2);
    assert!(
        stderr(&out).contains("using the cached copy"),
        "{}",
        stderr(&out)
    );
    // A split the cache holds in part is not taken for the whole split.
    std::fs::remove_file(snapshot.join("data/train-00001-of-00002.parquet")).unwrap();
    fails_with(
        &bpo_hub(&["data", "stats", "hf:bpo-test/prefs"], &offline),
        &[
            "lacks split `train` of dataset bpo-test/prefs whole (it holds 1 of 2 shards in `data/`)",
        ],
    );
    let empty = dir.path().join("empty");
    fails_with(
        &bpo_hub(
            &["data", "stats", "hf:bpo-test/prefs"],
            &[
                ("HF_HOME", empty.to_str().unwrap()),
                ("HF_HUB_OFFLINE", "1"),
            ],
        ),
        &[
            "HF_HUB_OFFLINE is set and the cache",
            "split `train` of dataset bpo-test/prefs",
        ],
    );
}

#[test]
fn datasets_without_parquet_are_read_from_the_conversion_branch() {
    let dir = tempfile::tempdir().unwrap();
    let server = HubServer::start();
    let jsonl = data_fixture("pairs_explicit.jsonl");
    let files = BTreeMap::from([("train.jsonl".to_owned(), std::fs::read(&jsonl).unwrap())]);
    server.add_dataset("bpo-test/jsonl", files, Access::Gated("hf_t0ken".into()));
    let converted = BTreeMap::from([(
        "default/train/0000.parquet".to_owned(),
        parquet_of(&jsonl, dir.path()),
    )]);
    server.add_dataset_branch("bpo-test/jsonl", "refs/convert/parquet", converted);
    let home = dir.path().join("hf");
    let env = |token: &'static str| {
        let mut env = vec![
            ("HF_HOME", home.to_str().unwrap().to_owned()),
            ("HF_ENDPOINT", server.endpoint.clone()),
        ];
        if !token.is_empty() {
            env.push(("HF_TOKEN", token.to_owned()));
        }
        env
    };
    let run = |args: &[&str], token: &'static str| {
        let env = env(token);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        bpo_hub(args, &env)
    };
    fails_with(
        &run(&["data", "stats", "hf:bpo-test/jsonl"], "hf_wr0ng"),
        &["gated or private", "accept its licence"],
    );
    let out = run(
        &["data", "stats", "hf:bpo-test/jsonl", "--json"],
        "hf_t0ken",
    );
    assert_eq!(json(&out)["pairs"], 3);
    assert!(
        home.join("hub/datasets--bpo-test--jsonl/refs/refs/convert/parquet")
            .is_file(),
        "the branch is recorded where huggingface_hub records it"
    );
    fails_with(
        &run(&["data", "stats", "hf:bpo-test/jsonl@main"], "hf_t0ken"),
        &["has no Parquet files on revision `main`"],
    );
    let offline = [("HF_HOME", home.to_str().unwrap()), ("HF_HUB_OFFLINE", "1")];
    let out = bpo_hub(&["data", "stats", "hf:bpo-test/jsonl", "--json"], &offline);
    assert_eq!(json(&out)["pairs"], 3, "the cached conversion offline");

    // Configs: the default one unless named, several without a default named one by one; a
    // revision with Parquet for other splits is not a reason to look at the conversion.
    let shard = parquet_of(&jsonl, dir.path());
    let files = BTreeMap::from([
        ("en/train-00000-of-00001.parquet".to_owned(), shard.clone()),
        ("fr/test-00000-of-00001.parquet".to_owned(), shard),
    ]);
    server.add_dataset("bpo-test/configs", files, Access::Public);
    fails_with(
        &run(&["data", "stats", "hf:bpo-test/configs"], ""),
        &["has several configs (en, fr): name one as hf:ORG/NAME/CONFIG:SPLIT"],
    );
    let out = run(
        &["data", "stats", "hf:bpo-test/configs/fr:test", "--json"],
        "",
    );
    assert_eq!(json(&out)["pairs"], 3);
    fails_with(
        &run(&["data", "stats", "hf:bpo-test/configs/en:test"], ""),
        &["has no split `test`; its splits: train"],
    );
}

#[test]
fn the_cache_and_parquet_are_shared_with_huggingface_hub_and_datasets() {
    let Some(python) = std::env::var_os("BPO_PYTHON") else {
        eprintln!("skipped: set BPO_PYTHON to a Python with huggingface_hub and datasets");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = HubServer::start();
    publish_prefs(&server, dir.path());

    // huggingface_hub fills a cache; bpo reads it offline.
    let python_home = dir.path().join("hf-python");
    let python_home = python_home.to_str().unwrap();
    python_ok(
        &python,
        "import huggingface_hub as h; h.snapshot_download('bpo-test/prefs', repo_type='dataset')",
        &[("HF_HOME", python_home), ("HF_ENDPOINT", &server.endpoint)],
    );
    let offline = [("HF_HOME", python_home), ("HF_HUB_OFFLINE", "1")];
    let out = bpo_hub(
        &["data", "stats", "hf:bpo-test/prefs:test", "--json"],
        &offline,
    );
    assert_eq!(json(&out)["pairs"], 2);

    // bpo fills a cache; huggingface_hub finds the files offline.
    let bpo_home = dir.path().join("hf-bpo");
    let bpo_home = bpo_home.to_str().unwrap();
    let online = [
        ("HF_HOME", bpo_home),
        ("HF_ENDPOINT", server.endpoint.as_str()),
    ];
    let stats = json(&bpo_hub(
        &["data", "stats", "hf:bpo-test/prefs", "--json"],
        &online,
    ));
    assert_eq!(stats["pairs"], 5);
    server.stop();
    python_ok(
        &python,
        "import huggingface_hub as h; h.hf_hub_download('bpo-test/prefs', \
         'data/train-00000-of-00002.parquet', repo_type='dataset')",
        &[("HF_HOME", bpo_home), ("HF_HUB_OFFLINE", "1")],
    );

    // `datasets.load_dataset("parquet", ...)` reads bpo's Parquet as the JSONL's records, in
    // both the standard and the conversational form.
    for case in ["pairs_standard", "pairs_conversational", "prompts"] {
        let jsonl = data_fixture(&format!("parquet/{case}.jsonl"));
        let parquet = dir.path().join(format!("{case}.parquet"));
        let done = bpo(&["data", "convert", &jsonl, parquet.to_str().unwrap()]);
        assert!(done.status.success(), "{}", stderr(&done));
        // `meta` is JSON text in bpo's Parquet (its keys vary by record): a reader parses it.
        let script = format!(
            "import json, datasets\n\
             d = datasets.load_dataset('parquet', data_files={parquet:?}, split='train')\n\
             for r in d.to_list():\n\
             \x20   if isinstance(r.get('meta'), str): r['meta'] = json.loads(r['meta'])\n\
             \x20   print(json.dumps(r))\n",
            parquet = parquet.to_str().unwrap()
        );
        let cache = dir.path().join("datasets-cache");
        let loaded = python_ok(
            &python,
            &script,
            &[("HF_DATASETS_CACHE", cache.to_str().unwrap())],
        );
        // Both sides written out by bpo in its canonical JSONL: equal records, equal bytes.
        let back = dir.path().join(format!("{case}.from-datasets.jsonl"));
        std::fs::write(&back, loaded).unwrap();
        let canonical = |input: &str, name: &str| {
            let out = dir.path().join(name);
            let done = bpo(&["data", "convert", input, out.to_str().unwrap()]);
            assert!(done.status.success(), "{}", stderr(&done));
            std::fs::read_to_string(out).unwrap()
        };
        let ours = canonical(&jsonl, &format!("{case}.ours.jsonl"));
        let theirs = canonical(back.to_str().unwrap(), &format!("{case}.theirs.jsonl"));
        assert_eq!(ours, theirs, "{case}");
    }
}
