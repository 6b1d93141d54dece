//! Named f32 host tensors: what every weight format reads into and writes from.

use std::collections::BTreeMap;

use burn::tensor::{Device, Tensor, TensorData};

use crate::error::ModelError;
use crate::host::to_f32_vec;

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

    /// The values of `tensor`, on the host.
    pub fn from_tensor<const D: usize>(tensor: Tensor<D>) -> HostTensor {
        let shape = tensor.dims().to_vec();
        HostTensor::new(shape, to_f32_vec(tensor))
    }

    /// The tensor on `device`.
    pub fn to_tensor<const D: usize>(&self, device: &Device) -> Tensor<D> {
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
