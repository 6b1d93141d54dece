//! A model's weights packed for decoding ([`PackedWeight`]): made once per generation call on
//! the CPU, so that every product of a decoding step streams its weights in the order the
//! kernel reads them, and the projections that read the same input (q, k, v; gate, up) make one
//! product.

use burn::backend::flex::FlexTensor;
use burn::nn::Linear;
use burn::tensor::Tensor;

use crate::flex;
use crate::host::to_f32_vec;
use crate::linear::{PackedWeight, base_weight};

/// The packed weights of one block.
#[derive(Debug, Clone)]
pub struct BlockWeights {
    /// q, k and v side by side.
    pub qkv: PackedWeight,
    /// The attention's output projection.
    pub o: PackedWeight,
    /// gate and up side by side (SwiGLU), or up alone (GPT-2).
    pub mlp_in: PackedWeight,
    /// The MLP's down projection.
    pub down: PackedWeight,
}

/// Every projection of a model packed for decoding, the output head included.
#[derive(Debug, Clone)]
pub struct DecodeWeights {
    /// One entry per block, first to last.
    pub blocks: Vec<BlockWeights>,
    /// The output projection `[hidden, vocab]`.
    pub head: PackedWeight,
}

/// The base weights of `layers` (which read the same input) packed side by side; `None` unless
/// they are f32 tensors on flex. Contiguous weights are read in place, others copied first.
pub fn pack_layers(layers: &[&Linear]) -> Option<PackedWeight> {
    let weights: Vec<Tensor<2>> = layers.iter().map(|l| base_weight(l)).collect();
    if !weights.iter().all(flex::is_flex_f32) {
        return None;
    }
    Some(pack_tensors(&weights))
}

/// An output head `[hidden, vocab]` packed: its weight as the model applies it (a LoRA adapter
/// merged in, since the head's product has no activation path for it); `None` unless it is an
/// f32 tensor on flex.
pub fn pack_head(weight: Tensor<2>) -> Option<PackedWeight> {
    flex::is_flex_f32(&weight).then(|| pack_tensors(&[weight]))
}

/// The `[hidden, vocab]` output head tied to `embedding` (`[vocab, hidden]`, its transpose)
/// packed, read in place when contiguous; `None` unless the embedding is f32 on flex.
pub fn pack_tied_head(embedding: &Tensor<2>) -> Option<PackedWeight> {
    if !flex::is_flex_f32(embedding) {
        return None;
    }
    let [vocab, hidden] = embedding.dims();
    let packed = match flex::contiguous_f32(embedding) {
        Some(flex) => PackedWeight::from_transposed(
            flex.as_slice::<f32>().expect("contiguous"),
            hidden,
            vocab,
        ),
        None => PackedWeight::from_transposed(&to_f32_vec(embedding.clone()), hidden, vocab),
    };
    Some(packed)
}

/// `weights` (f32 on flex, all `[k, _]`) packed side by side, read in place where they are
/// contiguous (others are copied first).
fn pack_tensors(weights: &[Tensor<2>]) -> PackedWeight {
    let k = weights[0].dims()[0];
    let sources: Vec<(Result<FlexTensor, Vec<f32>>, usize)> = weights
        .iter()
        .map(|w| {
            let values = flex::contiguous_f32(w).ok_or_else(|| to_f32_vec(w.clone()));
            (values, w.dims()[1])
        })
        .collect();
    let parts: Vec<(&[f32], usize)> = sources
        .iter()
        .map(|(values, n)| {
            let values = match values {
                Ok(flex) => flex.as_slice::<f32>().expect("checked contiguous"),
                Err(copy) => copy.as_slice(),
            };
            (values, *n)
        })
        .collect();
    PackedWeight::side_by_side(&parts, k)
}
