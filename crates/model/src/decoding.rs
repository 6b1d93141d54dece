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
    let values = HostValues::of(embedding);
    Some(PackedWeight::from_transposed(
        values.as_slice(),
        hidden,
        vocab,
    ))
}

/// `weights` (f32 on flex, all `[k, _]`) packed side by side.
fn pack_tensors(weights: &[Tensor<2>]) -> PackedWeight {
    let k = weights[0].dims()[0];
    let values: Vec<(HostValues, usize)> = weights
        .iter()
        .map(|w| (HostValues::of(w), w.dims()[1]))
        .collect();
    let parts: Vec<(&[f32], usize)> = values.iter().map(|(v, n)| (v.as_slice(), *n)).collect();
    PackedWeight::side_by_side(&parts, k)
}

/// The values of an f32 flex tensor on the host: read in place when it is contiguous, else a
/// row-major copy.
enum HostValues {
    InPlace(FlexTensor),
    Copied(Vec<f32>),
}

impl HostValues {
    fn of(tensor: &Tensor<2>) -> Self {
        match flex::contiguous_f32(tensor) {
            Some(flex) => HostValues::InPlace(flex),
            None => HostValues::Copied(to_f32_vec(tensor.clone())),
        }
    }

    fn as_slice(&self) -> &[f32] {
        match self {
            HostValues::InPlace(flex) => flex.as_slice::<f32>().expect("checked contiguous"),
            HostValues::Copied(values) => values,
        }
    }
}
