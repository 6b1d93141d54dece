//! safetensors files in and out (F32, F16 and BF16 read; F32 written).

use std::collections::HashMap;
use std::path::Path;

use half::{bf16, f16};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};

use crate::error::ModelError;
use crate::fsutil::write_atomic;
use crate::weights::tensor::{HostTensor, TensorMap};

fn weights_error(path: &Path, message: String) -> ModelError {
    ModelError::Weights {
        source_name: path.display().to_string(),
        message,
    }
}

/// Reads every tensor of a safetensors file into `map`, converted to f32.
///
/// The file is memory-mapped and each tensor's pages are released once it is converted, so
/// that loading holds the converted tensors and one tensor of the file at a time, not the whole
/// file beside them (the file of a bf16 checkpoint is half the size of its f32 tensors).
pub fn read_into(path: &Path, map: &mut TensorMap) -> Result<(), ModelError> {
    let file = std::fs::File::open(path).map_err(|e| ModelError::io(path, e))?;
    // SAFETY: the mapping is only read. As with every reader of a memory-mapped checkpoint
    // (transformers, candle), a file truncated by another process while it is read would fault.
    let bytes = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| ModelError::io(path, e))?;
    let file = SafeTensors::deserialize(&bytes)
        .map_err(|e| weights_error(path, format!("not a valid safetensors file: {e}")))?;
    for (name, view) in file.iter() {
        let data = view.data();
        let values: Vec<f32> = match view.dtype() {
            Dtype::F32 => data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Dtype::F16 => data
                .chunks_exact(2)
                .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            Dtype::BF16 => data
                .chunks_exact(2)
                .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            other => {
                return Err(weights_error(
                    path,
                    format!(
                        "tensor `{name}` has dtype {other:?} (F32, F16 and BF16 are supported)"
                    ),
                ));
            }
        };
        release(&bytes, data);
        map.insert(name, HostTensor::new(view.shape().to_vec(), values));
    }
    Ok(())
}

/// Lets the kernel drop the mapped pages of `data` (part of `map`) from memory: they were read.
fn release(map: &memmap2::Mmap, data: &[u8]) {
    #[cfg(unix)]
    {
        let offset = data.as_ptr() as usize - map.as_ptr() as usize;
        // SAFETY: the mapping is private and read-only: dropped pages are read again from the
        // file if touched, never lost (the pages around `data` belong to tensors already read).
        let _ = unsafe {
            map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, offset, data.len())
        };
    }
    #[cfg(not(unix))]
    let _ = (map, data);
}

/// Writes all tensors of `map` as F32 to `path` (atomically), with the `format: pt` metadata
/// that Hugging Face `transformers` requires.
pub fn write(path: &Path, map: &TensorMap) -> Result<(), ModelError> {
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = map
        .tensors
        .iter()
        .map(|(name, t)| {
            let raw = t.data.iter().flat_map(|v| v.to_le_bytes()).collect();
            (name.clone(), raw, t.shape.clone())
        })
        .collect();
    let views = bytes
        .iter()
        .map(|(name, raw, shape)| {
            TensorView::new(Dtype::F32, shape.clone(), raw)
                .map(|view| (name.clone(), view))
                .map_err(|e| weights_error(path, format!("tensor `{name}`: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let metadata = HashMap::from([("format".to_owned(), "pt".to_owned())]);
    let out = safetensors::serialize(views, Some(metadata))
        .map_err(|e| weights_error(path, e.to_string()))?;
    write_atomic(path, &out)
}
