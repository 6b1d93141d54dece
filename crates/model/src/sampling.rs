//! Next-token choice from one row of logits: greedy, or temperature, top-k and top-p sampling
//! (applied in that order, as Hugging Face does), with the log-probability of the chosen token
//! under the untempered model.

use rand::Rng;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::error::ModelError;

/// How generation picks tokens and when it stops.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SamplingConfig {
    /// Softmax temperature; `0` means greedy decoding (argmax, lowest id on ties).
    pub temperature: f32,
    /// Keep only the `k` most likely tokens (ties broken by lower id).
    pub top_k: Option<usize>,
    /// Keep the smallest set of most likely tokens whose probability reaches `p`.
    pub top_p: Option<f32>,
    /// Most tokens generated per sequence (the stop token included).
    pub max_new_tokens: usize,
    /// Seed of the sampling RNG; sequence `i` of a call uses stream `i`, so results do not
    /// depend on how the prompts are batched.
    pub seed: u64,
    /// Keep generating past the stop tokens (EOS, the model's other end-of-sequence ids, the
    /// template's end of turn): benchmarks, fixed-length samples.
    #[serde(default)]
    pub ignore_eos: bool,
}

impl Default for SamplingConfig {
    /// The paper's sampler: temperature 1, top-k 50, 128 new tokens, seed 0.
    fn default() -> Self {
        SamplingConfig {
            temperature: 1.0,
            top_k: Some(50),
            top_p: None,
            max_new_tokens: 128,
            seed: 0,
            ignore_eos: false,
        }
    }
}

impl SamplingConfig {
    /// Greedy decoding of up to `max_new_tokens`.
    pub fn greedy(max_new_tokens: usize) -> Self {
        SamplingConfig {
            temperature: 0.0,
            top_k: None,
            top_p: None,
            max_new_tokens,
            seed: 0,
            ignore_eos: false,
        }
    }

    /// True when decoding is greedy.
    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0
    }

    /// Rejects settings that cannot be sampled from.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |m: &str| Err(ModelError::Input(m.into()));
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return bad("temperature must be a finite number >= 0");
        }
        if self.top_k == Some(0) {
            return bad("top-k must be at least 1");
        }
        if let Some(p) = self.top_p
            && !(p > 0.0 && p <= 1.0)
        {
            return bad("top-p must be in (0, 1]");
        }
        Ok(())
    }

    /// The RNG of sequence `index`.
    pub fn rng(&self, index: usize) -> ChaCha8Rng {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(index as u64);
        rng
    }
}

/// `log_softmax(logits)[token]`, computed stably (in f32, vectorised: as training computes it).
pub fn log_prob(logits: &[f32], token: u32) -> f32 {
    crate::flex::log_softmax_at(logits, token as usize)
}

fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

/// The tokens sampling may pick and their renormalised probabilities, most likely first
/// (ties by lower id), after temperature, top-k and top-p. Not for greedy configs.
pub fn candidates(logits: &[f32], config: &SamplingConfig) -> Vec<(u32, f32)> {
    let t = config.temperature;
    let by_logit = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    let scaled = logits.iter().enumerate().map(|(i, &l)| (i as u32, l / t));
    let mut kept: Vec<(u32, f32)> = match config.top_k.filter(|&k| k < logits.len()) {
        Some(k) => top_k(scaled, k),
        None => scaled.collect(),
    };
    kept.sort_unstable_by(by_logit);
    let max = kept[0].1;
    let mut probs: Vec<f64> = kept
        .iter()
        .map(|&(_, l)| ((l - max) as f64).exp())
        .collect();
    let total: f64 = probs.iter().sum();
    probs.iter_mut().for_each(|p| *p /= total);
    if let Some(p) = config.top_p {
        let mut before = 0.0;
        let keep = probs
            .iter()
            .take_while(|&&q| {
                let keep = before < p as f64;
                before += q;
                keep
            })
            .count()
            .max(1);
        kept.truncate(keep);
        probs.truncate(keep);
        let total: f64 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= total);
    }
    kept.iter()
        .zip(probs)
        .map(|(&(id, _), p)| (id, p as f32))
        .collect()
}

/// A candidate token ordered worst first: a lower scaled logit, then a higher id, is greater.
#[derive(Debug, PartialEq)]
struct Worst(f32, u32);

impl Eq for Worst {}

impl PartialOrd for Worst {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Worst {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other.0.total_cmp(&self.0).then(self.1.cmp(&other.1))
    }
}

/// The `k` best `(id, value)` pairs (highest value, ties by lower id), in no order: one pass
/// with a heap of `k`, where most tokens lose one comparison against the worst kept.
fn top_k(candidates: impl Iterator<Item = (u32, f32)>, k: usize) -> Vec<(u32, f32)> {
    let mut heap = std::collections::BinaryHeap::with_capacity(k + 1);
    for (id, value) in candidates {
        if heap.len() < k {
            heap.push(Worst(value, id));
        } else if let Some(mut worst) = heap.peek_mut()
            // A lower value never gets in: one float comparison for most tokens (NaN and -0.0
            // go on to the exact comparison).
            && value.partial_cmp(&worst.0) != Some(std::cmp::Ordering::Less)
            && Worst(value, id) < *worst
        {
            *worst = Worst(value, id);
        }
    }
    heap.into_iter()
        .map(|Worst(value, id)| (id, value))
        .collect()
}

/// Picks the next token from `logits` and returns it with its untempered log-probability.
pub fn choose(logits: &[f32], config: &SamplingConfig, rng: &mut ChaCha8Rng) -> (u32, f32) {
    let token = if config.is_greedy() {
        argmax(logits)
    } else if config.top_k.is_none() && config.top_p.is_none() {
        sample_full(logits, config.temperature, rng)
    } else {
        let cands = candidates(logits, config);
        let mut u = rng.random::<f32>();
        let mut pick = cands[cands.len() - 1].0;
        for &(id, p) in &cands {
            if u < p {
                pick = id;
                break;
            }
            u -= p;
        }
        pick
    };
    (token, log_prob(logits, token))
}

/// Samples from `softmax(logits / t)` over the whole vocabulary without sorting.
fn sample_full(logits: &[f32], t: f32, rng: &mut ChaCha8Rng) -> u32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let weights: Vec<f64> = logits
        .iter()
        .map(|&l| (((l - max) / t) as f64).exp())
        .collect();
    let total: f64 = weights.iter().sum();
    let mut u = rng.random::<f64>() * total;
    for (i, &w) in weights.iter().enumerate() {
        if u < w {
            return i as u32;
        }
        u -= w;
    }
    (weights.len() - 1) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(top_k: Option<usize>, top_p: Option<f32>) -> SamplingConfig {
        SamplingConfig {
            temperature: 1.0,
            top_k,
            top_p,
            max_new_tokens: 1,
            seed: 0,
            ignore_eos: false,
        }
    }

    fn ids(c: &[(u32, f32)]) -> Vec<u32> {
        c.iter().map(|&(id, _)| id).collect()
    }

    #[test]
    fn top_k_keeps_the_k_largest_with_ties_to_lower_ids() {
        let logits = [0.0, 3.0, 1.0, 3.0, 2.0];
        assert_eq!(
            ids(&candidates(&logits, &config(Some(2), None))),
            vec![1, 3]
        );
        assert_eq!(
            ids(&candidates(&logits, &config(Some(3), None))),
            vec![1, 3, 4]
        );
        let c = candidates(&logits, &config(Some(2), None));
        assert!((c[0].1 - 0.5).abs() < 1e-6 && (c[1].1 - 0.5).abs() < 1e-6);
    }

    #[test]
    fn top_p_keeps_the_smallest_prefix_reaching_p() {
        // probabilities 0.5, 0.3, 0.15, 0.05
        let logits: Vec<f32> = [0.5f32, 0.3, 0.15, 0.05].iter().map(|p| p.ln()).collect();
        assert_eq!(ids(&candidates(&logits, &config(None, Some(0.5)))), vec![0]);
        assert_eq!(
            ids(&candidates(&logits, &config(None, Some(0.6)))),
            vec![0, 1]
        );
        assert_eq!(
            ids(&candidates(&logits, &config(None, Some(0.79)))),
            vec![0, 1]
        );
        assert_eq!(
            ids(&candidates(&logits, &config(None, Some(0.81)))),
            vec![0, 1, 2]
        );
        assert_eq!(
            ids(&candidates(&logits, &config(None, Some(1.0)))),
            vec![0, 1, 2, 3]
        );
        let c = candidates(&logits, &config(None, Some(0.6)));
        assert!((c[0].1 - 0.625).abs() < 1e-6, "{c:?}");
    }

    #[test]
    fn top_k_then_top_p() {
        let logits: Vec<f32> = [0.4f32, 0.3, 0.2, 0.1].iter().map(|p| p.ln()).collect();
        // top-2 renormalises to 4/7, 3/7; top-p 0.5 then keeps only the first.
        assert_eq!(
            ids(&candidates(&logits, &config(Some(2), Some(0.5)))),
            vec![0]
        );
    }

    #[test]
    fn temperature_sharpens() {
        let logits = [1.0f32, 0.0];
        let mut c = config(None, Some(1.0));
        let p1 = candidates(&logits, &c)[0].1;
        c.temperature = 0.5;
        let p_half = candidates(&logits, &c)[0].1;
        assert!(p_half > p1);
        assert!((p_half - 1.0 / (1.0 + (-2.0f32).exp())).abs() < 1e-6);
    }

    #[test]
    fn greedy_and_untempered_log_prob() {
        let logits = [0.0f32, 2.0, 1.0];
        let mut rng = SamplingConfig::greedy(1).rng(0);
        let (tok, lp) = choose(&logits, &SamplingConfig::greedy(1), &mut rng);
        assert_eq!(tok, 1);
        let expected = 2.0 - (1.0f32 + 2f32.exp() + 1f32.exp()).ln();
        assert!((lp - expected).abs() < 1e-6);
        // The log-prob ignores temperature.
        let mut hot = config(None, None);
        hot.temperature = 5.0;
        let (tok, lp) = choose(&logits, &hot, &mut rng);
        assert!((lp - log_prob(&logits, tok)).abs() < 1e-7);
    }

    #[test]
    fn top_k_keeps_the_best_values_with_ties_to_the_lower_id() {
        // The ids `top_k` keeps, best first, against a full sort by `total_cmp`, then id.
        let check = |values: &[f32], ks: &[usize]| {
            let by_value = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
            let pairs = || values.iter().enumerate().map(|(i, &v)| (i as u32, v));
            let ids = |mut v: Vec<(u32, f32)>| {
                v.sort_unstable_by(by_value);
                v.into_iter().map(|p| p.0).collect::<Vec<_>>()
            };
            let all = ids(pairs().collect());
            for &k in ks {
                assert_eq!(ids(top_k(pairs(), k)), all[..k], "k = {k}");
            }
        };
        let many: Vec<f32> = (0..5000).map(|i| ((i * 7919) % 97) as f32 * 0.5).collect();
        check(&many, &[1, 2, 50, 4999, 5000]);
        // NaNs (either sign) and signed zeros rank as `total_cmp` ranks them.
        check(
            &[0.0, f32::NAN, -0.0, 1.0, -f32::NAN, 2.0, 0.5, -1.0],
            &[1, 2, 3, 4, 5, 6, 7],
        );
    }

    #[test]
    fn log_prob_over_a_wide_vocabulary_equals_the_f64_log_softmax() {
        let logits: Vec<f32> = (0..49_157)
            .map(|i| ((i * 7919) % 1000) as f32 * 0.03 - 12.0)
            .collect();
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let sum: f64 = logits.iter().map(|&l| (l as f64 - max).exp()).sum();
        for token in [0u32, 17, 49_156] {
            let expected = logits[token as usize] as f64 - max - sum.ln();
            let ours = log_prob(&logits, token) as f64;
            assert!(
                (ours - expected).abs() < 1e-4,
                "{token}: {ours} vs {expected}"
            );
        }
    }

    #[test]
    fn same_seed_same_samples_and_frequencies_follow_probabilities() {
        let logits: Vec<f32> = [0.7f32, 0.2, 0.1].iter().map(|p| p.ln()).collect();
        let c = config(None, None);
        let draw = |seed| {
            let mut c = c.clone();
            c.seed = seed;
            let mut rng = c.rng(3);
            (0..4000)
                .map(|_| choose(&logits, &c, &mut rng).0)
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
        let freq0 = draw(7).iter().filter(|&&t| t == 0).count() as f32 / 4000.0;
        assert!((freq0 - 0.7).abs() < 0.03, "{freq0}");
    }
}
