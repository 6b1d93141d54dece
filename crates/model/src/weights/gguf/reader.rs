//! The GGUF byte reader: bounds-checked little-endian values, strings and metadata values,
//! each error naming the file, what was being read and the offset.

use std::path::Path;

use crate::error::ModelError;

/// The file magic.
pub const MAGIC: &[u8; 4] = b"GGUF";
/// Data alignment when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// Highest tensor rank accepted.
pub const MAX_DIMS: usize = 4;

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

/// A cursor over the bytes of a GGUF file.
pub(crate) struct Reader<'a> {
    /// The whole file.
    pub(crate) bytes: &'a [u8],
    /// The next byte to read.
    pub(crate) pos: usize,
    /// The file's path, for errors.
    pub(crate) path: &'a Path,
}

impl<'a> Reader<'a> {
    pub(crate) fn error(&self, message: String) -> ModelError {
        ModelError::Gguf {
            path: self.path.to_path_buf(),
            message,
        }
    }

    pub(crate) fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], ModelError> {
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

    pub(crate) fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], ModelError> {
        Ok(self.take(N, what)?.try_into().expect("length checked"))
    }

    pub(crate) fn u32(&mut self, what: &str) -> Result<u32, ModelError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    pub(crate) fn u64(&mut self, what: &str) -> Result<u64, ModelError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A count that cannot exceed what the remaining bytes could hold at `min_size` each.
    pub(crate) fn count(&mut self, what: &str, min_size: usize) -> Result<usize, ModelError> {
        let n = self.u64(what)?;
        let remaining = (self.bytes.len() - self.pos) as u64;
        if n.saturating_mul(min_size as u64) > remaining {
            return Err(self.error(format!(
                "{what} is {n}, more than the {remaining} remaining bytes can hold"
            )));
        }
        Ok(n as usize)
    }

    pub(crate) fn string(&mut self, what: &str) -> Result<String, ModelError> {
        let len = self.count(what, 1)?;
        let at = self.pos;
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| self.error(format!("{what} at offset {at} is not valid UTF-8")))
    }

    pub(crate) fn value(
        &mut self,
        type_id: u32,
        key: &str,
        depth: usize,
    ) -> Result<MetaValue, ModelError> {
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

/// Widens an f32 to the f64 with the same shortest decimal form (1e-5f32 becomes 1e-5, not
/// 9.99999974e-6), so configs read from GGUF match those written by Hugging Face.
fn f32_to_f64_shortest(v: f32) -> f64 {
    v.to_string().parse().unwrap_or(v as f64)
}
