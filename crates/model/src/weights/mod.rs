//! Weights in and out: named f32 host tensors in Hugging Face naming, the mapping between them
//! and a [`Transformer`] (driven by the architecture tables of [`crate::arch`]), and the file
//! formats (GGUF, safetensors, HF directories).

pub mod gguf;
pub mod hf_dir;
pub mod params;
pub mod safetensors;
mod tensor;

use std::collections::HashMap;

use burn::module::Module;
use burn::tensor::Device;

use crate::arch::Layout;
use crate::config::ModelConfig;
use crate::error::ModelError;
use crate::transformer::Transformer;
pub use tensor::{HostTensor, TensorMap};

/// Splits a tensor fused by columns (GPT-2's `c_attn`: `[d, 3d]` weight, `[3d]` bias; Phi-3's
/// q/k/v, transposed) into parts of the given widths.
fn split_columns(t: &HostTensor, widths: &[usize]) -> Vec<HostTensor> {
    let (rows, cols) = if t.shape.len() == 2 {
        (t.shape[0], t.shape[1])
    } else {
        (1, t.shape[0])
    };
    let starts: Vec<usize> = widths
        .iter()
        .scan(0, |start, w| {
            *start += w;
            Some(*start - w)
        })
        .collect();
    starts
        .iter()
        .zip(widths)
        .map(|(&start, &width)| {
            let mut data = Vec::with_capacity(rows * width);
            for r in 0..rows {
                data.extend_from_slice(&t.data[r * cols + start..r * cols + start + width]);
            }
            let shape = if t.shape.len() == 2 {
                vec![rows, width]
            } else {
                vec![width]
            };
            HostTensor::new(shape, data)
        })
        .collect()
}

/// Joins tensors by columns (the inverse of [`split_columns`]).
fn join_columns(parts: &[HostTensor]) -> HostTensor {
    let rows = if parts[0].shape.len() == 2 {
        parts[0].shape[0]
    } else {
        1
    };
    let widths: Vec<usize> = parts
        .iter()
        .map(|p| *p.shape.last().expect("non-scalar"))
        .collect();
    let total: usize = widths.iter().sum();
    let mut data = Vec::with_capacity(rows * total);
    for r in 0..rows {
        for (p, &width) in parts.iter().zip(&widths) {
            data.extend_from_slice(&p.data[r * width..(r + 1) * width]);
        }
    }
    let shape = if parts[0].shape.len() == 2 {
        vec![rows, total]
    } else {
        vec![total]
    };
    HostTensor::new(shape, data)
}

fn oriented(t: HostTensor, layout: Layout) -> HostTensor {
    match layout {
        Layout::Transposed if t.shape.len() == 2 => t.transposed(),
        _ => t,
    }
}

impl Transformer {
    /// Builds a model from tensors in Hugging Face naming (`model.layers.N.self_attn.q_proj`
    /// for the Llama family, `transformer.h.N.attn.c_attn` for GPT-2; the `transformer.` prefix
    /// is optional). Every tensor the architecture's table names for this configuration must be
    /// present with the right shape.
    pub fn from_tensor_map(
        config: &ModelConfig,
        mut map: TensorMap,
        device: &Device,
    ) -> Result<Self, ModelError> {
        config.validate()?;
        if let Some(prefix) = config.model_type.arch().optional_prefix {
            // Accept checkpoints saved without it (GPT-2's GPT2Model).
            let bare: Vec<String> = map
                .tensors
                .keys()
                .filter(|k| !k.starts_with(prefix) && !k.starts_with("lm_head."))
                .cloned()
                .collect();
            for key in bare {
                let t = map.tensors.remove(&key).expect("key listed above");
                map.tensors.insert(format!("{prefix}{key}"), t);
            }
        }
        if config.tie_word_embeddings {
            map.tensors.remove("lm_head.weight");
        }
        // The skeleton's parameters are lazy: building it allocates nothing they will not hold.
        let skeleton = Transformer::skeleton(config, device);
        let shapes = params::shapes(&skeleton);
        let mut values = HashMap::new();
        for named in config.model_type.arch().named(config.num_layers) {
            let parts: Vec<&Vec<usize>> = named.ours.iter().filter_map(|p| shapes.get(p)).collect();
            if parts.is_empty() {
                continue; // not in this configuration (biases, an untied head)
            }
            let widths: Vec<usize> = parts
                .iter()
                .map(|shape| *shape.last().expect("non-scalar"))
                .collect();
            let mut fused = parts[0].clone();
            *fused.last_mut().expect("non-scalar") = widths.iter().sum();
            let expected = match named.entry.hf_layout {
                Layout::Transposed if fused.len() == 2 => vec![fused[1], fused[0]],
                _ => fused,
            };
            let t = oriented(map.take(&named.hf, &expected)?, named.entry.hf_layout);
            let pieces = if parts.len() == 1 {
                vec![t]
            } else {
                split_columns(&t, &widths)
            };
            values.extend(named.ours.into_iter().zip(pieces));
        }
        refuse_unused(&map, config)?;
        let (model, unknown) = params::set(skeleton, values, device);
        assert!(
            unknown.is_empty(),
            "table paths without a parameter: {unknown:?}"
        );
        Ok(model)
    }

    /// All weights in Hugging Face naming and layout, as `transformers` expects them
    /// (LoRA adapters, if any, merged). The inverse of [`Transformer::from_tensor_map`].
    pub fn to_tensor_map(&self) -> TensorMap {
        let model = self.valid().materialize();
        let mut values = params::values(&model);
        let mut map = TensorMap::new("model");
        for named in model
            .config
            .model_type
            .arch()
            .named(model.config.num_layers)
        {
            let parts: Vec<HostTensor> =
                named.ours.iter().filter_map(|p| values.remove(p)).collect();
            if parts.is_empty() {
                continue;
            }
            let fused = if parts.len() == 1 {
                parts.into_iter().next().expect("one part")
            } else {
                join_columns(&parts)
            };
            map.insert(named.hf, oriented(fused, named.entry.hf_layout));
        }
        map
    }
}

/// Whether `name` is a buffer that checkpoints of older transformers versions carry and that
/// holds no weights: RoPE's inverse frequencies, the family's own (GPT-2's causal masks).
fn is_buffer(name: &str, config: &ModelConfig) -> bool {
    let buffers = config.model_type.arch().buffers;
    name.ends_with(".rotary_emb.inv_freq") || buffers.iter().any(|b| name.ends_with(b))
}

/// An error when `map` still holds tensors after every parameter took its own: a checkpoint
/// tensor that no parameter takes (MLP biases, a second norm, RoPE frequencies) would otherwise
/// be dropped and the model computed without it.
fn refuse_unused(map: &TensorMap, config: &ModelConfig) -> Result<(), ModelError> {
    let unused: Vec<&String> = map
        .tensors
        .keys()
        .filter(|name| !is_buffer(name, config))
        .collect();
    if unused.is_empty() {
        return Ok(());
    }
    let shown: Vec<&str> = unused.iter().take(5).map(|s| s.as_str()).collect();
    Err(ModelError::Weights {
        source_name: map.source.clone(),
        message: format!(
            "{} tensor(s) that no parameter of this {} configuration takes, e.g. `{}`: the \
             checkpoint has weights bpo would not compute with (refused)",
            unused.len(),
            config.model_type.hf_name(),
            shown.join("`, `")
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_and_join_columns_are_inverse() {
        let t = HostTensor::new(vec![2, 6], (0..12).map(|x| x as f32).collect());
        let parts = split_columns(&t, &[2, 2, 2]);
        assert_eq!(parts[1].data, vec![2.0, 3.0, 8.0, 9.0]);
        assert_eq!(join_columns(&parts), t);
        let uneven = split_columns(&t, &[4, 1, 1]);
        assert_eq!(uneven[0].data, vec![0.0, 1.0, 2.0, 3.0, 6.0, 7.0, 8.0, 9.0]);
        assert_eq!(uneven[2].data, vec![5.0, 11.0]);
        assert_eq!(join_columns(&uneven), t);
        let b = HostTensor::new(vec![6], (0..6).map(|x| x as f32).collect());
        assert_eq!(join_columns(&split_columns(&b, &[2, 2, 2])), b);
    }

    #[test]
    fn transpose_twice_is_identity() {
        let t = HostTensor::new(vec![2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(t.transposed().data, vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
        assert_eq!(t.transposed().transposed(), t);
    }
}
