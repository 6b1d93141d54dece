//! Weights in and out: named f32 host tensors in Hugging Face naming, the mapping between them
//! and a [`Transformer`], and the file formats (GGUF, safetensors, HF directories).

pub mod gguf;
pub mod hf_dir;
pub mod safetensors;

use std::collections::BTreeMap;

use burn::module::{Module, Param};
use burn::nn::{Embedding, Linear};
use burn::tensor::{Device, Tensor, TensorData};

use crate::attention::Attention;
use crate::config::ModelConfig;
use crate::error::ModelError;
use crate::host::to_f32_vec;
use crate::mlp::FeedForward;
use crate::norm::Norm;
use crate::transformer::{Block, Transformer};

/// A dense f32 tensor in host memory, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    /// Dimensions, outermost first (PyTorch order).
    pub shape: Vec<usize>,
    /// `shape.iter().product()` values.
    pub data: Vec<f32>,
}

impl HostTensor {
    /// Wraps `data`; the length must match the shape.
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Self {
        assert_eq!(shape.iter().product::<usize>(), data.len());
        HostTensor { shape, data }
    }

    /// The transpose of a matrix (panics on other ranks).
    pub fn transposed(&self) -> HostTensor {
        assert_eq!(self.shape.len(), 2, "transposed() needs a matrix");
        let (rows, cols) = (self.shape[0], self.shape[1]);
        let mut out = vec![0.0; self.data.len()];
        for r in 0..rows {
            for c in 0..cols {
                out[c * rows + r] = self.data[r * cols + c];
            }
        }
        HostTensor::new(vec![cols, rows], out)
    }

    fn from_tensor<const D: usize>(tensor: Tensor<D>) -> HostTensor {
        let shape = tensor.dims().to_vec();
        HostTensor::new(shape, to_f32_vec(tensor))
    }

    fn to_tensor<const D: usize>(&self, device: &Device) -> Tensor<D> {
        Tensor::from_data(
            TensorData::new(self.data.clone(), self.shape.clone()),
            device,
        )
    }
}

/// Named tensors in Hugging Face naming, with the name of the file or directory they came from
/// (for error messages).
#[derive(Debug, Clone, Default)]
pub struct TensorMap {
    /// Where the tensors were read from.
    pub source: String,
    /// The tensors by name.
    pub tensors: BTreeMap<String, HostTensor>,
}

impl TensorMap {
    /// An empty map whose errors name `source`.
    pub fn new(source: impl Into<String>) -> Self {
        TensorMap {
            source: source.into(),
            tensors: BTreeMap::new(),
        }
    }

    /// Adds a tensor.
    pub fn insert(&mut self, name: impl Into<String>, tensor: HostTensor) {
        self.tensors.insert(name.into(), tensor);
    }

    fn error(&self, message: String) -> ModelError {
        ModelError::Weights {
            source_name: self.source.clone(),
            message,
        }
    }

    /// Removes and returns tensor `name`, checking its shape.
    pub fn take(&mut self, name: &str, shape: &[usize]) -> Result<HostTensor, ModelError> {
        let tensor = self
            .tensors
            .remove(name)
            .ok_or_else(|| self.error(format!("missing tensor `{name}`")))?;
        if tensor.shape != shape {
            return Err(self.error(format!(
                "tensor `{name}` has shape {:?}, expected {shape:?}",
                tensor.shape
            )));
        }
        Ok(tensor)
    }
}

/// How a projection is stored in Hugging Face checkpoints.
#[derive(Clone, Copy)]
enum Layout {
    /// `nn.Linear`: weight `[out, in]` (Llama family).
    OutIn,
    /// GPT-2 `Conv1D`: weight `[in, out]`, already Burn's layout.
    InOut,
}

struct Names {
    prefix: String,
}

impl Names {
    fn for_config(config: &ModelConfig) -> Self {
        let prefix = if config.model_type.is_gpt2() {
            "transformer."
        } else {
            "model."
        };
        Names {
            prefix: prefix.into(),
        }
    }
    fn top(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }
    fn layer(&self, i: usize, name: &str) -> String {
        let blocks = if self.prefix == "model." {
            "layers"
        } else {
            "h"
        };
        format!("{}{blocks}.{i}.{name}", self.prefix)
    }
}

fn take_linear(
    map: &mut TensorMap,
    name: &str,
    layout: Layout,
    d_in: usize,
    d_out: usize,
    bias: bool,
    device: &Device,
) -> Result<Linear, ModelError> {
    let weight = match layout {
        Layout::OutIn => map
            .take(&format!("{name}.weight"), &[d_out, d_in])?
            .transposed(),
        Layout::InOut => map.take(&format!("{name}.weight"), &[d_in, d_out])?,
    };
    let bias = if bias {
        Some(map.take(&format!("{name}.bias"), &[d_out])?)
    } else {
        None
    };
    Ok(linear_from(&weight, bias.as_ref(), device))
}

fn linear_from(weight: &HostTensor, bias: Option<&HostTensor>, device: &Device) -> Linear {
    Linear {
        weight: Param::from_tensor(weight.to_tensor(device)),
        bias: bias.map(|b| Param::from_tensor(b.to_tensor(device))),
    }
}

fn take_norm(
    map: &mut TensorMap,
    name: &str,
    dim: usize,
    layer_norm: bool,
    eps: f64,
    device: &Device,
) -> Result<Norm, ModelError> {
    let weight = map.take(&format!("{name}.weight"), &[dim])?;
    let bias = if layer_norm {
        Some(map.take(&format!("{name}.bias"), &[dim])?)
    } else {
        None
    };
    Ok(Norm {
        weight: Param::from_tensor(weight.to_tensor(device)),
        bias: bias.map(|b| Param::from_tensor(b.to_tensor(device))),
        eps,
    })
}

fn embedding_from(t: &HostTensor, device: &Device) -> Embedding {
    Embedding {
        weight: Param::from_tensor(t.to_tensor(device)),
    }
}

/// Splits GPT-2's fused `c_attn` (`[d, 3d]` weight, `[3d]` bias) into q, k and v.
fn split_columns(t: &HostTensor, parts: usize) -> Vec<HostTensor> {
    let (rows, cols) = if t.shape.len() == 2 {
        (t.shape[0], t.shape[1])
    } else {
        (1, t.shape[0])
    };
    let width = cols / parts;
    (0..parts)
        .map(|p| {
            let mut data = Vec::with_capacity(rows * width);
            for r in 0..rows {
                data.extend_from_slice(&t.data[r * cols + p * width..r * cols + (p + 1) * width]);
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

fn join_columns(parts: &[HostTensor]) -> HostTensor {
    let rows = if parts[0].shape.len() == 2 {
        parts[0].shape[0]
    } else {
        1
    };
    let width = *parts[0].shape.last().expect("non-scalar");
    let mut data = Vec::with_capacity(rows * width * parts.len());
    for r in 0..rows {
        for p in parts {
            data.extend_from_slice(&p.data[r * width..(r + 1) * width]);
        }
    }
    let shape = if parts[0].shape.len() == 2 {
        vec![rows, width * parts.len()]
    } else {
        vec![width * parts.len()]
    };
    HostTensor::new(shape, data)
}

impl Transformer {
    /// Builds a model from tensors in Hugging Face naming (`model.layers.N.self_attn.q_proj`
    /// for the Llama family, `transformer.h.N.attn.c_attn` for GPT-2; the `transformer.` prefix
    /// is optional). Every expected tensor must be present with the right shape.
    pub fn from_tensor_map(
        config: &ModelConfig,
        mut map: TensorMap,
        device: &Device,
    ) -> Result<Self, ModelError> {
        config.validate()?;
        let gpt2 = config.model_type.is_gpt2();
        if gpt2 {
            // Accept checkpoints saved from GPT2Model (no `transformer.` prefix).
            let bare: Vec<String> = map
                .tensors
                .keys()
                .filter(|k| !k.starts_with("transformer.") && !k.starts_with("lm_head."))
                .cloned()
                .collect();
            for key in bare {
                let t = map.tensors.remove(&key).expect("key listed above");
                map.tensors.insert(format!("transformer.{key}"), t);
            }
        }
        let names = Names::for_config(config);
        let d = config.hidden_size;
        let (q_out, kv_out) = (
            config.num_heads * config.head_dim,
            config.num_kv_heads * config.head_dim,
        );
        let ffn = config.intermediate_size;
        let embed_name = names.top(if gpt2 {
            "wte.weight"
        } else {
            "embed_tokens.weight"
        });
        let embed = map.take(&embed_name, &[config.vocab_size, d])?;
        let embed_positions = if gpt2 {
            let t = map.take(
                &names.top("wpe.weight"),
                &[config.max_position_embeddings, d],
            )?;
            Some(embedding_from(&t, device))
        } else {
            None
        };
        let mut layers = Vec::with_capacity(config.num_layers);
        for i in 0..config.num_layers {
            let l = |name: &str| names.layer(i, name);
            let block = if gpt2 {
                let w = map.take(&l("attn.c_attn.weight"), &[d, 3 * d])?;
                let b = map.take(&l("attn.c_attn.bias"), &[3 * d])?;
                let (w, b) = (split_columns(&w, 3), split_columns(&b, 3));
                Block {
                    attn_norm: take_norm(&mut map, &l("ln_1"), d, true, config.norm_eps, device)?,
                    attn: Attention {
                        q: linear_from(&w[0], Some(&b[0]), device),
                        k: linear_from(&w[1], Some(&b[1]), device),
                        v: linear_from(&w[2], Some(&b[2]), device),
                        o: take_linear(
                            &mut map,
                            &l("attn.c_proj"),
                            Layout::InOut,
                            d,
                            d,
                            true,
                            device,
                        )?,
                        num_heads: config.num_heads,
                        num_kv_heads: config.num_kv_heads,
                        head_dim: config.head_dim,
                    },
                    mlp_norm: take_norm(&mut map, &l("ln_2"), d, true, config.norm_eps, device)?,
                    mlp: FeedForward {
                        gate: None,
                        up: take_linear(
                            &mut map,
                            &l("mlp.c_fc"),
                            Layout::InOut,
                            d,
                            ffn,
                            true,
                            device,
                        )?,
                        down: take_linear(
                            &mut map,
                            &l("mlp.c_proj"),
                            Layout::InOut,
                            ffn,
                            d,
                            true,
                            device,
                        )?,
                    },
                }
            } else {
                let bias = config.attention_bias;
                let proj = |map: &mut TensorMap, name: &str, d_in, d_out, bias| {
                    take_linear(map, &l(name), Layout::OutIn, d_in, d_out, bias, device)
                };
                Block {
                    attn_norm: take_norm(
                        &mut map,
                        &l("input_layernorm"),
                        d,
                        false,
                        config.norm_eps,
                        device,
                    )?,
                    attn: Attention {
                        q: proj(&mut map, "self_attn.q_proj", d, q_out, bias)?,
                        k: proj(&mut map, "self_attn.k_proj", d, kv_out, bias)?,
                        v: proj(&mut map, "self_attn.v_proj", d, kv_out, bias)?,
                        o: proj(&mut map, "self_attn.o_proj", q_out, d, false)?,
                        num_heads: config.num_heads,
                        num_kv_heads: config.num_kv_heads,
                        head_dim: config.head_dim,
                    },
                    mlp_norm: take_norm(
                        &mut map,
                        &l("post_attention_layernorm"),
                        d,
                        false,
                        config.norm_eps,
                        device,
                    )?,
                    mlp: FeedForward {
                        gate: Some(proj(&mut map, "mlp.gate_proj", d, ffn, false)?),
                        up: proj(&mut map, "mlp.up_proj", d, ffn, false)?,
                        down: proj(&mut map, "mlp.down_proj", ffn, d, false)?,
                    },
                }
            };
            layers.push(block);
        }
        let norm_name = names.top(if gpt2 { "ln_f" } else { "norm" });
        let norm = take_norm(&mut map, &norm_name, d, gpt2, config.norm_eps, device)?;
        let lm_head = if config.tie_word_embeddings {
            map.tensors.remove("lm_head.weight");
            None
        } else {
            Some(take_linear(
                &mut map,
                "lm_head",
                Layout::OutIn,
                d,
                config.vocab_size,
                false,
                device,
            )?)
        };
        Ok(Transformer {
            embed_tokens: embedding_from(&embed, device),
            embed_positions,
            layers,
            norm,
            lm_head,
            rope: Transformer::rope_for(config, device),
            config: config.clone(),
        })
    }

    /// All weights in Hugging Face naming and layout, as `transformers` expects them
    /// (LoRA adapters, if any, merged). The inverse of [`Transformer::from_tensor_map`].
    pub fn to_tensor_map(&self) -> TensorMap {
        let model = self.valid().materialize();
        let config = &model.config;
        let gpt2 = config.model_type.is_gpt2();
        let names = Names::for_config(config);
        let mut map = TensorMap::new("model");
        let param = |p: &Param<Tensor<1>>| HostTensor::from_tensor(p.val());
        let matrix = |p: &Param<Tensor<2>>| HostTensor::from_tensor(p.val());
        let put_linear = |map: &mut TensorMap, name: String, linear: &Linear, layout: Layout| {
            let w = matrix(&linear.weight);
            let w = match layout {
                Layout::OutIn => w.transposed(),
                Layout::InOut => w,
            };
            map.insert(format!("{name}.weight"), w);
            if let Some(b) = &linear.bias {
                map.insert(format!("{name}.bias"), param(b));
            }
        };
        let put_norm = |map: &mut TensorMap, name: String, norm: &Norm| {
            map.insert(format!("{name}.weight"), param(&norm.weight));
            if let Some(b) = &norm.bias {
                map.insert(format!("{name}.bias"), param(b));
            }
        };
        let embed = matrix(&model.embed_tokens.weight);
        if gpt2 {
            map.insert(names.top("wte.weight"), embed);
            if let Some(pos) = &model.embed_positions {
                map.insert(names.top("wpe.weight"), matrix(&pos.weight));
            }
        } else {
            map.insert(names.top("embed_tokens.weight"), embed);
        }
        for (i, block) in model.layers.iter().enumerate() {
            let l = |name: &str| names.layer(i, name);
            let attn = &block.attn;
            if gpt2 {
                put_norm(&mut map, l("ln_1"), &block.attn_norm);
                let ws: Vec<HostTensor> = [&attn.q, &attn.k, &attn.v]
                    .iter()
                    .map(|p| matrix(&p.weight))
                    .collect();
                let bs: Vec<HostTensor> = [&attn.q, &attn.k, &attn.v]
                    .iter()
                    .map(|p| param(p.bias.as_ref().expect("GPT-2 q/k/v have biases")))
                    .collect();
                map.insert(l("attn.c_attn.weight"), join_columns(&ws));
                map.insert(l("attn.c_attn.bias"), join_columns(&bs));
                put_linear(&mut map, l("attn.c_proj"), &attn.o, Layout::InOut);
                put_norm(&mut map, l("ln_2"), &block.mlp_norm);
                put_linear(&mut map, l("mlp.c_fc"), &block.mlp.up, Layout::InOut);
                put_linear(&mut map, l("mlp.c_proj"), &block.mlp.down, Layout::InOut);
            } else {
                put_norm(&mut map, l("input_layernorm"), &block.attn_norm);
                put_linear(&mut map, l("self_attn.q_proj"), &attn.q, Layout::OutIn);
                put_linear(&mut map, l("self_attn.k_proj"), &attn.k, Layout::OutIn);
                put_linear(&mut map, l("self_attn.v_proj"), &attn.v, Layout::OutIn);
                put_linear(&mut map, l("self_attn.o_proj"), &attn.o, Layout::OutIn);
                put_norm(&mut map, l("post_attention_layernorm"), &block.mlp_norm);
                if let Some(gate) = &block.mlp.gate {
                    put_linear(&mut map, l("mlp.gate_proj"), gate, Layout::OutIn);
                }
                put_linear(&mut map, l("mlp.up_proj"), &block.mlp.up, Layout::OutIn);
                put_linear(&mut map, l("mlp.down_proj"), &block.mlp.down, Layout::OutIn);
            }
        }
        put_norm(
            &mut map,
            names.top(if gpt2 { "ln_f" } else { "norm" }),
            &model.norm,
        );
        if let Some(head) = &model.lm_head {
            put_linear(&mut map, "lm_head".into(), head, Layout::OutIn);
        }
        map
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_and_join_columns_are_inverse() {
        let t = HostTensor::new(vec![2, 6], (0..12).map(|x| x as f32).collect());
        let parts = split_columns(&t, 3);
        assert_eq!(parts[1].data, vec![2.0, 3.0, 8.0, 9.0]);
        assert_eq!(join_columns(&parts), t);
        let b = HostTensor::new(vec![6], (0..6).map(|x| x as f32).collect());
        assert_eq!(join_columns(&split_columns(&b, 3)), b);
    }

    #[test]
    fn transpose_twice_is_identity() {
        let t = HostTensor::new(vec![2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(t.transposed().data, vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
        assert_eq!(t.transposed().transposed(), t);
    }
}
