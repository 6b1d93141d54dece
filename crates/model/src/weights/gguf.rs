//! GGUF (v2 and v3) reading, with F32, F16, BF16, Q8_0, Q4_0 and Q4_1 tensors dequantised to
//! f32, the model config read from the metadata, and a small writer (tests, tools).
//!
//! Our own reader: GGUF is a simple format, and a reader of ~400 lines compiles in seconds where
//! candle's costs minutes; it also lets every malformed byte become an error naming the file,
//! the key or tensor and the offset, never a panic or a huge allocation.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use half::{bf16, f16};

use crate::config::{ModelConfig, ModelType};
use crate::error::ModelError;
use crate::weights::{HostTensor, TensorMap};

const MAGIC: &[u8; 4] = b"GGUF";
const DEFAULT_ALIGNMENT: u64 = 32;
const MAX_DIMS: usize = 4;

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum MetaValue {
    /// Any unsigned integer type.
    U64(u64),
    /// Any signed integer type.
    I64(i64),
    /// `f32` or `f64`.
    F64(f64),
    /// A boolean.
    Bool(bool),
    /// A UTF-8 string.
    String(String),
    /// An array of values of one type.
    Array(Vec<MetaValue>),
}

impl MetaValue {
    /// The value as an unsigned integer, when it is a non-negative integer.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            MetaValue::U64(v) => Some(v),
            MetaValue::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as a float, when it is a number.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            MetaValue::F64(v) => Some(v),
            MetaValue::U64(v) => Some(v as f64),
            MetaValue::I64(v) => Some(v as f64),
            _ => None,
        }
    }

    /// The value as a string slice.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            MetaValue::String(s) => Some(s),
            _ => None,
        }
    }
}

/// The tensor element types this reader dequantises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgmlType {
    /// 32-bit float.
    F32,
    /// IEEE half.
    F16,
    /// bfloat16.
    Bf16,
    /// Blocks of 32: f16 scale, 32 signed bytes.
    Q8_0,
    /// Blocks of 32: f16 scale, 16 bytes of 4-bit codes offset by 8.
    Q4_0,
    /// Blocks of 32: f16 scale and minimum, 16 bytes of 4-bit codes.
    Q4_1,
}

impl GgmlType {
    /// The type's id in the GGUF tensor table.
    pub fn id(self) -> u32 {
        match self {
            GgmlType::F32 => 0,
            GgmlType::F16 => 1,
            GgmlType::Q4_0 => 2,
            GgmlType::Q4_1 => 3,
            GgmlType::Q8_0 => 8,
            GgmlType::Bf16 => 30,
        }
    }

    fn from_id(id: u32) -> Option<Self> {
        [
            GgmlType::F32,
            GgmlType::F16,
            GgmlType::Q4_0,
            GgmlType::Q4_1,
            GgmlType::Q8_0,
            GgmlType::Bf16,
        ]
        .into_iter()
        .find(|t| t.id() == id)
    }

    /// (elements per block, bytes per block).
    fn block(self) -> (u64, u64) {
        match self {
            GgmlType::F32 => (1, 4),
            GgmlType::F16 | GgmlType::Bf16 => (1, 2),
            GgmlType::Q8_0 => (32, 34),
            GgmlType::Q4_0 => (32, 18),
            GgmlType::Q4_1 => (32, 20),
        }
    }

    /// Bytes taken by `elements` values, or `None` when not a whole number of blocks.
    pub fn byte_size(self, elements: u64) -> Option<u64> {
        let (per_block, bytes) = self.block();
        if !elements.is_multiple_of(per_block) {
            return None;
        }
        (elements / per_block).checked_mul(bytes)
    }
}

/// One entry of the tensor table.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    /// Tensor name (llama.cpp naming, e.g. `blk.0.attn_q.weight`).
    pub name: String,
    /// Dimensions in PyTorch order (outermost first; GGUF stores them innermost first).
    pub shape: Vec<usize>,
    /// Element type id as stored (may be one this reader does not dequantise).
    pub type_id: u32,
    /// Offset of the data from the start of the data section.
    pub offset: u64,
}

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

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Reader<'a> {
    fn error(&self, message: String) -> ModelError {
        ModelError::Gguf {
            path: self.path.to_path_buf(),
            message,
        }
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], ModelError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        match end {
            Some(end) => {
                let slice = &self.bytes[self.pos..end];
                self.pos = end;
                Ok(slice)
            }
            None => Err(self.error(format!(
                "truncated file: {what} needs {n} bytes at offset {}, file has {}",
                self.pos,
                self.bytes.len()
            ))),
        }
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], ModelError> {
        Ok(self.take(N, what)?.try_into().expect("length checked"))
    }

    fn u32(&mut self, what: &str) -> Result<u32, ModelError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64, ModelError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A count that cannot exceed what the remaining bytes could hold at `min_size` each.
    fn count(&mut self, what: &str, min_size: usize) -> Result<usize, ModelError> {
        let n = self.u64(what)?;
        let remaining = (self.bytes.len() - self.pos) as u64;
        if n.saturating_mul(min_size as u64) > remaining {
            return Err(self.error(format!(
                "{what} is {n}, more than the {remaining} remaining bytes can hold"
            )));
        }
        Ok(n as usize)
    }

    fn string(&mut self, what: &str) -> Result<String, ModelError> {
        let len = self.count(what, 1)?;
        let at = self.pos;
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| self.error(format!("{what} at offset {at} is not valid UTF-8")))
    }

    fn value(&mut self, type_id: u32, key: &str, depth: usize) -> Result<MetaValue, ModelError> {
        let what = format!("value of `{key}`");
        Ok(match type_id {
            0 => MetaValue::U64(self.array::<1>(&what)?[0] as u64),
            1 => MetaValue::I64(i8::from_le_bytes(self.array(&what)?) as i64),
            2 => MetaValue::U64(u16::from_le_bytes(self.array(&what)?) as u64),
            3 => MetaValue::I64(i16::from_le_bytes(self.array(&what)?) as i64),
            4 => MetaValue::U64(u32::from_le_bytes(self.array(&what)?) as u64),
            5 => MetaValue::I64(i32::from_le_bytes(self.array(&what)?) as i64),
            6 => MetaValue::F64(f32_to_f64_shortest(f32::from_le_bytes(self.array(&what)?))),
            7 => match self.array::<1>(&what)?[0] {
                0 => MetaValue::Bool(false),
                1 => MetaValue::Bool(true),
                b => return Err(self.error(format!("{what}: invalid bool byte {b}"))),
            },
            8 => MetaValue::String(self.string(&what)?),
            9 => {
                if depth > 2 {
                    return Err(self.error(format!("{what}: arrays nested too deeply")));
                }
                let item_type = self.u32(&what)?;
                let n = self.count(&format!("length of array `{key}`"), 1)?;
                let mut items = Vec::with_capacity(n.min(1 << 20));
                for _ in 0..n {
                    items.push(self.value(item_type, key, depth + 1)?);
                }
                MetaValue::Array(items)
            }
            10 => MetaValue::U64(self.u64(&what)?),
            11 => MetaValue::I64(i64::from_le_bytes(self.array(&what)?)),
            12 => MetaValue::F64(f64::from_le_bytes(self.array(&what)?)),
            other => return Err(self.error(format!("{what}: unknown value type {other}"))),
        })
    }
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
        ModelType::from_hf_name(arch).ok_or_else(|| {
            self.error(format!(
                "architecture `{arch}` is not supported (llama, qwen2, gpt2 are)"
            ))
        })
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
        let gpt2 = model_type.is_gpt2();
        let head_dim = match self.meta_u64(&key("attention.key_length"))? {
            Some(v) => v as usize,
            None => hidden_size / num_heads.max(1),
        };
        let eps_key = if gpt2 {
            "attention.layer_norm_epsilon"
        } else {
            "attention.layer_norm_rms_epsilon"
        };
        let config = ModelConfig {
            model_type,
            vocab_size,
            hidden_size,
            intermediate_size: self.meta_usize(&key("feed_forward_length"))?,
            num_layers: self.meta_usize(&key("block_count"))?,
            num_heads,
            num_kv_heads: self
                .meta_u64(&key("attention.head_count_kv"))?
                .map_or(num_heads, |v| v as usize),
            head_dim,
            max_position_embeddings: self.meta_usize(&key("context_length"))?,
            rope_theta: if gpt2 {
                0.0
            } else {
                self.meta_f64(&key("rope.freq_base"))?.unwrap_or(10000.0)
            },
            norm_eps: self.meta_f64(&key(eps_key))?.unwrap_or(1e-5),
            tie_word_embeddings: !has("output.weight"),
            attention_bias: gpt2 || has("blk.0.attn_q.bias"),
            bos_token_id: self
                .meta_u64("tokenizer.ggml.bos_token_id")?
                .map(|v| v as u32),
            eos_token_id: self
                .meta_u64("tokenizer.ggml.eos_token_id")?
                .map(|v| v as u32),
        };
        if has("rope_freqs.weight") {
            return Err(self.error("scaled RoPE (`rope_freqs.weight`) is not supported yet".into()));
        }
        config.validate()?;
        Ok(config)
    }

    /// All weights dequantised and renamed to Hugging Face naming and layout (the q/k rows that
    /// llama.cpp permutes for its interleaved RoPE are put back in `rotate_half` order).
    pub fn tensor_map(&self, config: &ModelConfig) -> Result<TensorMap, ModelError> {
        let mut map = TensorMap::new(self.path.display().to_string());
        for info in &self.tensors {
            let Some((hf_name, transpose)) = hf_name(&info.name, config.model_type) else {
                continue;
            };
            let mut t = self.tensor(&info.name)?;
            if config.model_type == ModelType::Llama {
                if info.name.contains(".attn_q.") {
                    t = unpermute_rows(&t, config.num_heads);
                } else if info.name.contains(".attn_k.") {
                    t = unpermute_rows(&t, config.num_kv_heads);
                }
            }
            if transpose && t.shape.len() == 2 {
                t = t.transposed();
            }
            map.insert(hf_name, t);
        }
        Ok(map)
    }
}

/// Maps a llama.cpp tensor name to its Hugging Face name, and whether the matrix must be
/// transposed (GPT-2's Conv1D weights are stored `[in, out]` by Hugging Face).
fn hf_name(name: &str, model_type: ModelType) -> Option<(String, bool)> {
    let gpt2 = model_type.is_gpt2();
    let (stem, suffix) = name.rsplit_once('.')?;
    let top = |s: &str| {
        let prefix = if gpt2 { "transformer." } else { "model." };
        Some((format!("{prefix}{s}.{suffix}"), false))
    };
    match stem {
        "token_embd" => return top(if gpt2 { "wte" } else { "embed_tokens" }),
        "position_embd" if gpt2 => return top("wpe"),
        "output_norm" => return top(if gpt2 { "ln_f" } else { "norm" }),
        "output" => return Some((format!("lm_head.{suffix}"), false)),
        _ => {}
    }
    let rest = stem.strip_prefix("blk.")?;
    let (layer, part) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (hf, transpose) = if gpt2 {
        match part {
            "attn_norm" => ("ln_1", false),
            "attn_qkv" => ("attn.c_attn", true),
            "attn_output" => ("attn.c_proj", true),
            "ffn_norm" => ("ln_2", false),
            "ffn_up" => ("mlp.c_fc", true),
            "ffn_down" => ("mlp.c_proj", true),
            _ => return None,
        }
    } else {
        match part {
            "attn_norm" => ("input_layernorm", false),
            "attn_q" => ("self_attn.q_proj", false),
            "attn_k" => ("self_attn.k_proj", false),
            "attn_v" => ("self_attn.v_proj", false),
            "attn_output" => ("self_attn.o_proj", false),
            "ffn_norm" => ("post_attention_layernorm", false),
            "ffn_gate" => ("mlp.gate_proj", false),
            "ffn_up" => ("mlp.up_proj", false),
            "ffn_down" => ("mlp.down_proj", false),
            _ => return None,
        }
    };
    let blocks = if gpt2 {
        "transformer.h"
    } else {
        "model.layers"
    };
    Some((format!("{blocks}.{layer}.{hf}.{suffix}"), transpose))
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

/// Widens an f32 to the f64 with the same shortest decimal form (1e-5f32 becomes 1e-5, not
/// 9.99999974e-6), so configs read from GGUF match those written by Hugging Face.
fn f32_to_f64_shortest(v: f32) -> f64 {
    v.to_string().parse().unwrap_or(v as f64)
}

fn f16_at(bytes: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([bytes[at], bytes[at + 1]]).to_f32()
}

/// Dequantises raw tensor bytes of type `ty` (whole blocks) to f32.
pub fn dequantize(ty: GgmlType, bytes: &[u8]) -> Vec<f32> {
    match ty {
        GgmlType::F32 => bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        GgmlType::F16 => bytes.chunks_exact(2).map(|c| f16_at(c, 0)).collect(),
        GgmlType::Bf16 => bytes
            .chunks_exact(2)
            .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        GgmlType::Q8_0 => bytes
            .chunks_exact(34)
            .flat_map(|block| {
                let d = f16_at(block, 0);
                block[2..].iter().map(move |&q| q as i8 as f32 * d)
            })
            .collect(),
        GgmlType::Q4_0 | GgmlType::Q4_1 => {
            let block_size = if ty == GgmlType::Q4_0 { 18 } else { 20 };
            let mut out = Vec::with_capacity(bytes.len() / block_size * 32);
            for block in bytes.chunks_exact(block_size) {
                let d = f16_at(block, 0);
                let (min, codes) = if ty == GgmlType::Q4_0 {
                    (-8.0 * d, &block[2..])
                } else {
                    (f16_at(block, 2), &block[4..])
                };
                out.extend(codes.iter().map(|&q| (q & 0x0f) as f32 * d + min));
                out.extend(codes.iter().map(|&q| (q >> 4) as f32 * d + min));
            }
            out
        }
    }
}

/// Builds GGUF v3 files: metadata and tensors given as raw (possibly quantised) bytes.
#[derive(Debug, Default)]
pub struct GgufWriter {
    metadata: Vec<(String, MetaValue)>,
    tensors: Vec<(String, Vec<usize>, GgmlType, Vec<u8>)>,
}

impl GgufWriter {
    /// An empty file.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a metadata entry (integers are written as u32/i32 when they fit, as llama.cpp does).
    pub fn meta(mut self, key: &str, value: MetaValue) -> Self {
        self.metadata.push((key.to_owned(), value));
        self
    }

    /// Adds a tensor of PyTorch-order `shape` whose data is `bytes` of type `ty`.
    pub fn tensor(mut self, name: &str, shape: &[usize], ty: GgmlType, bytes: Vec<u8>) -> Self {
        self.tensors
            .push((name.to_owned(), shape.to_vec(), ty, bytes));
        self
    }

    /// Adds an f32 tensor.
    pub fn tensor_f32(self, name: &str, t: &HostTensor) -> Self {
        let bytes = t.data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.tensor(name, &t.shape, GgmlType::F32, bytes)
    }

    /// Serialises the file.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (key, value) in &self.metadata {
            write_string(&mut out, key);
            out.extend_from_slice(&value_type(value).to_le_bytes());
            write_value(&mut out, value);
        }
        let mut offset = 0u64;
        let mut offsets = Vec::new();
        for (name, shape, ty, bytes) in &self.tensors {
            write_string(&mut out, name);
            out.extend_from_slice(&(shape.len() as u32).to_le_bytes());
            for &d in shape.iter().rev() {
                out.extend_from_slice(&(d as u64).to_le_bytes());
            }
            out.extend_from_slice(&ty.id().to_le_bytes());
            out.extend_from_slice(&offset.to_le_bytes());
            offsets.push(offset);
            offset = (offset + bytes.len() as u64).div_ceil(DEFAULT_ALIGNMENT) * DEFAULT_ALIGNMENT;
        }
        let data_start = (out.len() as u64).div_ceil(DEFAULT_ALIGNMENT) * DEFAULT_ALIGNMENT;
        out.resize(data_start as usize, 0);
        for ((_, _, _, bytes), offset) in self.tensors.iter().zip(offsets) {
            out.resize((data_start + offset) as usize, 0);
            out.extend_from_slice(bytes);
        }
        out
    }
}

fn write_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn value_type(value: &MetaValue) -> u32 {
    match value {
        MetaValue::U64(v) if *v <= u32::MAX as u64 => 4,
        MetaValue::U64(_) => 10,
        MetaValue::I64(v) if i32::try_from(*v).is_ok() => 5,
        MetaValue::I64(_) => 11,
        MetaValue::F64(_) => 6,
        MetaValue::Bool(_) => 7,
        MetaValue::String(_) => 8,
        MetaValue::Array(_) => 9,
    }
}

fn write_value(out: &mut Vec<u8>, value: &MetaValue) {
    match value {
        MetaValue::U64(v) if *v <= u32::MAX as u64 => {
            out.extend_from_slice(&(*v as u32).to_le_bytes())
        }
        MetaValue::U64(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetaValue::I64(v) => match i32::try_from(*v) {
            Ok(small) => out.extend_from_slice(&small.to_le_bytes()),
            Err(_) => out.extend_from_slice(&v.to_le_bytes()),
        },
        MetaValue::F64(v) => out.extend_from_slice(&(*v as f32).to_le_bytes()),
        MetaValue::Bool(b) => out.push(*b as u8),
        MetaValue::String(s) => write_string(out, s),
        MetaValue::Array(items) => {
            let item_type = items.first().map_or(4, value_type);
            out.extend_from_slice(&item_type.to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for item in items {
                write_value(out, item);
            }
        }
    }
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
        assert_eq!(
            hf_name("blk.3.attn_q.weight", ModelType::Llama),
            Some(("model.layers.3.self_attn.q_proj.weight".into(), false))
        );
        assert_eq!(
            hf_name("blk.0.attn_qkv.bias", ModelType::Gpt2),
            Some(("transformer.h.0.attn.c_attn.bias".into(), true))
        );
        assert_eq!(
            hf_name("output.weight", ModelType::Llama),
            Some(("lm_head.weight".into(), false))
        );
    }
}
