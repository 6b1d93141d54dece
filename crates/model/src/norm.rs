//! Normalisation layers: RMSNorm (Llama family, Qwen3's q/k heads), Gemma's RMSNorm with its
//! `1 + w` scale, and LayerNorm (GPT-2) behind one type.

use burn::module::{Module, Param};
use burn::tensor::module::layer_norm;
use burn::tensor::{Device, Tensor};

use crate::config::{ModelConfig, NormKind};
use crate::flex::rms_norm;

/// RMSNorm when `bias` is `None`, LayerNorm when it holds the shift.
#[derive(Module, Debug)]
pub struct Norm {
    /// Per-channel scale (the scale minus one when `unit_offset`).
    pub weight: Param<Tensor<1>>,
    /// Per-channel shift (LayerNorm only).
    pub bias: Option<Param<Tensor<1>>>,
    /// Added to the variance (or mean square) before the square root.
    pub eps: f64,
    /// Whether the scale is `1 + weight` (Gemma), as the checkpoint stores it.
    pub unit_offset: bool,
}

impl Norm {
    /// A freshly initialised norm of `kind` and width `dim` whose scale is 1 and shift 0.
    pub fn new(dim: usize, kind: NormKind, eps: f64, device: &Device) -> Self {
        let unit_offset = kind == NormKind::RmsUnitOffset;
        let weight = match unit_offset {
            true => Tensor::zeros([dim], device),
            false => Tensor::ones([dim], device),
        };
        Norm {
            weight: Param::from_tensor(weight),
            bias: (kind == NormKind::Layer)
                .then(|| Param::from_tensor(Tensor::zeros([dim], device))),
            eps,
            unit_offset,
        }
    }

    /// The norm `config`'s family uses ([`NormKind`]), of width `dim`, freshly initialised.
    pub fn of(config: &ModelConfig, dim: usize, device: &Device) -> Self {
        Norm::new(dim, config.model_type.block().norm, config.norm_eps, device)
    }

    /// Normalises over the last dimension.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        match &self.bias {
            Some(bias) => layer_norm(x, self.weight.val(), Some(bias.val()), self.eps),
            None if self.unit_offset => rms_norm(x, self.weight.val() + 1.0, self.eps),
            None => rms_norm(x, self.weight.val(), self.eps),
        }
    }
}
