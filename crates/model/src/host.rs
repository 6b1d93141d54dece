//! Copying tensors back to host memory.

use burn::tensor::Tensor;

/// The values of a float tensor as `f32`, row-major (synchronises with the device).
pub fn to_f32_vec<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
    tensor
        .into_data()
        .try_into_vec_as::<f32>()
        .expect("a float tensor converts to f32")
}
