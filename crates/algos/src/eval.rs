//! Evaluation (`bpo eval`): the paper's win rate against the human reference by a gold
//! annotator (greedy decoding, ties count as losses) with a bootstrap interval, the same by a
//! held-out judge (reward hacking shows as a gap), mean gold score, length, distinct-n, KL to
//! the initial model; and paired comparisons of two models on the same prompts.

use std::collections::HashSet;

use bpo_data::{Content, PromptRecord, Truncation, tokenize_prompt};
use bpo_model::{FinishReason, Generator, SamplingConfig, Tokenizer, Transformer, score};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::annotate::Annotator;
use crate::error::AlgoError;
use crate::online::prompt_text;

/// How to evaluate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalSettings {
    /// Most new tokens per response. Default 64.
    pub max_new_tokens: usize,
    /// Prompts per generation call. Default 16.
    pub batch_size: usize,
    /// Keep only the last this many prompt tokens. Default none.
    pub max_prompt_tokens: Option<usize>,
    /// Bootstrap resamples for intervals and p-values. Default 2000.
    pub bootstrap: usize,
    /// Seed of the bootstrap and of the KL samples. Default 0.
    pub seed: u64,
    /// Sampled responses (temperature 1) per prompt for the KL estimate; 0 = no KL. Default 1.
    pub kl_samples: usize,
    /// Estimate the KL on this many prompts (every k-th of those evaluated, so a stratified
    /// sample stays stratified); none = all. Default none.
    pub kl_prompts: Option<usize>,
}

impl Default for EvalSettings {
    fn default() -> Self {
        EvalSettings {
            max_new_tokens: 64,
            batch_size: 16,
            max_prompt_tokens: None,
            bootstrap: 2000,
            seed: 0,
            kl_samples: 1,
            kl_prompts: None,
        }
    }
}

/// A proportion with its 95% bootstrap interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// The point estimate.
    pub value: f64,
    /// 2.5th percentile of the bootstrap distribution.
    pub low: f64,
    /// 97.5th percentile.
    pub high: f64,
}

/// The evaluation of one model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// Prompts evaluated.
    pub prompts: usize,
    /// Gold annotator's name.
    pub gold: String,
    /// Win rate against the reference by the gold annotator (ties lose).
    pub win_rate: Interval,
    /// Mean gold score of the model's responses.
    pub gold_score: f64,
    /// Mean gold score of the references.
    pub reference_score: f64,
    /// The held-out judge's name and win rate, when there is one.
    pub heldout: Option<(String, Interval)>,
    /// Mean response length in tokens.
    pub mean_tokens: f64,
    /// Share of responses that reached `max_new_tokens` before ending a sentence (no
    /// end-of-sequence token, no `.`, `!` or `?` followed by a space, and no line break): a
    /// token limit that cuts most responses short would judge fragments.
    pub capped: f64,
    /// Distinct unigrams / all unigrams over all responses.
    pub distinct_1: f64,
    /// Distinct bigrams / all bigrams.
    pub distinct_2: f64,
    /// KL(model || initial) estimated on sampled responses, when an initial model was given:
    /// the mean of `kl_log_ratios`.
    pub kl_initial: Option<f64>,
    /// Every sample of the KL estimate: the index of its prompt (in `prompt_texts`) and its
    /// sequence log-ratio `log model(y|x) - log initial(y|x)`, y sampled from the model at
    /// temperature 1. Kept so that a bootstrap can resample the KL with the prompts.
    #[serde(default)]
    pub kl_log_ratios: Vec<(usize, f64)>,
    /// Per-prompt gold wins (1 or 0), for paired comparisons.
    pub wins: Vec<f64>,
    /// Per-prompt held-out judge wins (empty without a held-out judge).
    pub heldout_wins: Vec<f64>,
    /// The greedy responses.
    pub responses: Vec<String>,
    /// The prompts evaluated, in order (outcomes of different models pair by them).
    pub prompt_texts: Vec<String>,
}

/// 95% bootstrap interval of the mean of `values`.
pub fn bootstrap_mean(values: &[f64], resamples: usize, seed: u64) -> Interval {
    let n = values.len();
    let value = values.iter().sum::<f64>() / n.max(1) as f64;
    if n == 0 || resamples == 0 {
        return Interval {
            value,
            low: value,
            high: value,
        };
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut means: Vec<f64> = (0..resamples)
        .map(|_| (0..n).map(|_| values[rng.random_range(0..n)]).sum::<f64>() / n as f64)
        .collect();
    means.sort_by(f64::total_cmp);
    let at = |q: f64| means[((q * (resamples - 1) as f64).round() as usize).min(resamples - 1)];
    Interval {
        value,
        low: at(0.025),
        high: at(0.975),
    }
}

/// A paired comparison of two models' per-prompt outcomes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PairedComparison {
    /// Mean of `a - b` with its 95% paired-bootstrap interval.
    pub difference: Interval,
    /// Two-sided p-value of "no difference": twice the share of bootstrap means on the far side
    /// of zero (at least 1 / resamples).
    pub p_value: f64,
}

/// A resampled mean within this of zero counts on both sides of it.
const ZERO_TOLERANCE: f64 = 1e-12;

/// Paired bootstrap over prompts of `a[i] - b[i]`.
pub fn paired_bootstrap(a: &[f64], b: &[f64], resamples: usize, seed: u64) -> PairedComparison {
    assert_eq!(a.len(), b.len(), "paired outcomes of the same prompts");
    let diffs: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    let n = diffs.len();
    let difference = bootstrap_mean(&diffs, resamples, seed);
    if n == 0 || resamples == 0 {
        return PairedComparison {
            difference,
            p_value: 1.0,
        };
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mut below, mut above) = (0usize, 0usize);
    for _ in 0..resamples {
        let mean = (0..n).map(|_| diffs[rng.random_range(0..n)]).sum::<f64>() / n as f64;
        // Seed averages (fifths, ...) leave rounding noise where the true mean is zero.
        below += usize::from(mean <= ZERO_TOLERANCE);
        above += usize::from(mean >= -ZERO_TOLERANCE);
    }
    let tail = below.min(above).max(1) as f64 / resamples as f64;
    PairedComparison {
        difference,
        p_value: (2.0 * tail).min(1.0),
    }
}

/// Each prompt's mean outcome over seeds: `per_seed[s][p]` is seed `s`'s outcome on prompt `p`.
/// Every seed must cover the same prompts.
pub fn cluster_means(per_seed: &[Vec<f64>]) -> Vec<f64> {
    let prompts = per_seed.first().map_or(0, Vec::len);
    assert!(
        per_seed.iter().all(|s| s.len() == prompts),
        "every seed covers the same prompts"
    );
    (0..prompts)
        .map(|p| per_seed.iter().map(|s| s[p]).sum::<f64>() / per_seed.len() as f64)
        .collect()
}

/// 95% cluster-bootstrap interval of the mean outcome: prompts are resampled, each with all
/// of its seeds (outcomes on one prompt are correlated, so seeds are not independent trials).
pub fn cluster_bootstrap(per_seed: &[Vec<f64>], resamples: usize, seed: u64) -> Interval {
    bootstrap_mean(&cluster_means(per_seed), resamples, seed)
}

/// Paired cluster bootstrap of `a - b` over prompts (each side's seeds averaged per prompt;
/// the sides may have different numbers of seeds, e.g. the deterministic initial policy's one).
pub fn paired_cluster_bootstrap(
    a: &[Vec<f64>],
    b: &[Vec<f64>],
    resamples: usize,
    seed: u64,
) -> PairedComparison {
    paired_bootstrap(&cluster_means(a), &cluster_means(b), resamples, seed)
}

/// Distinct n-grams over all token sequences divided by all n-grams (0 when there are none).
pub fn distinct_n(sequences: &[Vec<u32>], n: usize) -> f64 {
    let mut seen = HashSet::new();
    let mut total = 0usize;
    for s in sequences {
        for gram in s.windows(n) {
            seen.insert(gram.to_vec());
            total += 1;
        }
    }
    if total == 0 {
        0.0
    } else {
        seen.len() as f64 / total as f64
    }
}

/// Whether `text` contains the end of a sentence: `.`, `!` or `?` followed by whitespace or the
/// end of the text, or a line break.
fn ends_a_sentence(text: &str) -> bool {
    let chars: Vec<char> = text.chars().collect();
    chars.iter().enumerate().any(|(i, &c)| {
        c == '\n'
            || (matches!(c, '.' | '!' | '?') && chars.get(i + 1).is_none_or(|n| n.is_whitespace()))
    })
}

/// Win (1) when the response beats the reference, else 0 (ties lose).
fn wins(
    annotator: &mut dyn Annotator,
    prompts: &[&Content],
    responses: &[String],
    references: &[String],
) -> Result<(Vec<f64>, f64, f64), AlgoError> {
    let items: Vec<(&Content, &str)> = prompts
        .iter()
        .zip(responses)
        .map(|(p, r)| (*p, r.as_str()))
        .chain(
            prompts
                .iter()
                .zip(references)
                .map(|(p, r)| (*p, r.as_str())),
        )
        .collect();
    let scores = annotator.score_prompts(&items)?;
    let (ours, theirs) = scores.split_at(prompts.len());
    let wins = ours
        .iter()
        .zip(theirs)
        .map(|(a, b)| f64::from(u8::from(a > b)))
        .collect();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    Ok((wins, mean(ours), mean(theirs)))
}

/// Evaluates `model` on `prompts` (each needs a `reference`).
pub fn evaluate(
    model: &Transformer,
    initial: Option<&Transformer>,
    tokenizer: &Tokenizer,
    prompts: &[PromptRecord],
    gold: &mut dyn Annotator,
    heldout: Option<&mut dyn Annotator>,
    settings: &EvalSettings,
) -> Result<EvalReport, AlgoError> {
    let truncation = Truncation {
        max_prompt_tokens: settings.max_prompt_tokens,
        ..Truncation::default()
    };
    let mut ids = Vec::with_capacity(prompts.len());
    let mut references = Vec::with_capacity(prompts.len());
    for (i, record) in prompts.iter().enumerate() {
        let reference = record.reference.as_ref().ok_or_else(|| {
            AlgoError::Config(format!("prompt {i} has no `reference` to compare against"))
        })?;
        references.push(reference.render_response());
        ids.push(tokenize_prompt(record, tokenizer, &truncation)?.0);
    }
    let greedy = SamplingConfig::greedy(settings.max_new_tokens);
    // One generator for the greedy responses and the KL samples: the weights packed once.
    let generator = Generator::new(model);
    let generations =
        generator.generate(tokenizer, &ids, 1, settings.batch_size, &greedy, |_| {})?;
    let responses: Vec<String> = generations.iter().map(|g| g.text.clone()).collect();
    let texts: Vec<&str> = prompts.iter().map(|p| prompt_text(&p.prompt)).collect();
    let contents: Vec<&Content> = prompts.iter().map(|p| &p.prompt).collect();
    let (gold_wins, gold_score, reference_score) = wins(gold, &contents, &responses, &references)?;
    let (heldout, heldout_wins) = match heldout {
        Some(judge) => {
            let (w, _, _) = wins(judge, &contents, &responses, &references)?;
            let interval = bootstrap_mean(&w, settings.bootstrap, settings.seed ^ 1);
            (Some((judge.name(), interval)), w)
        }
        None => (None, Vec::new()),
    };
    let tokens: Vec<Vec<u32>> = generations.iter().map(|g| g.token_ids.clone()).collect();
    let mut kl_log_ratios = Vec::new();
    let kl_initial = match initial {
        Some(initial) if settings.kl_samples > 0 => {
            let sampling = SamplingConfig {
                temperature: 1.0,
                top_k: None,
                top_p: None,
                max_new_tokens: settings.max_new_tokens,
                seed: settings.seed,
                ignore_eos: false,
            };
            let stride = settings
                .kl_prompts
                .map_or(1, |k| ids.len().div_ceil(k.max(1)).max(1));
            let kl_ids: Vec<Vec<u32>> = ids.iter().step_by(stride).cloned().collect();
            let samples = generator.generate(
                tokenizer,
                &kl_ids,
                settings.kl_samples,
                settings.batch_size,
                &sampling,
                |_| {},
            )?;
            // The packed weights are no longer needed: free them before scoring.
            drop(generator);
            let pairs: Vec<(Vec<u32>, Vec<u32>)> = samples
                .iter()
                .map(|g| (g.prompt_ids.clone(), g.token_ids.clone()))
                .collect();
            let reference = score(initial, &pairs, tokenizer.pad_id(), settings.batch_size)?;
            kl_log_ratios = samples
                .iter()
                .zip(&reference)
                .map(|(g, r)| (g.prompt_index * stride, (g.logprob_sum() - r.sum) as f64))
                .collect();
            let gap: f64 = kl_log_ratios.iter().map(|s| s.1).sum();
            Some(gap / kl_log_ratios.len().max(1) as f64)
        }
        _ => None,
    };
    Ok(EvalReport {
        prompts: prompts.len(),
        gold: gold.name(),
        win_rate: bootstrap_mean(&gold_wins, settings.bootstrap, settings.seed),
        gold_score,
        reference_score,
        heldout,
        mean_tokens: tokens.iter().map(Vec::len).sum::<usize>() as f64 / tokens.len().max(1) as f64,
        capped: generations
            .iter()
            .filter(|g| g.finish == FinishReason::Length && !ends_a_sentence(&g.text))
            .count() as f64
            / generations.len().max(1) as f64,
        distinct_1: distinct_n(&tokens, 1),
        distinct_2: distinct_n(&tokens, 2),
        kl_initial,
        kl_log_ratios,
        wins: gold_wins,
        heldout_wins,
        responses,
        prompt_texts: texts.iter().map(|t| t.to_string()).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentence_ends_are_punctuation_before_a_space_or_a_line_break() {
        assert!(ends_a_sentence(" went home. Then"));
        assert!(ends_a_sentence(" went home!"));
        assert!(ends_a_sentence(" a line\nbreak"));
        assert!(!ends_a_sentence(" costs 3.50 dollars"));
        assert!(!ends_a_sentence(" Mr.Smith and"));
        assert!(!ends_a_sentence(" and then"));
    }

    #[test]
    fn distinct_counts_unique_ngrams() {
        let s = vec![vec![1, 2, 1, 2], vec![1, 2]];
        assert_eq!(distinct_n(&s, 1), 2.0 / 6.0);
        // Bigrams: (1,2) (2,1) (1,2) (1,2): two distinct of four.
        assert_eq!(distinct_n(&s, 2), 0.5);
        assert_eq!(distinct_n(&[vec![1]], 2), 0.0);
    }

    #[test]
    fn bootstrap_interval_covers_the_mean_and_narrows_with_n() {
        let small: Vec<f64> = (0..20).map(|i| f64::from(i % 2)).collect();
        let large: Vec<f64> = (0..2000).map(|i| f64::from(i % 2)).collect();
        let a = bootstrap_mean(&small, 2000, 1);
        let b = bootstrap_mean(&large, 2000, 1);
        assert_eq!(a.value, 0.5);
        assert!(a.low < 0.5 && a.high > 0.5);
        assert!(b.high - b.low < (a.high - a.low) / 5.0);
        // Binomial standard error at n = 2000 is ~0.0112: the 95% interval is ~ +-0.022.
        assert!((b.high - b.low - 2.0 * 1.96 * 0.5 / 2000f64.sqrt()).abs() < 0.006);
    }

    #[test]
    fn cluster_bootstrap_counts_prompts_not_seeds() {
        let one: Vec<f64> = (0..300).map(|i| f64::from(u8::from(i % 3 == 0))).collect();
        let single = cluster_bootstrap(std::slice::from_ref(&one), 2000, 5);
        // Three identical seeds carry no more information than one: the same interval.
        let tripled = cluster_bootstrap(&[one.clone(), one.clone(), one.clone()], 2000, 5);
        assert_eq!(single, tripled);
        // Pooling them as 900 independent trials would have narrowed it by ~sqrt(3).
        let pooled = bootstrap_mean(&[one.clone(), one.clone(), one.clone()].concat(), 2000, 5);
        assert!((single.high - single.low) / (pooled.high - pooled.low) > 1.5);
        // A known difference: b wins a third of the prompts a wins, seed by seed.
        let a = vec![vec![1.0; 300], vec![1.0; 300]];
        let b = vec![one.clone(), one];
        let c = paired_cluster_bootstrap(&a, &b, 2000, 5);
        assert!((c.difference.value - 2.0 / 3.0).abs() < 1e-12);
        assert!(c.p_value <= 0.001);
        assert_eq!(paired_cluster_bootstrap(&b, &b, 2000, 5).p_value, 1.0);
    }

    #[test]
    fn paired_bootstrap_detects_a_consistent_difference() {
        let a: Vec<f64> = (0..200).map(|i| f64::from(u8::from(i % 4 != 0))).collect();
        let b: Vec<f64> = (0..200).map(|i| f64::from(u8::from(i % 4 == 0))).collect();
        let strong = paired_bootstrap(&a, &b, 2000, 3);
        assert!((strong.difference.value - 0.5).abs() < 1e-12);
        assert!(strong.p_value <= 0.001);
        let same = paired_bootstrap(&a, &a, 2000, 3);
        assert_eq!(same.p_value, 1.0);
    }
}
