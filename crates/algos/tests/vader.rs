//! Our VADER (`crates/algos/src/annotate/vader.rs`) against the reference implementation, Python
//! vaderSentiment 3.3.2, on the committed fixture (`tests/fixtures/vader_fixture.jsonl`: human
//! sentences of every genre of the embedded task, constructed cases for VADER's rules, and model
//! outputs). CI recomputes the Python side with `scripts/check_vader.py`.
//!
//! This test keeps our side current and requires every text where the two differ by more than
//! 0.01 to carry a `note` saying why. `BPO_BLESS_VADER=1` rewrites the fixture's `bpo` scores.

use bpo_algos::annotate::{Annotator, Vader};
use serde_json::Value;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/vader_fixture.jsonl"
);

#[test]
fn vader_matches_the_committed_scores() {
    let text = std::fs::read_to_string(FIXTURE).unwrap();
    let mut rows: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let items: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| ("", r["text"].as_str().unwrap()))
        .collect();
    let ours = Vader::new().score(&items).unwrap();
    if std::env::var_os("BPO_BLESS_VADER").is_some() {
        for (row, score) in rows.iter_mut().zip(&ours) {
            row["bpo"] = serde_json::json!(score);
        }
        let lines: Vec<String> = rows.iter().map(|r| r.to_string() + "\n").collect();
        std::fs::write(FIXTURE, lines.concat()).unwrap();
        return;
    }
    let mut undocumented = Vec::new();
    for (row, score) in rows.iter().zip(&ours) {
        let committed = row["bpo"].as_f64().expect("every text has a bpo score");
        assert!(
            (score - committed).abs() < 1e-12,
            "{:?}: {score} now, {committed} committed",
            row["text"]
        );
        let python = row["python"].as_f64().unwrap();
        if (score - python).abs() > 0.01 && row.get("note").is_none() {
            undocumented.push(format!("{:?}: bpo {score} vs python {python}", row["text"]));
        }
    }
    assert!(
        undocumented.is_empty(),
        "differences from vaderSentiment 3.3.2 without a note:\n{}",
        undocumented.join("\n")
    );
}
