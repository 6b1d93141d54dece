//! Helpers of the tests that compare bpo's GGUF loading with transformers reading the same file.

use std::path::Path;
use std::process::Command;

use bpo_model::tokenizer::Tokenizer;
use serde_json::Value;

/// Runs `scripts/<script> build <out>` with the Python of `BPO_PYTHON` and returns the
/// `reference.json` it writes; `None` (the test skips) without `BPO_PYTHON`.
pub fn build_reference(script: &str, out: &Path) -> Option<Value> {
    let Some(py) = std::env::var_os("BPO_PYTHON") else {
        eprintln!("skipped: set BPO_PYTHON to a Python with torch, transformers and gguf");
        return None;
    };
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../scripts")
        .join(script);
    let run = Command::new(py)
        .arg(path)
        .arg("build")
        .arg(out)
        .output()
        .expect("python runs");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{script}: {stderr}");
    let text = std::fs::read_to_string(out.join("reference.json")).unwrap();
    Some(serde_json::from_str(&text).unwrap())
}

/// Asserts that `tokenizer` is the tokenizer of `theirs` (a tokenizer.json transformers wrote):
/// the same model (vocabulary, merges in order), normaliser, pre-tokeniser, decoder and added
/// tokens.
pub fn assert_same_tokenizer(tokenizer: &Tokenizer, theirs: &Value, what: &str) {
    let dir = tempfile::tempdir().unwrap();
    tokenizer.save(dir.path()).unwrap();
    let text = std::fs::read_to_string(dir.path().join("tokenizer.json")).unwrap();
    let ours: Value = serde_json::from_str(&text).unwrap();
    for part in ["model", "normalizer", "pre_tokenizer", "decoder"] {
        assert_eq!(ours[part], theirs[part], "{what}: {part}");
    }
    let added = |t: &Value| -> Vec<(u64, String, bool)> {
        let list = t["added_tokens"].as_array().unwrap().iter();
        list.map(|a| {
            (
                a["id"].as_u64().unwrap(),
                a["content"].as_str().unwrap().to_owned(),
                a["special"].as_bool().unwrap(),
            )
        })
        .collect()
    };
    assert_eq!(added(&ours), added(theirs), "{what}: added tokens");
}

/// Asserts `tokenizer`'s ids (with and without special tokens) and decodings of every text of
/// `cases` (`text`, `ids`, `ids_with_special`, `decoded`, `decoded_with_special`).
pub fn assert_same_encodings(tokenizer: &Tokenizer, cases: &Value, what: &str) {
    let ids = |v: &Value| -> Vec<u32> { serde_json::from_value(v.clone()).unwrap() };
    for case in cases.as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let (plain, with_special) = (ids(&case["ids"]), ids(&case["ids_with_special"]));
        let what = format!("{what} {text:?}");
        assert_eq!(tokenizer.encode(text, false).unwrap(), plain, "{what}");
        assert_eq!(
            tokenizer.encode(text, true).unwrap(),
            with_special,
            "{what}"
        );
        let decoded = tokenizer.decode(&plain, false).unwrap();
        assert_eq!(decoded, case["decoded"].as_str().unwrap(), "{what}");
        let decoded = tokenizer.decode(&with_special, false).unwrap();
        assert_eq!(decoded, case["decoded_with_special"], "{what}");
    }
}
