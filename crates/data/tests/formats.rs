//! Reading every supported format, the errors of broken files, skipping, writing, tokenising.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use bpo_data::{
    Content, PairBatch, PreferencePair, PromptRecord, ReadOptions, Reader, Truncation, read_all,
    stats, tokenize_pair, tokenize_pairs, write_all,
};
use bpo_model::ChatMessage;
use bpo_testkit::tokenizer;
use proptest::prelude::*;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn pairs(name: &str) -> Vec<PreferencePair> {
    read_all::<PreferencePair>(&fixture(name), ReadOptions::default())
        .unwrap()
        .records
}

fn error(name: &str) -> String {
    read_all::<PreferencePair>(&fixture(name), ReadOptions::default())
        .unwrap_err()
        .to_string()
}

#[test]
fn reads_every_format() {
    let explicit = pairs("pairs_explicit.jsonl");
    assert_eq!(explicit.len(), 3, "blank lines are skipped");
    assert_eq!(explicit[1].meta.chosen_score, Some(0.8));
    assert_eq!(explicit[1].meta.behavior_version, Some(1));

    let implicit = pairs("pairs_implicit.jsonl");
    assert_eq!(implicit[0].prompt, Content::text("The sky is"));
    assert_eq!(implicit[1].chosen, Content::text(" purr when happy."));

    let chat = pairs("pairs_conversational.jsonl");
    assert_eq!(
        chat[0].prompt,
        Content::Chat(vec![ChatMessage::new("user", "What colour is the sky?")])
    );
    assert_eq!(
        chat[1].prompt,
        Content::Chat(vec![ChatMessage::new("user", "Say hi.")])
    );
    assert_eq!(
        chat[1].rejected,
        Content::Chat(vec![ChatMessage::new("assistant", "No.")])
    );

    let array = pairs("pairs_array.json");
    assert_eq!(array.len(), 2);
    assert_eq!(array[1].rejected, Content::text(" cold."));

    let prompts = read_all::<PromptRecord>(&fixture("prompts.jsonl"), ReadOptions::default())
        .unwrap()
        .records;
    assert_eq!(prompts.len(), 3);
    assert_eq!(
        prompts[0].reference,
        Some(Content::text(" stood at the end of the lane."))
    );
    assert!(prompts[1].reference.is_none());
}

#[test]
fn broken_files_name_file_line_and_field() {
    let cases = [
        (
            "broken_missing_field.jsonl",
            "broken_missing_field.jsonl: line 3: field `rejected`: is missing",
        ),
        (
            "broken_wrong_type.jsonl",
            "line 2: field `chosen`: must be a string or a list of messages, found a number",
        ),
        ("broken_empty.jsonl", "line 1: field `chosen`: is empty"),
        ("broken_syntax.jsonl", "line 2: invalid JSON"),
        (
            "broken_array.json",
            "broken_array.json: invalid JSON at line 3",
        ),
        (
            "broken_meta.jsonl",
            "line 1: field `meta.chosen_logps`: has 1 values for 2 tokens",
        ),
    ];
    for (file, want) in cases {
        let err = error(file);
        assert!(err.contains(want), "{file}: `{err}` lacks `{want}`");
    }
    let err = read_all::<PreferencePair>(Path::new("/no/such.jsonl"), ReadOptions::default())
        .unwrap_err();
    assert!(err.to_string().contains("/no/such.jsonl"), "{err}");
}

#[test]
fn skip_invalid_reports_which_lines() {
    let options = ReadOptions {
        skip_invalid: true,
        ..ReadOptions::default()
    };
    let result =
        read_all::<PreferencePair>(&fixture("broken_missing_field.jsonl"), options.clone())
            .unwrap();
    assert_eq!(result.records.len(), 3);
    assert_eq!(result.skipped.len(), 1);
    assert_eq!(result.skipped[0].location, bpo_data::Location::Line(3));
    assert!(result.skipped[0].reason.contains("`rejected`"));
    let syntax = read_all::<PreferencePair>(&fixture("broken_syntax.jsonl"), options).unwrap();
    assert_eq!(syntax.records.len(), 2);
}

#[test]
fn invalid_utf8_and_over_long_records_are_errors_naming_the_line() {
    let mut bytes = b"{\"prompt\": \"a\", \"chosen\": \" b\", \"rejected\": \" c\"}\n".to_vec();
    bytes.extend(b"{\"prompt\": \"\xff\xfe\", \"chosen\": \" b\", \"rejected\": \" c\"}\n");
    let reader = Reader::<PreferencePair>::from_jsonl(
        Cursor::new(bytes),
        "mem.jsonl",
        ReadOptions::default(),
    );
    let err = reader
        .collect::<Result<Vec<_>, _>>()
        .unwrap_err()
        .to_string();
    assert!(err.contains("mem.jsonl: line 2: invalid UTF-8"), "{err}");

    let long = format!(
        "{{\"prompt\": \"{}\", \"chosen\": \" b\", \"rejected\": \" c\"}}\n{{\"prompt\": \"a\", \"chosen\": \" b\", \"rejected\": \" c\"}}\n",
        "x".repeat(500)
    );
    let options = ReadOptions {
        skip_invalid: true,
        max_record_bytes: 100,
    };
    let mut reader = Reader::<PreferencePair>::from_jsonl(
        Cursor::new(long.clone().into_bytes()),
        "long.jsonl",
        options,
    );
    let records: Vec<_> = reader.by_ref().collect::<Result<_, _>>().unwrap();
    assert_eq!(
        records.len(),
        1,
        "the line after an over-long one is read normally"
    );
    assert!(reader.skipped()[0].reason.contains("over the limit of 100"));
    let strict = ReadOptions {
        max_record_bytes: 100,
        ..ReadOptions::default()
    };
    let err =
        Reader::<PreferencePair>::from_jsonl(Cursor::new(long.into_bytes()), "long.jsonl", strict)
            .collect::<Result<Vec<_>, _>>()
            .unwrap_err();
    assert!(
        err.to_string().contains("long.jsonl: line 1: record is"),
        "{err}"
    );
}

#[test]
fn write_then_read_round_trip_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out/pairs.jsonl");
    let originals: Vec<PreferencePair> = ["pairs_explicit.jsonl", "pairs_conversational.jsonl"]
        .iter()
        .flat_map(|f| pairs(f))
        .collect();
    assert_eq!(write_all(&path, &originals).unwrap(), originals.len());
    assert_eq!(pairs_at(&path), originals);
    // An unfinished writer leaves nothing behind.
    {
        let mut w = bpo_data::Writer::create(&dir.path().join("half.jsonl")).unwrap();
        w.write(&originals[0]).unwrap();
    }
    assert!(!dir.path().join("half.jsonl").exists());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no temporary files left"
    );
}

fn pairs_at(path: &Path) -> Vec<PreferencePair> {
    read_all::<PreferencePair>(path, ReadOptions::default())
        .unwrap()
        .records
}

#[test]
fn tokenised_pairs_end_responses_with_eos_and_use_the_chat_template() {
    let tok = tokenizer();
    let plain = tokenize_pair(
        &pairs("pairs_explicit.jsonl")[0],
        &tok,
        &Truncation::default(),
    )
    .unwrap();
    assert_eq!(plain.prompt, tok.encode("The movie was", true).unwrap());
    assert_eq!(*plain.chosen.last().unwrap(), tok.eos_id().unwrap());
    assert!(!plain.truncated);
    let chat = tokenize_pair(
        &pairs("pairs_conversational.jsonl")[0],
        &tok,
        &Truncation::default(),
    )
    .unwrap();
    let rendered = tok.decode(&chat.prompt, false).unwrap();
    assert!(
        rendered.ends_with(
            "<|im_start|>user\nWhat colour is the sky?<|im_end|>\n<|im_start|>assistant\n"
        )
    );
    // The response is what the template adds after the prompt, up to the end of the turn (as
    // TRL splits it), with no second EOS.
    let chosen = tok.decode(&chat.chosen, false).unwrap();
    assert_eq!(chosen, "Blue.<|im_end|>");
    let batch = PairBatch::new(&[plain, chat], tok.pad_id()).unwrap();
    assert_eq!(batch.sequences.tokens.batch_size, 4);
    assert!(batch.behavior_logps.is_none());
}

#[test]
fn recorded_ids_and_logps_are_used_as_they_are_and_truncated_together() {
    let tok = tokenizer();
    let mut pair = pairs("pairs_explicit.jsonl")[0].clone();
    pair.meta.prompt_ids = Some(vec![10, 11, 12, 13]);
    pair.meta.chosen_ids = Some(vec![20, 21, 22]);
    pair.meta.chosen_logps = Some(vec![-0.1, -0.2, -0.3]);
    pair.meta.rejected_ids = Some(vec![30]);
    pair.meta.rejected_logps = Some(vec![-0.4]);
    let t = Truncation {
        max_prompt_tokens: Some(2),
        max_response_tokens: Some(2),
        max_length: None,
    };
    let tp = tokenize_pair(&pair, &tok, &t).unwrap();
    assert_eq!(tp.prompt, vec![12, 13]);
    assert_eq!(tp.chosen, vec![20, 21]);
    assert_eq!(tp.chosen_logps, Some(vec![-0.1, -0.2]));
    assert_eq!(tp.rejected_logps, Some(vec![-0.4]));
    assert!(tp.truncated);
    let batch = PairBatch::new(&[tp], 0).unwrap();
    let sums = batch.behavior_logp_sums().unwrap();
    assert!((sums[0] - -0.3).abs() < 1e-6 && (sums[1] - -0.4).abs() < 1e-6);
}

#[test]
fn stats_count_fields_and_lengths() {
    let s = stats(
        &fixture("pairs_explicit.jsonl"),
        None,
        ReadOptions::default(),
    )
    .unwrap();
    assert_eq!((s.records, s.pairs, s.prompts), (3, 3, 0));
    assert_eq!(s.fields["meta.behavior_version"], 1);
    assert_eq!(s.lengths["prompt"].min, "I think".len());
    let tok = tokenizer();
    let p = stats(
        &fixture("prompts.jsonl"),
        Some(&tok),
        ReadOptions::default(),
    )
    .unwrap();
    assert_eq!(
        (p.prompts, p.conversational, p.fields["reference"]),
        (3, 1, 1)
    );
    assert_eq!(p.unit, "tokens");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_give_records_or_errors_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let options = ReadOptions { skip_invalid: false, max_record_bytes: 200 };
        let reader = Reader::<PreferencePair>::from_jsonl(Cursor::new(bytes.clone()), "fuzz.jsonl", options.clone());
        for item in reader {
            let _ = item;
        }
        let _ = Reader::<PromptRecord>::from_json_array(&bytes, "fuzz.json", options).map(|r| r.count());
    }

    #[test]
    fn json_shaped_garbage_never_panics(
        prompt in proptest::option::of(".{0,20}"),
        chosen in proptest::option::of(".{0,20}"),
        rejected in proptest::option::of(".{0,20}"),
        number in any::<i64>(),
    ) {
        let mut obj = serde_json::Map::new();
        if let Some(p) = prompt { obj.insert("prompt".into(), p.into()); }
        if let Some(c) = chosen { obj.insert("chosen".into(), c.into()); }
        if let Some(r) = rejected { obj.insert("rejected".into(), serde_json::json!([{"role": "assistant", "content": r}])); }
        obj.insert("meta".into(), serde_json::json!({"behavior_version": number}));
        let line = serde_json::Value::Object(obj).to_string();
        let reader = Reader::<PreferencePair>::from_jsonl(Cursor::new(line.into_bytes()), "f.jsonl", ReadOptions::default());
        for pair in reader.flatten() {
            let _ = tokenize_pair(&pair, &tokenizer(), &Truncation::default());
        }
    }
}

#[test]
fn truncated_records_are_counted() {
    let tok = tokenizer();
    let all = pairs("pairs_explicit.jsonl");
    let (_, none) = bpo_data::tokenize_pairs(&all, &tok, &Truncation::default()).unwrap();
    assert_eq!(none, 0);
    let tight = Truncation {
        max_response_tokens: Some(5),
        ..Truncation::default()
    };
    let (tokenized, cut) = bpo_data::tokenize_pairs(&all, &tok, &tight).unwrap();
    let expected = all
        .iter()
        .filter(|p| {
            let len = |c: &Content| tok.encode(&c.render_response(), false).unwrap().len() + 1;
            len(&p.chosen) > 5 || len(&p.rejected) > 5
        })
        .count();
    assert!(expected > 0);
    assert_eq!(cut, expected);
    assert!(
        tokenized
            .iter()
            .all(|t| t.chosen.len() <= 5 && t.rejected.len() <= 5)
    );
}

/// A template whose rendering of the prompt is not a prefix of the whole conversation cannot be
/// split as TRL splits it: an error naming the pair, never a guessed response.
#[test]
fn a_template_that_cannot_split_a_conversation_is_an_error_naming_the_pair() {
    let mut tok = tokenizer();
    tok.chat_template =
        Some("{{ messages | length }}{% for m in messages %}{{ m.content }}{% endfor %}".into());
    let err = tokenize_pairs(
        &pairs("pairs_conversational.jsonl"),
        &tok,
        &Truncation::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("pair 0") && err.contains("prefix"), "{err}");
}
