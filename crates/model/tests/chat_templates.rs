//! Real chat templates (SmolLM2, Qwen2.5, Qwen3, Llama 3.1/3.2, Gemma 3, Mistral v0.3, Phi-3;
//! `fixtures/chat_templates/SOURCES.md` says where each came from) rendered by bpo equal, byte
//! for byte, what transformers renders for the same conversations (`expected.json`, written by
//! `scripts/render_chat_templates.py`, which CI reruns against the committed file), and the
//! token ids of each rendering equal to `apply_chat_template(..., tokenize=True)`'s with a
//! tokenizer per template (built by the script: the template's special tokens matched whole, BOS
//! added by the tokenizer where the model's does, so a doubled BOS shows). A template that
//! raises is an error carrying the template's message in both.

use std::path::PathBuf;

use bpo_model::tokenizer::Tokenizer;
use bpo_model::{ChatMessage, ChatTemplate};
use serde_json::Value;

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/chat_templates")
}

fn read_json(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture().join(name)).unwrap()).unwrap()
}

#[test]
fn every_template_renders_every_conversation_as_transformers_does() {
    let spec = read_json("cases.json");
    let fixture_json = read_json("expected.json");
    let expected = &fixture_json["renderings"];
    let tokens = |t: &Value| {
        ["bos_token", "eos_token"]
            .into_iter()
            .filter_map(|key| Some((key.to_owned(), t[key].as_str()?.to_owned())))
            .collect::<Vec<_>>()
    };
    let mut compared = 0;
    for t in spec["templates"].as_array().unwrap() {
        let name = t["name"].as_str().unwrap();
        let source = std::fs::read_to_string(fixture().join(t["file"].as_str().unwrap())).unwrap();
        let template =
            ChatTemplate::new(source.clone(), tokens(t)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let backend = fixture_json["tokenizers"][name].to_string();
        let token = |key: &str| t[key].as_str().map(str::to_owned);
        let tokenizer = Tokenizer::new(
            backend.parse().unwrap(),
            token("bos_token"),
            token("eos_token"),
            None,
            Some(source),
        );
        for case in spec["cases"].as_array().unwrap() {
            let case_name = case["name"].as_str().unwrap();
            let messages: Vec<ChatMessage> =
                serde_json::from_value(case["messages"].clone()).unwrap();
            let generation = case["add_generation_prompt"].as_bool().unwrap();
            let ours = template.render(&messages, generation, &spec["extra"]);
            let theirs = &expected[name][case_name];
            match (&ours, theirs["text"].as_str(), theirs["error"].as_str()) {
                (Ok(text), Some(want), _) => {
                    assert_eq!(text, want, "{name} / {case_name}");
                    // What bpo tokenises a conversation with: the rendering, no special
                    // tokens added (the template writes its own).
                    let ids: Vec<u32> = serde_json::from_value(theirs["ids"].clone()).unwrap();
                    let ours = tokenizer.encode(text, false).unwrap();
                    assert_eq!(ours, ids, "{name} / {case_name}: token ids");
                }
                (Err(e), _, Some(message)) => {
                    let e = e.to_string();
                    assert!(
                        e.contains(message),
                        "{name} / {case_name}: {e} lacks {message}"
                    );
                }
                _ => panic!("{name} / {case_name}: bpo {ours:?}, transformers {theirs}"),
            }
            compared += 1;
        }
    }
    assert_eq!(compared, 9 * 11);
}
