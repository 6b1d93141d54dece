//! GGUF (v2 and v3) reading, with F32, F16, BF16, Q8_0, Q4_0 and Q4_1 tensors dequantised to
//! f32 ([`quant`]), the model config read from the metadata, and llama.cpp's tensor names mapped
//! to Hugging Face's through the architecture tables of [`crate::arch`].
//!
//! Our own reader: GGUF is a simple format, and a reader of ~400 lines compiles in seconds where
//! candle's costs minutes; it also lets every malformed byte become an error naming the file,
//! the key or tensor and the offset, never a panic or a huge allocation.

mod quant;
mod reader;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use crate::arch::Layout;
use crate::config::{
    LayerType, MAX_LAYERS, MODEL_TYPES, ModelConfig, ModelType, NormKind, Positions,
};
use crate::error::ModelError;
use crate::family::{AttentionBias, Window};
use crate::weights::tensor::{HostTensor, TensorMap};
pub use quant::{GgmlType, dequantize};
use reader::{DEFAULT_ALIGNMENT, MAGIC, MAX_DIMS, Reader};
pub use reader::{MetaValue, TensorInfo};

/// A parsed GGUF file: metadata, tensor table and the raw bytes.
#[derive(Debug)]
pub struct GgufFile {
    /// Where it was read from.
    pub path: PathBuf,
    /// Format version (2 or 3).
    pub version: u32,
    /// Metadata key/value pairs.
    pub metadata: BTreeMap<String, MetaValue>,
    /// Tensor table in file order.
    pub tensors: Vec<TensorInfo>,
    bytes: Vec<u8>,
    data_start: usize,
}

impl GgufFile {
    /// Reads and parses a GGUF file (metadata and tensor table; data is dequantised on demand).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, ModelError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| ModelError::io(path, e))?;
        Self::parse(path, bytes)
    }

    /// Parses GGUF bytes; `path` only names the source in errors.
    pub fn parse(path: &Path, bytes: Vec<u8>) -> Result<Self, ModelError> {
        let mut r = Reader {
            bytes: &bytes,
            pos: 0,
            path,
        };
        if r.take(4, "magic")? != MAGIC {
            return Err(r.error("not a GGUF file (bad magic)".into()));
        }
        let version = r.u32("version")?;
        if !(2..=3).contains(&version) {
            return Err(r.error(format!("unsupported version {version} (2 and 3 are)")));
        }
        let tensor_count = r.count("tensor count", 24)?;
        let kv_count = r.count("metadata count", 12)?;
        let mut metadata = BTreeMap::new();
        for _ in 0..kv_count {
            let key = r.string("metadata key")?;
            let type_id = r.u32(&format!("type of `{key}`"))?;
            let value = r.value(type_id, &key, 0)?;
            metadata.insert(key, value);
        }
        let mut tensors = Vec::with_capacity(tensor_count);
        for _ in 0..tensor_count {
            let name = r.string("tensor name")?;
            let n_dims = r.u32(&format!("rank of `{name}`"))? as usize;
            if n_dims == 0 || n_dims > MAX_DIMS {
                return Err(r.error(format!("tensor `{name}` has rank {n_dims} (1..=4 allowed)")));
            }
            let mut shape = Vec::with_capacity(n_dims);
            for _ in 0..n_dims {
                let dim = r.u64(&format!("dimension of `{name}`"))?;
                shape.push(
                    usize::try_from(dim)
                        .map_err(|_| r.error(format!("tensor `{name}` too large")))?,
                );
            }
            shape.reverse();
            let type_id = r.u32(&format!("type of `{name}`"))?;
            let offset = r.u64(&format!("offset of `{name}`"))?;
            tensors.push(TensorInfo {
                name,
                shape,
                type_id,
                offset,
            });
        }
        let alignment = metadata
            .get("general.alignment")
            .and_then(MetaValue::as_u64)
            .unwrap_or(DEFAULT_ALIGNMENT);
        if alignment == 0 || !alignment.is_power_of_two() {
            return Err(r.error(format!("invalid general.alignment {alignment}")));
        }
        let data_start = (r.pos as u64).div_ceil(alignment) * alignment;
        let file = GgufFile {
            path: path.to_path_buf(),
            version,
            metadata,
            tensors,
            data_start: data_start as usize,
            bytes,
        };
        for info in &file.tensors {
            file.tensor_bytes(info)?;
        }
        Ok(file)
    }

    fn error(&self, message: String) -> ModelError {
        ModelError::Gguf {
            path: self.path.clone(),
            message,
        }
    }

    fn tensor_bytes(&self, info: &TensorInfo) -> Result<(GgmlType, &[u8]), ModelError> {
        let ty = GgmlType::from_id(info.type_id).ok_or_else(|| {
            self.error(format!(
                "tensor `{}` has type {}, which is not supported (F32, F16, BF16, Q8_0, Q4_0, Q4_1 are)",
                info.name, info.type_id
            ))
        })?;
        let elements = info
            .shape
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
            .ok_or_else(|| self.error(format!("tensor `{}` is too large", info.name)))?;
        let size = ty.byte_size(elements).ok_or_else(|| {
            self.error(format!(
                "tensor `{}` has {elements} elements: not a whole number of {ty:?} blocks, or too many",
                info.name
            ))
        })?;
        let start = (self.data_start as u64).checked_add(info.offset);
        let end = start.and_then(|s| s.checked_add(size));
        match (start, end) {
            (Some(s), Some(e)) if e <= self.bytes.len() as u64 => Ok((ty, &self.bytes[s as usize..e as usize])),
            _ => Err(self.error(format!(
                "tensor `{}` ({size} bytes at data offset {}) runs past the end of the file ({} bytes): truncated?",
                info.name,
                info.offset,
                self.bytes.len()
            ))),
        }
    }

    /// Dequantises tensor `name` to f32.
    pub fn tensor(&self, name: &str) -> Result<HostTensor, ModelError> {
        let info = self
            .tensors
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| self.error(format!("missing tensor `{name}`")))?;
        let (ty, bytes) = self.tensor_bytes(info)?;
        Ok(HostTensor::new(info.shape.clone(), dequantize(ty, bytes)))
    }

    /// Metadata value `key`.
    pub fn meta(&self, key: &str) -> Option<&MetaValue> {
        self.metadata.get(key)
    }

    fn meta_u64(&self, key: &str) -> Result<Option<u64>, ModelError> {
        self.meta(key)
            .map(|v| {
                v.as_u64().ok_or_else(|| {
                    self.error(format!("metadata `{key}` is {v:?}, expected an integer"))
                })
            })
            .transpose()
    }

    fn meta_usize(&self, key: &str) -> Result<usize, ModelError> {
        self.meta_u64(key)?
            .map(|v| v as usize)
            .ok_or_else(|| self.error(format!("missing metadata `{key}`")))
    }

    fn meta_f64(&self, key: &str) -> Result<Option<f64>, ModelError> {
        self.meta(key)
            .map(|v| {
                v.as_f64().ok_or_else(|| {
                    self.error(format!("metadata `{key}` is {v:?}, expected a number"))
                })
            })
            .transpose()
    }

    /// The architecture named by `general.architecture`.
    pub fn model_type(&self) -> Result<ModelType, ModelError> {
        let arch = self
            .meta("general.architecture")
            .and_then(MetaValue::as_str)
            .ok_or_else(|| self.error("missing metadata `general.architecture`".into()))?;
        ModelType::from_gguf_name(arch).ok_or_else(|| {
            let mut known: Vec<&str> = MODEL_TYPES.iter().filter_map(|t| t.gguf_name()).collect();
            known.dedup();
            self.error(format!(
                "architecture `{arch}` is not supported ({} are)",
                known.join(", ")
            ))
        })
    }

    /// Metadata that asks for something bpo does not compute (as `config.json`'s refusals):
    /// RoPE scaling, a sliding window where the family has none, RoPE on part of each head,
    /// logit soft-capping.
    fn refuse_unsupported(&self, arch: &str, config: &ModelConfig) -> Result<(), ModelError> {
        let key = |k: &str| format!("{arch}.{k}");
        let refuse = |k: String, what: &str| {
            Err(self.error(format!(
                "metadata `{k}`: {what} is not supported; bpo refuses rather than compute \
                 something other than this model"
            )))
        };
        if let Some(kind) = self
            .meta(&key("rope.scaling.type"))
            .and_then(MetaValue::as_str)
            && kind != "none"
        {
            return refuse(key("rope.scaling.type"), "RoPE scaling");
        }
        if let Some(window) = self.meta_u64(&key("attention.sliding_window"))?
            && (window as usize) < config.max_position_embeddings
            && config.sliding_window.is_none()
        {
            return refuse(key("attention.sliding_window"), "sliding-window attention");
        }
        if let Some(dims) = self.meta_u64(&key("rope.dimension_count"))?
            && config.model_type.block().positions == Positions::Rope
            && dims as usize != config.head_dim
        {
            return refuse(key("rope.dimension_count"), "RoPE on part of each head");
        }
        for cap in ["final_logit_softcapping", "attn_logit_softcapping"] {
            if self.meta_f64(&key(cap))?.is_some_and(|v| v != 0.0) {
                return refuse(key(cap), "logit soft-capping");
            }
        }
        Ok(())
    }

    /// The model configuration from the `<arch>.*` and `tokenizer.ggml.*` metadata.
    pub fn config(&self) -> Result<ModelConfig, ModelError> {
        let model_type = self.model_type()?;
        let arch = self
            .meta("general.architecture")
            .and_then(MetaValue::as_str)
            .unwrap_or_default()
            .to_owned();
        let key = |k: &str| format!("{arch}.{k}");
        let hidden_size = self.meta_usize(&key("embedding_length"))?;
        let num_heads = self.meta_usize(&key("attention.head_count"))?;
        let vocab_size = match self.meta("tokenizer.ggml.tokens") {
            Some(MetaValue::Array(tokens)) => tokens.len(),
            _ => self.meta_usize(&key("vocab_size"))?,
        };
        let has = |name: &str| self.tensors.iter().any(|t| t.name == name);
        let spec = model_type.block();
        let head_dim = match self.meta_u64(&key("attention.key_length"))? {
            Some(v) => v as usize,
            None => hidden_size / num_heads.max(1),
        };
        let eps_key = match spec.norm {
            NormKind::Layer => "attention.layer_norm_epsilon",
            NormKind::Rms | NormKind::RmsUnitOffset => "attention.layer_norm_rms_epsilon",
        };
        // The q/k/v biases are there when the tensor holding the query's is (always for a
        // family that has them whatever its config says).
        let q_bias = match model_type.family().attention_bias {
            AttentionBias::Ignored => spec.qkv_bias,
            _ => model_type
                .arch()
                .block
                .iter()
                .find(|e| e.ours.contains(&"attn.q.bias"))
                .is_some_and(|e| has(&format!("blk.0.{}", e.gguf))),
        };
        let num_layers = self.meta_usize(&key("block_count"))?;
        if num_layers > MAX_LAYERS {
            return Err(self.error(format!(
                "{} = {num_layers} is larger than {MAX_LAYERS}: not a model bpo can hold",
                key("block_count")
            )));
        }
        // llama.cpp gives a window to every layer of the families that have one (Phi-3), and
        // to all but every `sliding_window_pattern`-th (6 unless stated) in Gemma 3.
        let pattern = match model_type.family().window {
            Window::Pattern => self
                .meta_u64(&key("attention.sliding_window_pattern"))?
                .map_or(6, |p| p as usize),
            _ => 1,
        };
        let layer_types = model_type.default_layer_types(num_layers, pattern);
        let windowed = layer_types.contains(&LayerType::Sliding);
        let sliding_window = match windowed {
            true => self
                .meta_u64(&key("attention.sliding_window"))?
                .map(|w| w as usize),
            false => None,
        };
        let defaults = model_type.family().defaults;
        // llama.cpp scales Gemma 3's scores by 1/sqrt(key_length), except in the 62-layer
        // model (27B), where it takes hidden / heads.
        let query_pre_attn_scalar = defaults.query_pre_attn_scalar.map(|_| match num_layers {
            62 => (hidden_size / num_heads.max(1)) as f64,
            _ => head_dim as f64,
        });
        let rope_local_theta = match defaults.rope_local_theta {
            Some(default) => Some(
                self.meta_f64(&key("rope.freq_base_swa"))?
                    .unwrap_or(default),
            ),
            None => None,
        };
        let config = ModelConfig {
            model_type,
            vocab_size,
            hidden_size,
            intermediate_size: self.meta_usize(&key("feed_forward_length"))?,
            num_layers,
            num_heads,
            num_kv_heads: self
                .meta_u64(&key("attention.head_count_kv"))?
                .map_or(num_heads, |v| v as usize),
            head_dim,
            max_position_embeddings: self.meta_usize(&key("context_length"))?,
            rope_theta: match spec.positions {
                Positions::Learned => 0.0,
                Positions::Rope => self
                    .meta_f64(&key("rope.freq_base"))?
                    .unwrap_or(defaults.rope_theta),
            },
            norm_eps: self.meta_f64(&key(eps_key))?.unwrap_or(1e-5),
            tie_word_embeddings: !has("output.weight"),
            attention_bias: q_bias,
            bos_token_id: self
                .meta_u64("tokenizer.ggml.bos_token_id")?
                .map(|v| v as u32),
            eos_token_id: self
                .meta_u64("tokenizer.ggml.eos_token_id")?
                .map(|v| v as u32),
            layer_types: if sliding_window.is_some() {
                layer_types
            } else {
                Vec::new()
            },
            sliding_window,
            rope_local_theta,
            query_pre_attn_scalar,
        };
        if has("rope_freqs.weight") {
            return Err(self.error("scaled RoPE (`rope_freqs.weight`) is not supported yet".into()));
        }
        self.refuse_unsupported(&arch, &config)?;
        config.validate()?;
        Ok(config)
    }

    /// All weights dequantised and renamed to Hugging Face naming and layout (the q/k rows that
    /// llama.cpp permutes for its interleaved RoPE are put back in `rotate_half` order, the
    /// offset llama.cpp adds to a family's norms taken off).
    /// A tensor the architecture's table does not name (e.g. MLP biases) is an error: bpo would
    /// compute without it.
    pub fn tensor_map(&self, config: &ModelConfig) -> Result<TensorMap, ModelError> {
        let named: HashMap<String, _> = config
            .model_type
            .arch()
            .named(config.num_layers)
            .into_iter()
            .map(|n| (n.gguf.clone(), n))
            .collect();
        let mut map = TensorMap::new(self.path.display().to_string());
        for info in &self.tensors {
            let Some(n) = named.get(&info.name) else {
                return Err(self.error(format!(
                    "tensor `{}` is not a weight of a {} model bpo computes (refused rather \
                     than computed without it)",
                    info.name,
                    config.model_type.hf_name()
                )));
            };
            let mut t = self.tensor(&info.name)?;
            if let Some(query) = n.entry.gguf_rows_per_head {
                let heads = if query {
                    config.num_heads
                } else {
                    config.num_kv_heads
                };
                t = unpermute_rows(&t, heads);
            }
            if n.entry.gguf_layout == Layout::Transposed && t.shape.len() == 2 {
                t = t.transposed();
            }
            // llama.cpp stores Gemma's `(1 + w)` norms with the 1 added.
            let offset = config.model_type.family().gguf_norm_offset;
            if offset != 0.0 && info.name.ends_with("norm.weight") {
                t.data.iter_mut().for_each(|w| *w -= offset);
            }
            map.insert(n.hf.clone(), t);
        }
        Ok(map)
    }
}

/// Undoes llama.cpp's q/k row permutation: within each head, GGUF row `2i + j` holds Hugging
/// Face row `j * head_dim / 2 + i`.
fn unpermute_rows(t: &HostTensor, heads: usize) -> HostTensor {
    let rows = t.shape[0];
    let cols = t.data.len() / rows.max(1);
    let head_dim = rows / heads.max(1);
    let half = head_dim / 2;
    let mut out = vec![0.0; t.data.len()];
    for h in 0..heads {
        for i in 0..half {
            for j in 0..2 {
                let src = h * head_dim + 2 * i + j;
                let dst = h * head_dim + j * half + i;
                out[dst * cols..(dst + 1) * cols]
                    .copy_from_slice(&t.data[src * cols..(src + 1) * cols]);
            }
        }
    }
    HostTensor::new(t.shape.clone(), out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpermute_inverts_llama_cpp_permutation() {
        // llama.cpp: w.reshape(heads, 2, hd/2, in).swapaxes(1, 2).reshape(out, in)
        let (heads, head_dim, cols) = (2, 4, 1);
        let hf: Vec<f32> = (0..heads * head_dim).map(|x| x as f32).collect();
        let mut permuted = vec![0.0; hf.len()];
        for h in 0..heads {
            for j in 0..2 {
                for i in 0..head_dim / 2 {
                    permuted[h * head_dim + 2 * i + j] = hf[h * head_dim + j * head_dim / 2 + i];
                }
            }
        }
        let t = HostTensor::new(vec![heads * head_dim, cols], permuted);
        assert_eq!(unpermute_rows(&t, heads).data, hf);
    }

    #[test]
    fn gguf_names_map_to_hf_names() {
        let hf = |t: ModelType, gguf: &str| {
            t.arch()
                .named(4)
                .into_iter()
                .find(|n| n.gguf == gguf)
                .map(|n| (n.hf, n.entry.gguf_layout == Layout::Transposed))
        };
        assert_eq!(
            hf(ModelType::LLAMA, "blk.3.attn_q.weight"),
            Some(("model.layers.3.self_attn.q_proj.weight".into(), false))
        );
        assert_eq!(
            hf(ModelType::GPT2, "blk.0.attn_qkv.weight"),
            Some(("transformer.h.0.attn.c_attn.weight".into(), true))
        );
        assert_eq!(
            hf(ModelType::GPT2, "blk.0.attn_qkv.bias").map(|n| n.0),
            Some("transformer.h.0.attn.c_attn.bias".into())
        );
        assert_eq!(
            hf(ModelType::LLAMA, "output.weight"),
            Some(("lm_head.weight".into(), false))
        );
    }
}
