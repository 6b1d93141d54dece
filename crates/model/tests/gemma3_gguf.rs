//! Gemma 3 from GGUF, against transformers reading the same file: `scripts/gemma3_gguf.py`
//! writes a random tiny Gemma 3 as llama.cpp's converter does (norms stored with the 1 added,
//! `gemma3.*` metadata, a SentencePiece vocabulary without merges, byte tokens, control tokens)
//! and checks that transformers loads it back to the original's log-probs. bpo must load the
//! same file to the configuration of the original's `config.json`, its per-token log-probs
//! within 1e-4, transformers' greedy tokens, and transformers' token ids and decodings of texts
//! that exercise merges, byte fallback, runs of spaces and control tokens. Runs with
//! `BPO_PYTHON` set to a Python with torch, transformers and gguf (CI's venv).

use std::process::Command;

use bpo_model::burn::tensor::Device;
use bpo_model::weights::hf_dir;
use bpo_model::{SamplingConfig, generate_ids, load, score};
use serde_json::Value;

#[test]
fn gemma3_gguf_matches_transformers() {
    let Some(py) = std::env::var_os("BPO_PYTHON") else {
        eprintln!("skipped: set BPO_PYTHON to a Python with torch, transformers and gguf");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/gemma3_gguf.py");
    let out = Command::new(py)
        .args([script, "build"])
        .arg(dir.path())
        .output()
        .expect("python runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "gemma3_gguf.py: {stderr}");
    let reference: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("reference.json")).unwrap())
            .unwrap();
    let ids = |v: &Value| -> Vec<u32> { serde_json::from_value(v.clone()).unwrap() };

    let device = Device::flex();
    let gguf = dir.path().join("gemma3.gguf");
    let (model, tokenizer) = load(gguf.to_str().unwrap(), &device).unwrap();
    let mut original = hf_dir::read_config(&dir.path().join("hf")).unwrap();
    // GGUF carries no token ids of the model's config; the tokenizer's are compared below.
    original.bos_token_id = model.config.bos_token_id;
    original.eos_token_id = model.config.eos_token_id;
    assert_eq!(model.config, original);

    let sequence = ids(&reference["ids"]);
    let theirs: Vec<f64> = serde_json::from_value(reference["logprobs"].clone()).unwrap();
    let scored = score(
        &model,
        &[(sequence[..1].to_vec(), sequence[1..].to_vec())],
        0,
        1,
    )
    .unwrap();
    let ours = &scored[0].logprobs;
    assert_eq!(ours.len(), theirs.len());
    let diff = ours
        .iter()
        .zip(&theirs)
        .map(|(a, b)| (*a as f64 - b).abs())
        .fold(0.0, f64::max);
    assert!(diff < 1e-4, "log-probs differ by {diff}");

    let greedy = ids(&reference["greedy"]);
    let prompt = ids(&reference["prompt"]);
    let config = SamplingConfig::greedy(greedy.len());
    let generated = generate_ids(&model, std::slice::from_ref(&prompt), &config, &[], 0, 0);
    assert_eq!(generated.unwrap().remove(0).token_ids, greedy);

    for case in reference["tokenizer"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let plain = ids(&case["ids"]);
        let with_special = ids(&case["ids_with_special"]);
        assert_eq!(tokenizer.encode(text, false).unwrap(), plain, "{text:?}");
        assert_eq!(
            tokenizer.encode(text, true).unwrap(),
            with_special,
            "{text:?}"
        );
        assert_eq!(
            tokenizer.decode(&plain, false).unwrap(),
            case["decoded"].as_str().unwrap(),
            "{text:?}"
        );
        assert_eq!(
            tokenizer.decode(&with_special, false).unwrap(),
            case["decoded_with_special"].as_str().unwrap(),
            "{text:?}"
        );
    }
    // The tokenizer is the one transformers builds from the file: the same vocabulary, merges
    // in the same order, normalizer, pre-tokenizer, decoder and added tokens.
    let saved = dir.path().join("bpo-tokenizer");
    std::fs::create_dir_all(&saved).unwrap();
    tokenizer.save(&saved).unwrap();
    let json = |path: std::path::PathBuf| -> Value {
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    };
    let (ours, theirs) = (
        json(saved.join("tokenizer.json")),
        json(dir.path().join("hf/tokenizer.json")),
    );
    for part in ["model", "normalizer", "pre_tokenizer", "decoder"] {
        assert_eq!(ours[part], theirs[part], "{part}");
    }
    let added = |t: &Value| -> Vec<(u64, String, bool)> {
        let list = t["added_tokens"].as_array().unwrap().iter();
        list.map(|a| {
            let field = |k: &str| a[k].clone();
            (
                field("id").as_u64().unwrap(),
                field("content").as_str().unwrap().to_owned(),
                field("special").as_bool().unwrap(),
            )
        })
        .collect()
    };
    assert_eq!(added(&ours), added(&theirs));
    // The chat template's end of an assistant turn stops generation.
    let end_of_turn = tokenizer.token_id("<end_of_turn>").unwrap();
    assert!(tokenizer.stop_ids().contains(&end_of_turn));
}
