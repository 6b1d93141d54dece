//! SentencePiece vocabularies of Llama-family and Phi-3 GGUF files, against transformers
//! reading the same files (`scripts/gguf_sentencepiece.py`: a tiny vocabulary in llama.cpp's
//! layout whose scores are not in file order): the same tokenizer (vocabulary, merges in order,
//! normaliser, pre-tokeniser, decoder, added tokens), and transformers' ids with and without
//! special tokens and decodings of texts with merges, byte fallback, leading and repeated
//! spaces, control and user-defined tokens. Gemma's is in `gemma3_gguf.rs`. Runs with
//! `BPO_PYTHON` set to a Python with transformers and gguf (CI's venv).

use std::process::Command;

use bpo_model::tokenizer::Tokenizer;
use bpo_model::weights::gguf::GgufFile;
use serde_json::Value;

#[test]
fn llama_and_phi3_sentencepiece_gguf_tokenizers_match_transformers() {
    let Some(py) = std::env::var_os("BPO_PYTHON") else {
        eprintln!("skipped: set BPO_PYTHON to a Python with transformers and gguf");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scripts/gguf_sentencepiece.py"
    );
    let out = Command::new(py)
        .args([script, "build"])
        .arg(dir.path())
        .output()
        .expect("python runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "gguf_sentencepiece.py: {stderr}");
    let text = std::fs::read_to_string(dir.path().join("reference.json")).unwrap();
    let reference: Value = serde_json::from_str(&text).unwrap();
    let ids = |v: &Value| -> Vec<u32> { serde_json::from_value(v.clone()).unwrap() };
    for arch in ["llama", "phi3"] {
        let expected = &reference[arch];
        let path = dir.path().join(expected["gguf"].as_str().unwrap());
        let bytes = std::fs::read(&path).unwrap();
        let file = GgufFile::parse(&path, bytes).unwrap();
        let tokenizer = Tokenizer::from_gguf(&file).unwrap();

        let saved = dir.path().join(format!("bpo-{arch}"));
        std::fs::create_dir_all(&saved).unwrap();
        tokenizer.save(&saved).unwrap();
        let ours: Value =
            serde_json::from_str(&std::fs::read_to_string(saved.join("tokenizer.json")).unwrap())
                .unwrap();
        let theirs = &expected["tokenizer"];
        for part in ["model", "normalizer", "pre_tokenizer", "decoder"] {
            assert_eq!(ours[part], theirs[part], "{arch}: {part}");
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
        assert_eq!(added(&ours), added(theirs), "{arch}: added tokens");

        for case in expected["texts"].as_array().unwrap() {
            let text = case["text"].as_str().unwrap();
            let (plain, with_special) = (ids(&case["ids"]), ids(&case["ids_with_special"]));
            let what = format!("{arch} {text:?}");
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
}
