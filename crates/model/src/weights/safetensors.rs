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
pub fn read_into(path: &Path, map: &mut TensorMap) -> Result<(), ModelError> {
    let bytes = std::fs::read(path).map_err(|e| ModelError::io(path, e))?;
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
        map.insert(name, HostTensor::new(view.shape().to_vec(), values));
    }
    Ok(())
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
