//! Builds GGUF v3 files (fixtures of the GGUF reader's tests and the tiny tokenizer).

use bpo_model::weights::HostTensor;
use bpo_model::weights::gguf::{GgmlType, MetaValue};

const MAGIC: &[u8; 4] = b"GGUF";
const ALIGNMENT: u64 = 32;

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
            offset = (offset + bytes.len() as u64).div_ceil(ALIGNMENT) * ALIGNMENT;
        }
        let data_start = (out.len() as u64).div_ceil(ALIGNMENT) * ALIGNMENT;
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
