//! A model's weights packed for decoding ([`PackedWeight`]): made once on the CPU (per
//! generation call, or once for many with [`crate::Generator`]), all in one allocation, so that
//! every product of a decoding step streams its weights in the order the kernel reads them, and
//! the projections that read the same input (q, k, v; gate, up) make one product.

use burn::backend::flex::FlexTensor;
use burn::nn::Linear;
use burn::tensor::Tensor;

use crate::flex;
use crate::host::to_f32_vec;
use crate::linear::{PackedWeight, Unpacked, base_weight};

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

/// The layers of one block, grouped by the products a decoding step makes.
#[derive(Debug, Clone)]
pub struct BlockLayers<'a> {
    /// q, k and v.
    pub qkv: [&'a Linear; 3],
    /// The attention's output projection.
    pub o: &'a Linear,
    /// gate and up (SwiGLU), or up alone (GPT-2).
    pub mlp_in: Vec<&'a Linear>,
    /// The MLP's down projection.
    pub down: &'a Linear,
}

/// The output head a model decodes with.
#[derive(Debug, Clone)]
pub enum Head {
    /// A head `[hidden, vocab]` as the model applies it (a LoRA adapter merged in: the head's
    /// packed product has no activation path for it).
    Weight(Tensor<2>),
    /// A head tied to the token embedding `[vocab, hidden]` (its transpose).
    TiedTo(Tensor<2>),
}

impl DecodeWeights {
    /// The base weights of `blocks` and the `head` packed one after the other into one
    /// allocation, in the order a decoding step reads them; `None` unless all of them are f32
    /// tensors on flex. Contiguous weights are read in place, others copied first.
    pub fn pack(blocks: &[BlockLayers], head: Head) -> Option<Self> {
        let (head_tensor, transposed) = match head {
            Head::Weight(weight) => (weight, false),
            Head::TiedTo(embedding) => (embedding, true),
        };
        let groups: Vec<Vec<Tensor<2>>> = blocks
            .iter()
            .flat_map(|b| [b.qkv.to_vec(), vec![b.o], b.mlp_in.clone(), vec![b.down]])
            .map(|layers| layers.iter().map(|l| base_weight(l)).collect())
            .collect();
        if !groups
            .iter()
            .flatten()
            .chain([&head_tensor])
            .all(flex::is_flex_f32)
        {
            return None;
        }
        let values: Vec<Vec<(HostValues, usize)>> = groups
            .iter()
            .map(|group| {
                group
                    .iter()
                    .map(|w| (HostValues::of(w), w.dims()[1]))
                    .collect()
            })
            .collect();
        let head_values = HostValues::of(&head_tensor);
        let [rows, columns] = head_tensor.dims();
        let mut unpacked: Vec<Unpacked> = groups
            .iter()
            .zip(&values)
            .map(|(group, values)| Unpacked::SideBySide {
                parts: values.iter().map(|(v, n)| (v.as_slice(), *n)).collect(),
                k: group[0].dims()[0],
            })
            .collect();
        unpacked.push(if transposed {
            Unpacked::Transposed {
                values: head_values.as_slice(),
                k: columns,
                n: rows,
            }
        } else {
            Unpacked::SideBySide {
                parts: vec![(head_values.as_slice(), columns)],
                k: rows,
            }
        });
        let mut packed = PackedWeight::pack_all(&unpacked).into_iter();
        let mut next = || packed.next().expect("one packed weight per product");
        let blocks = blocks
            .iter()
            .map(|_| BlockWeights {
                qkv: next(),
                o: next(),
                mlp_in: next(),
                down: next(),
            })
            .collect();
        let head = next();
        Some(DecodeWeights { blocks, head })
    }
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
