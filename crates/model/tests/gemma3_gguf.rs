//! Gemma 3 from GGUF, against transformers reading the same file: `scripts/gemma3_gguf.py`
//! writes a random tiny Gemma 3 as llama.cpp's converter does (norms stored with the 1 added,
//! `gemma3.*` metadata, a SentencePiece vocabulary without merges, byte tokens, control tokens)
//! and checks that transformers loads it back to the original's log-probs. bpo must load the
//! same file to the configuration of the original's `config.json`, its per-token log-probs
//! within 1e-4, transformers' greedy tokens, and transformers' token ids and decodings of texts
//! that exercise merges, byte fallback, runs of spaces and control tokens. Runs with
//! `BPO_PYTHON` set to a Python with torch, transformers and gguf (CI's venv).

mod common;

use bpo_model::burn::tensor::Device;
use bpo_model::weights::hf_dir;
use bpo_model::{SamplingConfig, generate_ids, load, score};
use serde_json::Value;

#[test]
fn gemma3_gguf_matches_transformers() {
    let dir = tempfile::tempdir().unwrap();
    let Some(reference) = common::build_reference("gemma3_gguf.py", dir.path()) else {
        return;
    };
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

    common::assert_same_encodings(&tokenizer, &reference["tokenizer"], "gemma3");
    // The tokenizer is the one transformers builds from the file.
    let theirs = std::fs::read_to_string(dir.path().join("hf/tokenizer.json")).unwrap();
    let theirs: Value = serde_json::from_str(&theirs).unwrap();
    common::assert_same_tokenizer(&tokenizer, &theirs, "gemma3");
    // The chat template's end of an assistant turn stops generation.
    let end_of_turn = tokenizer.token_id("<end_of_turn>").unwrap();
    assert!(tokenizer.stop_ids().contains(&end_of_turn));
}
