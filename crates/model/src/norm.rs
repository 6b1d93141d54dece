//! Normalisation layers: RMSNorm (Llama family, Qwen3's q/k heads) and LayerNorm (GPT-2) behind
//! one type.

use burn::module::{Module, Param};
use burn::tensor::module::layer_norm;
use burn::tensor::{Device, Tensor};

use crate::config::{ModelConfig, NormKind};
use crate::flex::rms_norm;

/// RMSNorm when `bias` is `None`, LayerNorm when it holds the shift.
#[derive(Module, Debug)]
pub struct Norm {
    /// Per-channel scale.
    pub weight: Param<Tensor<1>>,
    /// Per-channel shift (LayerNorm only).
    pub bias: Option<Param<Tensor<1>>>,
    /// Added to the variance (or mean square) before the square root.
    pub eps: f64,
}

impl Norm {
    /// A freshly initialised norm (scale 1, shift 0) of width `dim`.
    pub fn new(dim: usize, layer_norm: bool, eps: f64, device: &Device) -> Self {
        Norm {
            weight: Param::from_tensor(Tensor::ones([dim], device)),
            bias: layer_norm.then(|| Param::from_tensor(Tensor::zeros([dim], device))),
            eps,
        }
    }

    /// The norm `config`'s family uses ([`NormKind`]), of width `dim`, freshly initialised.
    pub fn of(config: &ModelConfig, dim: usize, device: &Device) -> Self {
        let layer_norm = config.model_type.block().norm == NormKind::Layer;
        Norm::new(dim, layer_norm, config.norm_eps, device)
    }

    /// Normalises over the last dimension.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        match &self.bias {
            Some(bias) => layer_norm(x, self.weight.val(), Some(bias.val()), self.eps),
            None => rms_norm(x, self.weight.val(), self.eps),
        }
    }
}
