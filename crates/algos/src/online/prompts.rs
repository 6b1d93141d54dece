//! Prompts of online runs and evaluations: the embedded sentiment task or a prompt file, and
//! seeded samples of them stratified by genre.

use std::collections::BTreeMap;
use std::path::Path;

use bpo_data::{Content, PromptRecord, ReadOptions, Split, read_all, sentiment_prompts};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::error::AlgoError;

/// The file a prompt spec names (`None` for the embedded `sentiment:<split>`).
pub fn prompt_file(spec: &str) -> Option<&Path> {
    (!spec.starts_with("sentiment:")).then_some(Path::new(spec))
}

/// Reads prompts: `sentiment:<split>` or prompt records from a file, a directory of Parquet
/// shards or a Hub dataset split (anything `bpo_data::Reader::open` reads).
pub fn load_prompts(spec: &str) -> Result<Vec<PromptRecord>, AlgoError> {
    let Some(file) = prompt_file(spec) else {
        let split = match spec.trim_start_matches("sentiment:") {
            "train" => Split::Train,
            "dev" => Split::Dev,
            "test" => Split::Test,
            other => {
                return Err(AlgoError::Config(format!(
                    "prompts `sentiment:{other}`: the splits are train, dev and test"
                )));
            }
        };
        return Ok(sentiment_prompts(split)?);
    };
    let records = read_all::<PromptRecord>(file, ReadOptions::default())?.records;
    if records.is_empty() {
        return Err(AlgoError::Config(format!("{spec}: no prompts")));
    }
    Ok(records)
}

/// The plain text of a prompt an annotator sees (the last message of a conversation).
pub fn prompt_text(prompt: &Content) -> &str {
    match prompt {
        Content::Text(s) => s,
        Content::Chat(m) => m.last().map(|m| m.content.as_str()).unwrap_or_default(),
    }
}

/// The stratum of a prompt: its `meta.genre` (the embedded task's Brown-corpus genre), or one
/// stratum for prompts without one.
fn stratum(record: &PromptRecord) -> String {
    record
        .meta
        .get("genre")
        .and_then(|g| g.as_str())
        .unwrap_or_default()
        .to_owned()
}

/// A seeded sample of `limit` prompts stratified by genre, in file order: each genre gets its
/// share of `limit` (proportional, the slots left over to the largest remainders, so a genre
/// whose share is well under one prompt may get none), drawn at random within the genre. All
/// prompts when `limit` is `None` or not smaller than their number. The same `seed` gives the
/// same sample.
pub fn sample_prompts(
    prompts: Vec<PromptRecord>,
    limit: Option<usize>,
    seed: u64,
) -> Vec<PromptRecord> {
    let n = prompts.len();
    let Some(limit) = limit.filter(|&l| l < n) else {
        return prompts;
    };
    let mut strata: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, record) in prompts.iter().enumerate() {
        strata.entry(stratum(record)).or_default().push(i);
    }
    // Proportional shares, then the remaining slots to the largest remainders.
    let mut shares: Vec<(String, usize, f64)> = strata
        .iter()
        .map(|(name, members)| {
            let exact = limit as f64 * members.len() as f64 / n as f64;
            (name.clone(), exact.floor() as usize, exact - exact.floor())
        })
        .collect();
    let mut left = limit - shares.iter().map(|s| s.1).sum::<usize>();
    let mut order: Vec<usize> = (0..shares.len()).collect();
    order.sort_by(|&a, &b| {
        let empty = |i: usize| u8::from(shares[i].1 > 0);
        (empty(a), -shares[a].2)
            .partial_cmp(&(empty(b), -shares[b].2))
            .expect("finite")
    });
    for i in order {
        if left == 0 {
            break;
        }
        shares[i].1 += 1;
        left -= 1;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut keep = vec![false; n];
    for (name, take, _) in shares {
        let mut members = strata[&name].clone();
        members.shuffle(&mut rng);
        for &i in members.iter().take(take) {
            keep[i] = true;
        }
    }
    prompts
        .into_iter()
        .zip(keep)
        .filter_map(|(record, kept)| kept.then_some(record))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(strata: &[(&str, usize)]) -> Vec<PromptRecord> {
        strata
            .iter()
            .flat_map(|&(genre, n)| {
                (0..n).map(move |i| PromptRecord {
                    prompt: Content::text(format!("{genre} {i}")),
                    reference: None,
                    meta: BTreeMap::from([("genre".into(), serde_json::json!(genre))]),
                })
            })
            .collect()
    }

    fn genres(sample: &[PromptRecord]) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for r in sample {
            *counts.entry(stratum(r)).or_default() += 1;
        }
        counts
    }

    #[test]
    fn samples_are_stratified_seeded_and_in_file_order() {
        // Ordered by genre like the embedded task: a "first N" would be all reviews.
        let all = records(&[("reviews", 60), ("lore", 30), ("humor", 7), ("fiction", 3)]);
        let sample = sample_prompts(all.clone(), Some(20), 1);
        assert_eq!(sample.len(), 20);
        let counts = genres(&sample);
        // Shares 12 / 6 / 1.4 / 0.6: the one slot left goes to fiction, which has none yet.
        assert_eq!(counts["reviews"], 12);
        assert_eq!(counts["lore"], 6);
        assert_eq!(counts["humor"] + counts["fiction"], 2);
        assert_eq!(counts["fiction"], 1, "every genre is represented");
        // File order is kept.
        let position = |r: &PromptRecord| all.iter().position(|a| a == r).unwrap();
        assert!(sample.windows(2).all(|w| position(&w[0]) < position(&w[1])));
        // Seeded: the same seed, the same sample; another seed, another sample.
        assert_eq!(sample_prompts(all.clone(), Some(20), 1), sample);
        assert_ne!(sample_prompts(all.clone(), Some(20), 2), sample);
        // No limit, or a limit past the end: everything.
        assert_eq!(sample_prompts(all.clone(), None, 1).len(), 100);
        assert_eq!(sample_prompts(all, Some(500), 1).len(), 100);
    }
}
