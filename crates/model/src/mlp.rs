//! The position-wise feed-forward network: SwiGLU (Llama family) or GELU (GPT-2).

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::Tensor;
use burn::tensor::activation::{gelu_approximate, silu};

use crate::linear;

/// `down(silu(gate(x)) * up(x))` when `gate` is present, else `down(gelu_tanh(up(x)))`.
#[derive(Module, Debug)]
pub struct FeedForward {
    /// Gate projection of SwiGLU; `None` for GPT-2.
    pub gate: Option<Linear>,
    /// Up projection (GPT-2 `c_fc`).
    pub up: Linear,
    /// Down projection (GPT-2 `mlp.c_proj`).
    pub down: Linear,
}

impl FeedForward {
    /// Applies the MLP to `[batch, len, hidden]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let hidden = match &self.gate {
            Some(gate) => silu(linear::forward(gate, x.clone())) * linear::forward(&self.up, x),
            None => gelu_approximate(linear::forward(&self.up, x)),
        };
        linear::forward(&self.down, hidden)
    }
}
