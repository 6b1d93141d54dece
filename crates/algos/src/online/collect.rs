//! One collection phase: the behavior model samples k responses per prompt in batched,
//! KV-cached generation calls (recording its log-probs), the annotator labels them, and the
//! best and worst (or the two) become a pair carrying scores, token ids and behavior log-probs.

use std::path::{Path, PathBuf};
use std::time::Instant;

use bpo_data::{Content, PairMeta, PreferencePair, PromptRecord, TokenizedPair};
use bpo_model::{SamplingConfig, Tokenizer, Transformer, generate};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::annotate::{Annotator, AnnotatorUsage, Preference, noisy_preference};
use crate::error::AlgoError;
use crate::online::config::OnlineSampling;

/// What collecting one phase's pairs found.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PhaseCollection {
    /// Prompts sampled (annotations spent).
    pub prompts: usize,
    /// Comparisons dropped because both responses were the same tokens.
    pub dropped_identical: usize,
    /// Comparisons dropped as ties.
    pub dropped_ties: usize,
    /// Mean annotator score of all samples.
    pub mean_score: f64,
    /// Mean response length in tokens.
    pub mean_response_tokens: f64,
    /// Seconds spent sampling and annotating.
    pub seconds: f64,
    /// Samples generated.
    pub samples: usize,
    /// What the annotator spent on them (API judges).
    #[serde(default)]
    pub annotator: Option<AnnotatorUsage>,
}

/// Per-sample scores of pairwise preferences between each group's two samples: 1 for the
/// preferred, 0 for the other, 0.5 each for a tie.
fn preference_scores(
    preferences: &[Preference],
    groups: &[Vec<usize>],
    samples: usize,
) -> Vec<f64> {
    let mut scores = vec![0.5; samples];
    for (preference, group) in preferences.iter().zip(groups) {
        let (first, second) = match preference {
            Preference::First => (1.0, 0.0),
            Preference::Second => (0.0, 1.0),
            Preference::Tie => (0.5, 0.5),
        };
        scores[group[0]] = first;
        scores[group[1]] = second;
    }
    scores
}

/// The token ids and behavior log-probs a sampled pair carries in its meta.
pub fn tokenized_from_meta(pair: &PreferencePair) -> Result<TokenizedPair, AlgoError> {
    let m = &pair.meta;
    match (
        &m.prompt_ids,
        &m.chosen_ids,
        &m.rejected_ids,
        &m.chosen_logps,
        &m.rejected_logps,
    ) {
        (Some(p), Some(c), Some(r), Some(lc), Some(lr)) => Ok(TokenizedPair {
            prompt: p.clone(),
            chosen: c.clone(),
            rejected: r.clone(),
            chosen_logps: Some(lc.clone()),
            rejected_logps: Some(lr.clone()),
            truncated: false,
        }),
        _ => Err(AlgoError::Config(
            "a sampled pair lacks its token ids or behavior log-probs".into(),
        )),
    }
}

/// Samples k responses per prompt with `behavior` (batched generation calls of
/// `sampling.batch_size` sequences), has `annotator` label them and returns the pairs (with
/// their meta: scores, `version`, token ids, behavior log-probs) and what was dropped.
#[allow(clippy::too_many_arguments)]
pub fn collect_pairs(
    behavior: &Transformer,
    tokenizer: &Tokenizer,
    prompts: &[(usize, &PromptRecord, Vec<u32>)],
    sampling: &OnlineSampling,
    annotator: &mut dyn Annotator,
    label_noise: Option<f64>,
    version: u64,
    seed: u64,
) -> Result<(Vec<PreferencePair>, PhaseCollection), AlgoError> {
    let started = Instant::now();
    let k = sampling.samples_per_prompt;
    let config = SamplingConfig {
        temperature: sampling.temperature,
        top_k: sampling.top_k,
        top_p: sampling.top_p,
        max_new_tokens: sampling.max_new_tokens,
        seed,
        ignore_eos: false,
    };
    let ids: Vec<Vec<u32>> = prompts.iter().map(|(_, _, ids)| ids.clone()).collect();
    let generations = generate(
        behavior,
        tokenizer,
        &ids,
        k,
        sampling.batch_size,
        &config,
        |_| {},
    )?;
    // Indices into `generations` (and `scores`) of each prompt's samples.
    let mut groups: Vec<Vec<usize>> = vec![Vec::with_capacity(k); prompts.len()];
    for (i, g) in generations.iter().enumerate() {
        groups[g.prompt_index].push(i);
    }
    let items: Vec<(&Content, &str)> = generations
        .iter()
        .map(|g| (&prompts[g.prompt_index].1.prompt, g.text.as_str()))
        .collect();
    // A failed judgment scores NaN: it is left out of the mean and never chosen, and a pair
    // with one compares as a tie (dropped). A judge that compares (pairwise) labels each
    // prompt's two samples: 1 for the preferred, 0 for the other, 0.5 each for a tie.
    let pair_items: Vec<(&Content, &str, &str)> = groups
        .iter()
        .filter(|_| k == 2)
        .map(|g| {
            let prompt = &prompts[generations[g[0]].prompt_index].1.prompt;
            (
                prompt,
                generations[g[0]].text.as_str(),
                generations[g[1]].text.as_str(),
            )
        })
        .collect();
    let preferences = match k {
        2 => annotator.prefer_pairs(&pair_items).transpose()?,
        _ => None,
    };
    let pairwise = preferences.is_some();
    let scores = match preferences {
        Some(preferences) => preference_scores(&preferences, &groups, generations.len()),
        None => annotator.score_prompts(&items)?,
    };
    // The raw replies behind the labels (API judges): per pair when the judge compared, per
    // sample when it scored; kept in each pair's meta for audit.
    let replies = annotator.take_replies();
    let judged: Vec<f64> = scores.iter().copied().filter(|s| s.is_finite()).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x006e_6f69_7365);
    let mut stats = PhaseCollection {
        prompts: prompts.len(),
        samples: generations.len(),
        mean_score: judged.iter().sum::<f64>() / judged.len().max(1) as f64,
        mean_response_tokens: generations.iter().map(|g| g.token_ids.len()).sum::<usize>() as f64
            / generations.len().max(1) as f64,
        annotator: annotator.take_usage(),
        ..PhaseCollection::default()
    };
    let mut pairs = Vec::new();
    for (n, ((index, record, prompt_ids), group)) in prompts.iter().zip(&groups).enumerate() {
        let by_score = |a: &&usize, b: &&usize| scores[**a].total_cmp(&scores[**b]);
        let finite = || group.iter().filter(|&&i| scores[i].is_finite());
        let best = *finite().max_by(by_score).unwrap_or(&group[0]);
        let worst = *finite().min_by(by_score).unwrap_or(&group[0]);
        let (i1, i2) = if k == 2 {
            (group[0], group[1])
        } else {
            (best, worst)
        };
        let (first, second) = (&generations[i1], &generations[i2]);
        if first.token_ids == second.token_ids {
            stats.dropped_identical += 1;
            continue;
        }
        let (s1, s2) = (scores[i1], scores[i2]);
        let preference = match label_noise {
            Some(t) => noisy_preference(s1, s2, t, &mut rng),
            None => Preference::from_scores(s1, s2),
        };
        let (chosen, rejected, cs, rs, ci, ri) = match preference {
            Preference::First => (first, second, s1, s2, i1, i2),
            Preference::Second => (second, first, s2, s1, i2, i1),
            Preference::Tie => {
                stats.dropped_ties += 1;
                continue;
            }
        };
        let mut extra = std::collections::BTreeMap::new();
        extra.insert("prompt_index".into(), serde_json::json!(index));
        match (&replies, pairwise) {
            (Some(replies), true) => {
                extra.insert("judge_replies".into(), serde_json::json!(replies[n]));
            }
            (Some(replies), false) => {
                extra.insert(
                    "chosen_judge_replies".into(),
                    serde_json::json!(replies[ci]),
                );
                extra.insert(
                    "rejected_judge_replies".into(),
                    serde_json::json!(replies[ri]),
                );
            }
            (None, _) => {}
        }
        pairs.push(PreferencePair {
            prompt: record.prompt.clone(),
            chosen: Content::Text(chosen.text.clone()),
            rejected: Content::Text(rejected.text.clone()),
            meta: PairMeta {
                chosen_score: Some(cs),
                rejected_score: Some(rs),
                behavior_version: Some(version),
                prompt_ids: Some(prompt_ids.clone()),
                chosen_ids: Some(chosen.token_ids.clone()),
                rejected_ids: Some(rejected.token_ids.clone()),
                chosen_logps: Some(chosen.logprobs.clone()),
                rejected_logps: Some(rejected.logprobs.clone()),
                extra,
            },
        });
    }
    stats.seconds = started.elapsed().as_secs_f64();
    Ok((pairs, stats))
}

/// The pair file of phase `phase` (0-based) of a run.
pub fn pairs_path(out: &Path, phase: usize) -> PathBuf {
    out.join("pairs")
        .join(format!("phase-{:02}.jsonl", phase + 1))
}
