//! AdamW's update of one parameter tensor in one pass on flex: both moments and the parameter,
//! in place, on the rayon pool. Burn's AdamW takes about ten single-threaded tensor operations
//! per parameter, each with a fresh buffer: a tenth of a full fine-tuning step of SmolLM2.
//!
//! Same arithmetic as Burn's AdamW (`burn-optim` 0.22), operation for operation:
//! `m = b1 m + (1 - b1) g`, `v = b2 v + (1 - b2) g^2` (the first step starts from zero moments
//! without the decayed terms), `delta = (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)`,
//! `p = p (1 - lr wd) - lr delta`, the scalars computed as Burn computes them.

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::tensor::Tensor;
use rayon::prelude::*;

use super::{Primitive, primitive, values};

/// Elements per parallel task.
const CHUNK: usize = 1 << 14;

/// The settings and step count of one AdamW update.
#[derive(Debug, Clone, Copy)]
pub struct AdamWStep {
    /// Learning rate.
    pub lr: f64,
    /// First-moment decay.
    pub beta1: f32,
    /// Second-moment decay.
    pub beta2: f32,
    /// Added to the root of the second moment.
    pub eps: f32,
    /// Decoupled weight decay.
    pub weight_decay: f32,
    /// The step number of this update, from 1.
    pub time: i32,
}

/// Whether [`adamw_update`] takes `tensor` (an f32 tensor on flex without autodiff).
pub fn takes<const D: usize>(tensor: &Tensor<D>) -> bool {
    matches!(primitive(tensor), Some(Primitive::Plain(_)))
}

/// The updated parameter and moments `(param, m, v)` after one AdamW step with gradient `grad`;
/// `moments` are the previous `(m, v)`, `None` at the first step. Every tensor must pass
/// [`takes`] and have the parameter's shape.
pub fn adamw_update<const D: usize>(
    param: Tensor<D>,
    grad: Tensor<D>,
    moments: Option<(Tensor<D>, Tensor<D>)>,
    step: &AdamWStep,
) -> (Tensor<D>, Tensor<D>, Tensor<D>) {
    let shape = param.shape();
    let plain = |t: Tensor<D>| -> FlexTensor {
        t.try_into_primitive::<Flex>()
            .expect("adamw_update takes flex tensors")
            .to_contiguous()
    };
    let len = shape.num_elements();
    let mut p = plain(param);
    let g = plain(grad);
    let first = moments.is_none();
    let (mut m, mut v) = match moments {
        Some((m, v)) => (plain(m), plain(v)),
        None => {
            let zeros = || FlexTensor::zeros(shape.clone(), burn::tensor::DType::F32);
            (zeros(), zeros())
        }
    };
    // Burn's scalars: `1 - beta` in f32, `1 - lr wd` in f64 cast to f32.
    let (b1, b2) = (step.beta1, step.beta2);
    let (f1, f2) = (1.0 - b1, 1.0 - b2);
    let (c1, c2) = (1f32 - b1.powi(step.time), 1f32 - b2.powi(step.time));
    let decay_rate = step.lr * step.weight_decay as f64;
    let keep = (decay_rate != 0.0).then_some((1.0 - decay_rate) as f32);
    let (lr, eps) = (step.lr as f32, step.eps);
    let g = values(&g);
    let sizes = [
        g.len(),
        m.layout().num_elements(),
        v.layout().num_elements(),
    ];
    assert_eq!(
        sizes, [len; 3],
        "gradient and moments of the parameter's shape"
    );
    p.storage_mut::<f32>()[..len]
        .par_chunks_mut(CHUNK)
        .zip(m.storage_mut::<f32>()[..len].par_chunks_mut(CHUNK))
        .zip(v.storage_mut::<f32>()[..len].par_chunks_mut(CHUNK))
        .zip(g.par_chunks(CHUNK))
        .for_each(|(((p, m), v), g)| {
            for i in 0..p.len() {
                let (gi, mi, vi) = (g[i], m[i], v[i]);
                m[i] = if first { gi * f1 } else { mi * b1 + gi * f1 };
                v[i] = if first {
                    gi * gi * f2
                } else {
                    vi * b2 + gi * gi * f2
                };
                let delta = (m[i] / c1) / ((v[i] / c2).sqrt() + eps);
                let decayed = keep.map_or(p[i], |keep| p[i] * keep);
                p[i] = decayed - delta * lr;
            }
        });
    let tensor = |t: FlexTensor| Tensor::<D>::from_primitive::<Flex>(t);
    (tensor(p), tensor(m), tensor(v))
}
