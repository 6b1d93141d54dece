//! Parquet: files written by pyarrow and by `datasets` (scripts/write_parquet_fixtures.py) read
//! as the same records as their JSONL, errors naming file, row and column, directories of
//! shards, and bpo's own Parquet read back (several row groups, both record kinds).

use std::path::{Path, PathBuf};

use bpo_data::convert::convert;
use bpo_data::parquet_writer::{ParquetWriter, ROW_GROUP_ROWS};
use bpo_data::{
    Content, DataError, Location, PairMeta, PreferencePair, PromptRecord, ReadOptions, Reader,
    read_all, write_all,
};
use bpo_model::ChatMessage;

/// The fixtures: the committed ones, or those CI has just written with the pinned venv.
fn fixtures() -> PathBuf {
    std::env::var_os("BPO_PARQUET_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parquet"))
}

fn read<T: bpo_data::record::Record>(path: &Path) -> Vec<T> {
    read_all::<T>(path, ReadOptions::default())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .records
}

fn strict_error<T: bpo_data::record::Record + std::fmt::Debug>(path: &Path) -> String {
    read_all::<T>(path, ReadOptions::default())
        .map(|r| r.records)
        .unwrap_err()
        .to_string()
}

#[test]
fn files_written_by_pyarrow_and_datasets_read_as_their_jsonl() {
    let dir = fixtures();
    for writer in ["pyarrow", "datasets"] {
        for case in ["pairs_standard", "pairs_conversational", "pairs_implicit"] {
            let parquet = dir.join(format!("{case}.{writer}.parquet"));
            let want = read::<PreferencePair>(&dir.join(format!("{case}.jsonl")));
            assert!(!want.is_empty());
            assert_eq!(
                read::<PreferencePair>(&parquet),
                want,
                "{}",
                parquet.display()
            );
        }
        for case in ["prompts", "prompts_conversational"] {
            let parquet = dir.join(format!("{case}.{writer}.parquet"));
            let want = read::<PromptRecord>(&dir.join(format!("{case}.jsonl")));
            assert_eq!(
                read::<PromptRecord>(&parquet),
                want,
                "{}",
                parquet.display()
            );
        }
    }
    // What the comparison covers, spelled out: extra columns ignored, a `meta` struct read as
    // metadata, a null prompt taken from the shared messages, nulls in optional columns.
    let standard = read::<PreferencePair>(&dir.join("pairs_standard.datasets.parquet"));
    assert_eq!(standard[0].meta.chosen_score, Some(0.8));
    assert_eq!(standard[1].meta.rejected_score, None);
    assert_eq!(standard[2].chosen, Content::text(" 日本語"));
    let chat = read::<PreferencePair>(&dir.join("pairs_conversational.pyarrow.parquet"));
    assert_eq!(
        chat[1].prompt,
        Content::Chat(vec![ChatMessage::new("user", "Say hi.")])
    );
    let prompts = read::<PromptRecord>(&dir.join("prompts.datasets.parquet"));
    assert_eq!(prompts[1].reference, None);
    assert_eq!(prompts[1].meta["genre"], "news");
}

#[test]
fn bad_rows_name_file_row_and_column() {
    let dir = fixtures();
    let cases = [
        ("error_null.parquet", "row 2: field `chosen`: is null"),
        (
            "error_type.parquet",
            "row 0: field `chosen`: must be a string or a list of messages, found a number",
        ),
        (
            "error_message.parquet",
            "row 0: field `chosen[0].content`: is missing",
        ),
        (
            "error_missing_column.parquet",
            "no column `rejected` (its columns: prompt, chosen)",
        ),
    ];
    for (file, want) in cases {
        let path = dir.join(file);
        let err = strict_error::<PreferencePair>(&path);
        assert!(err.starts_with(&path.display().to_string()), "{err}");
        assert!(err.contains(want), "{file}: `{err}` lacks `{want}`");
    }

    // Skipping lists the bad row with its file and keeps the others.
    let skip = ReadOptions {
        skip_invalid: true,
        ..ReadOptions::default()
    };
    let path = dir.join("error_null.parquet");
    let read = read_all::<PreferencePair>(&path, skip.clone()).unwrap();
    assert_eq!(read.records.len(), 2);
    assert_eq!(read.skipped.len(), 1);
    assert_eq!(read.skipped[0].location, Location::Row(2));
    assert_eq!(read.skipped[0].source, path.display().to_string());
    assert!(read.skipped[0].reason.contains("field `chosen`: is null"));
    // A missing column is the file's error, never a skip of every row.
    let missing = read_all::<PreferencePair>(&dir.join("error_missing_column.parquet"), skip);
    assert!(matches!(missing, Err(DataError::File { .. })));
}

#[test]
fn damaged_files_are_errors_naming_them() {
    let tmp = tempfile::tempdir().unwrap();
    let whole = std::fs::read(fixtures().join("pairs_standard.pyarrow.parquet")).unwrap();
    // Bytes of the first data pages overwritten, the footer intact: decoding fails inside the
    // row reader.
    let mut pages = whole.clone();
    for b in &mut pages[8..200] {
        *b = 0xA5;
    }
    for (name, bytes) in [
        ("truncated.parquet", whole[..whole.len() / 2].to_vec()),
        ("magic_only.parquet", b"PAR1".to_vec()),
        ("damaged_pages.parquet", pages),
        (
            "lfs_pointer.parquet",
            b"version https://git-lfs.github.com/spec/v1\n".to_vec(),
        ),
    ] {
        let path = tmp.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let err = strict_error::<PreferencePair>(&path);
        assert!(err.contains(name), "{err}");
        if name.starts_with("lfs") {
            assert!(err.contains("Git LFS pointer"), "{err}");
        }
    }
}

fn many_pairs(n: usize) -> Vec<PreferencePair> {
    (0..n)
        .map(|i| {
            let chat = |text: String| Content::Chat(vec![ChatMessage::new("assistant", text)]);
            PreferencePair {
                prompt: Content::Chat(vec![
                    ChatMessage::new("system", "Be kind."),
                    ChatMessage::new("user", format!("Question {i}?")),
                ]),
                chosen: chat(format!("Answer {i}.")),
                rejected: chat(format!("No answer {}.", i * 7)),
                meta: PairMeta {
                    chosen_score: (i % 3 == 0).then_some(i as f64 / 4.0),
                    chosen_ids: Some(vec![i as u32, 1, 2]),
                    chosen_logps: Some(vec![-0.5, -1.0, -(i as f32) / 8.0]),
                    ..PairMeta::default()
                },
            }
        })
        .collect()
}

#[test]
fn bpo_parquet_reads_back_across_row_groups_and_as_shards() {
    let tmp = tempfile::tempdir().unwrap();
    let pairs = many_pairs(2 * ROW_GROUP_ROWS + 17);
    let path = tmp.path().join("pairs.parquet");
    let mut writer = ParquetWriter::<PreferencePair>::create(&path).unwrap();
    for p in &pairs {
        writer.write(p).unwrap();
    }
    assert!(!path.exists(), "nothing at the path before finish");
    assert_eq!(writer.finish().unwrap(), pairs.len());
    assert_eq!(read::<PreferencePair>(&path), pairs);

    // A directory reads its .parquet shards in name order, other files ignored.
    let shards = tmp.path().join("shards");
    std::fs::create_dir(&shards).unwrap();
    let (a, b) = pairs.split_at(100);
    for (name, part) in [
        ("train-00001-of-00002.parquet", b),
        ("train-00000-of-00002.parquet", a),
    ] {
        let mut w = ParquetWriter::<PreferencePair>::create(&shards.join(name)).unwrap();
        for p in part {
            w.write(p).unwrap();
        }
        w.finish().unwrap();
    }
    std::fs::write(shards.join("README.md"), "shards").unwrap();
    assert_eq!(read::<PreferencePair>(&shards), pairs);

    // Prompts with text or messages, optional references (null rows of a messages column
    // too) and metadata.
    let text: Vec<PromptRecord> = (0..6)
        .map(|i| PromptRecord {
            prompt: Content::text(format!("Prompt {i}")),
            reference: (i % 2 == 0).then(|| Content::text(format!(" ref {i}"))),
            meta: [("genre".to_owned(), serde_json::json!(format!("g{}", i % 2)))].into(),
        })
        .collect();
    let chat: Vec<PromptRecord> = (0..4)
        .map(|i| PromptRecord {
            prompt: Content::Chat(vec![ChatMessage::new("user", format!("Hi {i}"))]),
            reference: (i != 1).then(|| Content::Chat(vec![ChatMessage::new("assistant", "Yo")])),
            meta: Default::default(),
        })
        .collect();
    for (name, prompts) in [("text.parquet", text), ("chat.parquet", chat)] {
        let path = tmp.path().join(name);
        let mut writer = ParquetWriter::<PromptRecord>::create(&path).unwrap();
        for p in &prompts {
            writer.write(p).unwrap();
        }
        writer.finish().unwrap();
        assert_eq!(read::<PromptRecord>(&path), prompts);
    }
}

#[test]
fn directories_read_one_split_and_name_the_others() {
    let tmp = tempfile::tempdir().unwrap();
    let pairs = many_pairs(30);
    let write = |path: &Path, part: &[PreferencePair]| {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut w = ParquetWriter::<PreferencePair>::create(path).unwrap();
        for p in part {
            w.write(p).unwrap();
        }
        w.finish().unwrap();
    };
    // As `huggingface-cli download --local-dir` leaves a dataset.
    let dir = tmp.path().join("prefs");
    write(&dir.join("data/train-00000-of-00002.parquet"), &pairs[..10]);
    write(
        &dir.join("data/train-00001-of-00002.parquet"),
        &pairs[10..20],
    );
    write(&dir.join("data/test-00000-of-00001.parquet"), &pairs[20..]);
    let err = strict_error::<PreferencePair>(&dir);
    let want = format!(
        "holds several splits (test, train): name one as {}:SPLIT",
        dir.display()
    );
    assert!(err.contains(&want), "{err}");
    let split = |name: &str| PathBuf::from(format!("{}:{name}", dir.display()));
    assert_eq!(read::<PreferencePair>(&split("train")), pairs[..20]);
    assert_eq!(read::<PreferencePair>(&split("test")), pairs[20..]);
    let err = strict_error::<PreferencePair>(&split("dev"));
    assert!(
        err.contains("has no split `dev`; its splits: test, train"),
        "{err}"
    );
}

#[test]
fn convert_goes_both_ways_and_a_column_keeps_one_form() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = fixtures();
    for case in ["pairs_standard", "pairs_conversational", "prompts"] {
        let jsonl = dir.join(format!("{case}.jsonl"));
        let parquet = tmp.path().join(format!("{case}.parquet"));
        let back = tmp.path().join(format!("{case}.back.jsonl"));
        let there = convert(&jsonl, &parquet, ReadOptions::default()).unwrap();
        let again = convert(&parquet, &back, ReadOptions::default()).unwrap();
        assert_eq!((there.records, there.kind), (again.records, again.kind));
        let original: Vec<_> =
            Reader::<bpo_data::stats::AnyRecord>::open(&jsonl, ReadOptions::default())
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
        let round: Vec<_> =
            Reader::<bpo_data::stats::AnyRecord>::open(&back, ReadOptions::default())
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
        assert_eq!(original, round, "{case}");
    }

    // Plain text after messages in one column cannot be Parquet: an error, and no file.
    let mixed = tmp.path().join("mixed.jsonl");
    let mut pairs = many_pairs(2);
    pairs[1].chosen = Content::text("plain");
    pairs[1].rejected = Content::text("text");
    pairs[1].prompt = Content::text("here");
    write_all(&mixed, &pairs).unwrap();
    let out = tmp.path().join("mixed.parquet");
    let err = convert(&mixed, &out, ReadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(
            "output record 1 (0-based): field `prompt` holds text, but earlier records wrote the \
             column as messages"
        ),
        "{err}"
    );
    assert!(!out.exists());
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn messages_with_fields_parquet_cannot_hold_are_refused_not_dropped() {
    use bpo_data::record::Record;
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("tools.parquet");
    let pair = PreferencePair::from_json(serde_json::json!({
        "prompt": [{"role": "user", "content": "Weather?"}],
        "chosen": [{"role": "assistant", "content": null, "tool_calls": [{"type": "function"}]}],
        "rejected": [{"role": "assistant", "content": "No idea."}],
    }))
    .unwrap();
    let mut writer = ParquetWriter::<PreferencePair>::create(&path).unwrap();
    let err = writer
        .write(&pair)
        .and_then(|()| writer.finish().map(|_| ()))
        .unwrap_err()
        .to_string();
    assert!(err.contains("field `chosen[0]` has `tool_calls`"), "{err}");
    assert!(!path.exists(), "nothing half-written");
}
