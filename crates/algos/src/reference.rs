//! Reference policies of DAP losses: log-probs from a frozen model (computed once and cached on
//! disk, keyed by model and data hashes), the behavior log-probs the pairs carry (BPO), an
//! exponential moving average of the policy scored on the fly, or none.

use std::path::{Path, PathBuf};

use bpo_data::{PairBatch, TokenizedPair};
use bpo_model::Transformer;
use bpo_model::burn::module::Module;
use bpo_model::burn::tensor::Device;
use bpo_model::fsutil::write_atomic;
use bpo_model::host::to_f32_vec;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::{ReferenceConfig, ReferenceMode};
use crate::error::AlgoError;
use crate::logps::pair_logps;
use crate::loss::PairLogps;
use crate::optim::blend_into;

/// Where reference log-probs come from during training.
pub enum Reference {
    /// Computed once (the initial model) or carried by the pairs (behavior).
    Fixed(ReferenceLogps),
    /// An exponential moving average of the policy, scored on the fly.
    Ema {
        /// The averaged model (no autodiff).
        model: Box<Transformer>,
        /// Weight of the old average per step.
        alpha: f64,
    },
    /// Reference-free.
    Free,
}

impl Reference {
    /// The reference `config.mode` asks for on `pairs`: `initial` calls `initial` for the
    /// frozen model's log-probs (cached or not, as the caller decides), `behavior` reads the
    /// pairs' own log-probs, `ema` starts from `ema_start()`.
    pub fn for_mode(
        config: &ReferenceConfig,
        pairs: &[TokenizedPair],
        initial: impl FnOnce() -> Result<ReferenceLogps, AlgoError>,
        ema_start: impl FnOnce() -> Transformer,
    ) -> Result<Self, AlgoError> {
        Ok(match config.mode {
            ReferenceMode::Initial => Reference::Fixed(initial()?),
            ReferenceMode::Behavior => Reference::Fixed(behavior_reference(pairs)?),
            ReferenceMode::Ema => Reference::Ema {
                model: Box::new(ema_start()),
                alpha: config.ema_alpha,
            },
            ReferenceMode::None => Reference::Free,
        })
    }

    /// Reference log-probs of the pairs `indices` (forming `batch`), on `device`.
    pub fn logps(
        &self,
        indices: &[usize],
        batch: &PairBatch,
        device: &Device,
    ) -> Result<Option<PairLogps>, AlgoError> {
        Ok(match self {
            Reference::Fixed(r) => Some(r.select(indices, device)),
            Reference::Ema { model, .. } => {
                let l = pair_logps(model, batch);
                let host = ReferenceLogps {
                    chosen: to_f32_vec(l.chosen),
                    rejected: to_f32_vec(l.rejected),
                    chosen_tokens: to_f32_vec(l.chosen_tokens),
                    rejected_tokens: to_f32_vec(l.rejected_tokens),
                };
                Some(host.select(&(0..indices.len()).collect::<Vec<_>>(), device))
            }
            Reference::Free => None,
        })
    }

    /// Moves an EMA reference towards `policy` (merged, no autodiff); other references stay.
    pub fn follow(&mut self, policy: &Transformer) {
        if let Reference::Ema { model, alpha } = self {
            **model = blend_into((**model).clone(), policy, *alpha);
        }
    }

    /// The fixed log-probs, when the reference has them.
    pub fn fixed(&self) -> Option<&ReferenceLogps> {
        match self {
            Reference::Fixed(logps) => Some(logps),
            _ => None,
        }
    }

    /// The EMA model, when the reference is one.
    pub fn ema_model(&mut self) -> Option<&mut Transformer> {
        match self {
            Reference::Ema { model, .. } => Some(model.as_mut()),
            _ => None,
        }
    }
}

/// Reference log-probs of every pair of a data set, on the host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReferenceLogps {
    /// Summed log-prob of each chosen response.
    pub chosen: Vec<f32>,
    /// Summed log-prob of each rejected response.
    pub rejected: Vec<f32>,
    /// Chosen response lengths.
    pub chosen_tokens: Vec<f32>,
    /// Rejected response lengths.
    pub rejected_tokens: Vec<f32>,
}

impl ReferenceLogps {
    /// The values of pairs `indices`, on `device`.
    pub fn select(&self, indices: &[usize], device: &Device) -> PairLogps {
        let pick = |v: &[f32]| indices.iter().map(|&i| v[i]).collect::<Vec<f32>>();
        PairLogps::from_host(
            &pick(&self.chosen),
            &pick(&self.rejected),
            &pick(&self.chosen_tokens),
            &pick(&self.rejected_tokens),
            device,
        )
    }

    fn extend(&mut self, logps: &PairLogps) {
        self.chosen.extend(to_f32_vec(logps.chosen.clone()));
        self.rejected.extend(to_f32_vec(logps.rejected.clone()));
        self.chosen_tokens
            .extend(to_f32_vec(logps.chosen_tokens.clone()));
        self.rejected_tokens
            .extend(to_f32_vec(logps.rejected_tokens.clone()));
    }

    fn empty() -> Self {
        ReferenceLogps {
            chosen: Vec::new(),
            rejected: Vec::new(),
            chosen_tokens: Vec::new(),
            rejected_tokens: Vec::new(),
        }
    }
}

/// Scores every pair with a frozen `model`, `batch_size` pairs at a time; `on_batch` gets the
/// number of pairs done.
pub fn compute_reference(
    model: &Transformer,
    pairs: &[TokenizedPair],
    batch_size: usize,
    pad_id: u32,
    mut on_batch: impl FnMut(usize),
) -> Result<ReferenceLogps, AlgoError> {
    let frozen = model.valid();
    let mut out = ReferenceLogps::empty();
    for chunk in pairs.chunks(batch_size.max(1)) {
        let batch = PairBatch::new(chunk, pad_id)?;
        out.extend(&pair_logps(&frozen, &batch));
        on_batch(out.chosen.len());
    }
    Ok(out)
}

/// The behavior log-probs recorded with the pairs (online samples); an error names the first
/// pair without them.
pub fn behavior_reference(pairs: &[TokenizedPair]) -> Result<ReferenceLogps, AlgoError> {
    let mut out = ReferenceLogps::empty();
    for (i, p) in pairs.iter().enumerate() {
        let (Some(c), Some(r)) = (&p.chosen_logps, &p.rejected_logps) else {
            return Err(AlgoError::Config(format!(
                "reference.mode = \"behavior\" needs behavior log-probs (meta.chosen_ids/chosen_logps and meta.rejected_ids/rejected_logps); pair {i} has none"
            )));
        };
        out.chosen.push(c.iter().sum());
        out.rejected.push(r.iter().sum());
        out.chosen_tokens.push(p.chosen.len() as f32);
        out.rejected_tokens.push(p.rejected.len() as f32);
    }
    Ok(out)
}

/// A content hash of a model's weights (adapters merged).
pub fn model_fingerprint(model: &Transformer) -> String {
    let mut h = Sha256::new();
    for (name, t) in &model.to_tensor_map().tensors {
        h.update(name.as_bytes());
        for v in &t.data {
            h.update(v.to_le_bytes());
        }
    }
    hex(&h.finalize())
}

fn pairs_fingerprint(pairs: &[TokenizedPair]) -> String {
    let mut h = Sha256::new();
    for p in pairs {
        for ids in [&p.prompt, &p.chosen, &p.rejected] {
            h.update((ids.len() as u64).to_le_bytes());
            for id in ids {
                h.update(id.to_le_bytes());
            }
        }
    }
    hex(&h.finalize())
}

/// Lower-case hex of `bytes` (digests in file names and fingerprints).
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Version of the code that computes reference log-probs: raise it when scoring changes (the
/// forward pass, the log-prob head, batching), so that entries written before are not reused.
const SCORING_VERSION: u32 = 2;

/// What, besides the weights and the pairs, decides a frozen model's log-probs: the dtype it
/// computes in, the device (backends reduce in different orders), bf16 products where they
/// run, and bpo's scoring code.
pub fn scoring_fingerprint(model: &Transformer) -> String {
    let weight = model.embed_tokens.weight.val();
    let bf16 = model.bf16_products
        && bpo_model::flex::bf16_supported()
        && bpo_model::flex::is_flex_f32(&weight);
    format!(
        "dtype {:?}; device {:?}; bpo {} scoring v{SCORING_VERSION}{}",
        weight.dtype(),
        model.device(),
        env!("CARGO_PKG_VERSION"),
        if bf16 { "; bf16 products" } else { "" },
    )
}

/// The cache file of reference log-probs on `pairs`, for a model with the given weight
/// fingerprint ([`model_fingerprint`]) and scoring fingerprint ([`scoring_fingerprint`]).
pub fn cache_path(
    dir: &Path,
    model_fingerprint: &str,
    scoring: &str,
    pairs: &[TokenizedPair],
) -> PathBuf {
    let key = hex(&Sha256::digest(format!(
        "{model_fingerprint}:{scoring}:{}",
        pairs_fingerprint(pairs)
    )));
    dir.join(format!("reference-{}.json", &key[..32]))
}

/// Reference log-probs of `pairs` under `model`, read from `cache_dir` when computed before and
/// written there otherwise. Returns them and whether the cache was hit.
pub fn cached_reference(
    model: &Transformer,
    pairs: &[TokenizedPair],
    batch_size: usize,
    pad_id: u32,
    cache_dir: &Path,
    on_batch: impl FnMut(usize),
) -> Result<(ReferenceLogps, bool), AlgoError> {
    let path = cache_path(
        cache_dir,
        &model_fingerprint(model),
        &scoring_fingerprint(model),
        pairs,
    );
    if let Ok(text) = std::fs::read_to_string(&path)
        && let Ok(cached) = serde_json::from_str::<ReferenceLogps>(&text)
        && cached.chosen.len() == pairs.len()
    {
        return Ok((cached, true));
    }
    let computed = compute_reference(model, pairs, batch_size, pad_id, on_batch)?;
    std::fs::create_dir_all(cache_dir).map_err(|e| AlgoError::io(cache_dir, e))?;
    let text = serde_json::to_string(&computed).expect("json");
    write_atomic(&path, text.as_bytes())?;
    Ok((computed, false))
}

#[cfg(test)]
mod tests {
    use bpo_model::burn::module::{ModuleMapper, Param};
    use bpo_model::burn::tensor::{FloatDType, Tensor};
    use bpo_model::{ModelType, Transformer};
    use bpo_testkit::tiny_model;

    use super::*;

    /// Casts every float parameter to its dtype.
    struct Cast(FloatDType);

    impl ModuleMapper for Cast {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            param.map(|t| t.cast(self.0))
        }
    }

    fn pairs() -> Vec<TokenizedPair> {
        vec![TokenizedPair {
            prompt: vec![1, 2, 3],
            chosen: vec![4, 5],
            rejected: vec![6],
            chosen_logps: None,
            rejected_logps: None,
            truncated: false,
        }]
    }

    #[test]
    #[allow(deprecated)] // ndarray: a second CPU device to key on
    fn the_cache_is_keyed_by_dtype_device_and_weights() {
        // Weights that f16 holds exactly, as f16 and as f32: the same values.
        let half: Transformer =
            tiny_model(ModelType::LLAMA, 0, &Device::flex()).map(&mut Cast(FloatDType::F16));
        let full: Transformer = half.clone().map(&mut Cast(FloatDType::F32));
        assert_eq!(model_fingerprint(&half), model_fingerprint(&full));
        let elsewhere = full.clone().to_device(&Device::ndarray());
        let other_weights = tiny_model(ModelType::LLAMA, 1, &Device::flex());
        let dir = tempfile::tempdir().unwrap();
        let pairs = pairs();
        let path = |m: &Transformer| {
            cache_path(
                dir.path(),
                &model_fingerprint(m),
                &scoring_fingerprint(m),
                &pairs,
            )
        };
        let paths = [&full, &half, &elsewhere, &other_weights].map(path);
        for (i, a) in paths.iter().enumerate() {
            for b in &paths[i + 1..] {
                assert_ne!(a, b);
            }
        }
        let cached = |m: &Transformer| cached_reference(m, &pairs, 4, 0, dir.path(), |_| {});
        let (first, hit) = cached(&full).unwrap();
        assert!(!hit);
        let (again, hit) = cached(&full).unwrap();
        assert!(hit);
        assert_eq!(first.chosen, again.chosen);
        // (An f16 forward needs an f16-configured device, one per process: the paths above
        // show its entry is another file.)
        let (_, hit) = cached(&elsewhere).unwrap();
        assert!(
            !hit,
            "an ndarray run read the flex run's reference log-probs"
        );
        // bf16 products are another entry where they run (flex, AVX512-BF16), the same
        // elsewhere (they change nothing there).
        let mut bf16 = full.clone();
        bf16.bf16_products = true;
        assert_eq!(
            path(&bf16) != path(&full),
            bpo_model::flex::bf16_supported()
        );
        let mut bf16_elsewhere = elsewhere.clone();
        bf16_elsewhere.bf16_products = true;
        assert_eq!(path(&bf16_elsewhere), path(&elsewhere));
    }
}
