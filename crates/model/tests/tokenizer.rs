//! The tokenizer built from GGUF metadata: round trips, pre-tokenisation, special tokens, chat
//! template, and `tokenizer.json` save/load.

use bpo_model::ChatMessage;
use bpo_model::tokenizer::Tokenizer;
use bpo_testkit::tokenizer;

const TEXTS: &[&str] = &[
    "the good thing is here",
    "  leading spaces, punctuation!? and 12345 digits",
    "unicode: café, naïve, 東京, emoji 🎉",
    "",
];

#[test]
fn encode_decode_round_trip() {
    let tok = tokenizer();
    for text in TEXTS {
        let ids = tok.encode(text, false).unwrap();
        assert_eq!(tok.decode(&ids, false).unwrap(), *text);
    }
}

#[test]
fn merges_and_single_digit_split() {
    let tok = tokenizer();
    let (_, tokens) = tok.encode_with_tokens(" the good", false).unwrap();
    assert_eq!(tokens, vec!["Ġthe", "Ġgood"]);
    let (_, digits) = tok.encode_with_tokens("12345", false).unwrap();
    assert_eq!(digits, vec!["1", "2", "3", "4", "5"]);
}

#[test]
fn special_tokens_are_matched_whole_and_skipped_on_decode() {
    let tok = tokenizer();
    let ids = tok.encode("<|im_start|>user\nhi<|im_end|>", false).unwrap();
    assert_eq!(ids[0], 1);
    assert_eq!(*ids.last().unwrap(), 2);
    assert_eq!(tok.decode(&ids, true).unwrap(), "user\nhi");
    assert_eq!(
        (tok.bos_id(), tok.eos_id(), tok.pad_id()),
        (Some(1), Some(2), 2)
    );
}

#[test]
fn chat_prompt_uses_the_template() {
    let tok = tokenizer();
    let text = tok.prompt_text("Hi", true).unwrap();
    assert!(text.starts_with("<|im_start|>system\nYou are a helpful AI assistant named SmolLM"));
    assert!(text.ends_with("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"));
    let ids = tok.encode_prompt("Hi", true).unwrap();
    assert_eq!(ids, tok.encode(&text, false).unwrap());
    let convo = tok
        .apply_chat_template(
            &[
                ChatMessage::new("system", "S"),
                ChatMessage::new("user", "U"),
            ],
            false,
        )
        .unwrap();
    assert_eq!(
        convo,
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n"
    );
}

#[test]
fn saved_tokenizer_json_loads_to_the_same_tokenizer() {
    let tok = tokenizer();
    let dir = tempfile::tempdir().unwrap();
    tok.save(dir.path()).unwrap();
    let back = Tokenizer::from_dir(dir.path()).unwrap();
    for text in TEXTS.iter().chain(&["<|im_start|>assistant\nok<|im_end|>"]) {
        assert_eq!(
            tok.encode(text, true).unwrap(),
            back.encode(text, true).unwrap(),
            "{text}"
        );
    }
    assert_eq!(back.chat_template, tok.chat_template);
    assert_eq!((back.bos_id(), back.eos_id()), (Some(1), Some(2)));
}

/// Where transformers keeps the template: `chat_template.jinja` beside the tokenizer
/// (transformers 5 writes no `chat_template` key), or `tokenizer_config.json` as a string or
/// as a list of named templates (the `default` one is taken).
#[test]
fn the_chat_template_is_found_where_transformers_writes_it() {
    let tok = tokenizer();
    let dir = tempfile::tempdir().unwrap();
    tok.save(dir.path()).unwrap();
    let config_path = dir.path().join("tokenizer_config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    let write = |config: &serde_json::Value| {
        std::fs::write(&config_path, config.to_string()).unwrap();
        Tokenizer::from_dir(dir.path()).unwrap().chat_template
    };
    config["chat_template"] = serde_json::json!([
        {"name": "tool_use", "template": "tools"},
        {"name": "default", "template": "the default"},
    ]);
    assert_eq!(write(&config).as_deref(), Some("the default"));
    config.as_object_mut().unwrap().remove("chat_template");
    assert_eq!(write(&config), None);
    let mut none = tok.clone();
    none.chat_template = None;
    let message = none.apply_chat_template(&[], true).unwrap_err().to_string();
    assert!(message.contains("declares no chat template"), "{message}");
    std::fs::write(
        dir.path().join("chat_template.jinja"),
        "{{ messages[0].content }}!",
    )
    .unwrap();
    let back = Tokenizer::from_dir(dir.path()).unwrap();
    let text = back
        .apply_chat_template(&[ChatMessage::new("user", "hi")], false)
        .unwrap();
    assert_eq!(text, "hi!");
}

/// Generation stops on every end-of-sequence id the model declares and on the token its chat
/// template ends an assistant turn with, not only on the tokenizer's EOS.
#[test]
fn every_declared_end_of_sequence_stops_generation() {
    let tok = tokenizer();
    let (end_of_text, end_of_turn) = (tok.token_id("<|endoftext|>").unwrap(), 2);
    assert_eq!(tok.token(end_of_turn).as_deref(), Some("<|im_end|>"));
    // EOS and the template's end of turn are one token here.
    assert_eq!(tok.stop_ids(), vec![end_of_turn]);
    let dir = tempfile::tempdir().unwrap();
    let mut other_eos = tok.clone();
    other_eos.eos_token = Some("<|endoftext|>".into());
    other_eos.save(dir.path()).unwrap();
    let back = Tokenizer::from_dir(dir.path()).unwrap();
    assert_eq!(back.stop_ids(), vec![end_of_text, end_of_turn]);
    // A list in generation_config.json counts whole, repeats once.
    std::fs::write(
        dir.path().join("generation_config.json"),
        r#"{"eos_token_id": [0, 2, 7]}"#,
    )
    .unwrap();
    let back = Tokenizer::from_dir(dir.path()).unwrap();
    assert_eq!(back.stop_ids(), vec![end_of_text, end_of_turn, 7]);
    std::fs::write(
        dir.path().join("generation_config.json"),
        r#"{"eos_token_id": "two"}"#,
    )
    .unwrap();
    let err = Tokenizer::from_dir(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("generation_config.json") && err.contains("eos_token_id"),
        "{err}"
    );
}

#[test]
fn an_unknown_gguf_tokenizer_model_is_refused_by_name() {
    use bpo_model::weights::gguf::{GgufFile, MetaValue};
    use bpo_testkit::{GgufWriter, tokenizer_metadata};
    let bytes = tokenizer_metadata(GgufWriter::new())
        .meta("general.architecture", MetaValue::String("llama".into()))
        .meta("tokenizer.ggml.model", MetaValue::String("bert".into()))
        .to_bytes();
    let file = GgufFile::parse(std::path::Path::new("m.gguf"), bytes).unwrap();
    let err = Tokenizer::from_gguf(&file).unwrap_err().to_string();
    assert!(
        err.contains("tokenizer model `bert` is not supported"),
        "{err}"
    );
}
