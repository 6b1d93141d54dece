//! The position-wise feed-forward network: SwiGLU (Llama family), GeGLU (Gemma) or GELU
//! (GPT-2).

use burn::module::Module;
use burn::nn::{Initializer, Linear};
use burn::tensor::activation::gelu_approximate;
use burn::tensor::{Device, Tensor};

use crate::config::{MlpKind, ModelConfig};
use crate::decoding::BlockWeights;
use crate::flex::swiglu;
use crate::linear::{self, Products};

/// `down(act(gate(x)) * up(x))` when `gate` is present (SwiGLU: `silu`, GeGLU: `gelu_tanh`),
/// else `down(gelu_tanh(up(x)))`.
#[derive(Module, Debug)]
pub struct FeedForward {
    /// Gate projection of SwiGLU and GeGLU; `None` for GPT-2.
    pub gate: Option<Linear>,
    /// Whether the gate's activation is `gelu_tanh` (GeGLU) rather than `silu`.
    pub gelu_gate: bool,
    /// Up projection (GPT-2 `c_fc`).
    pub up: Linear,
    /// Down projection (GPT-2 `mlp.c_proj`).
    pub down: Linear,
}

impl FeedForward {
    /// The MLP of a block of `config` ([`MlpKind`]), weights drawn (lazily) from `init`: SwiGLU
    /// or GeGLU without biases (Llama family, Gemma) or GELU with biases (GPT-2).
    pub fn init(config: &ModelConfig, init: &Initializer, device: &Device) -> Self {
        let spec = config.model_type.block();
        let bias = spec.out_bias;
        let (d, ffn) = (config.hidden_size, config.intermediate_size);
        FeedForward {
            gate: spec
                .mlp
                .is_gated()
                .then(|| linear::layer(d, ffn, false, init, device)),
            gelu_gate: spec.mlp == MlpKind::GeGlu,
            up: linear::layer(d, ffn, bias, init, device),
            down: linear::layer(ffn, d, bias, init, device),
        }
    }

    /// Applies the MLP to `[batch, len, hidden]`; the projections as `products` says.
    pub fn forward(&self, x: Tensor<3>, products: Products<'_, BlockWeights>) -> Tensor<3> {
        let inputs: Vec<&Linear> = self.gate.iter().chain([&self.up]).collect();
        let mut projected = linear::forward_together(&inputs, products.map(|p| &p.mlp_in), x);
        let up = projected.pop().expect("the up projection");
        let hidden = match projected.pop() {
            Some(gate) if self.gelu_gate => gelu_approximate(gate) * up,
            Some(gate) => swiglu(gate, up),
            None => gelu_approximate(up),
        };
        linear::forward_together(&[&self.down], products.map(|p| &p.down), hidden)
            .pop()
            .expect("one projection")
    }
}
