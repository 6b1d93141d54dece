//! Rotary position embedding with the Hugging Face `rotate_half` convention: the first and second
//! halves of each head form the rotated pairs (not interleaved neighbours).

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};

/// Precomputed cosine and signed sine tables, `[max_positions, head_dim]` each.
#[derive(Module, Debug)]
pub struct Rope {
    cos: Tensor<2>,
    /// `[-sin, sin]` over the two halves, so that `x * cos + swap_halves(x) * sin` rotates.
    sin: Tensor<2>,
}

impl Rope {
    /// Builds the tables for `head_dim`-wide heads, positions `0..max_positions` and base `theta`.
    pub fn new(head_dim: usize, max_positions: usize, theta: f64, device: &Device) -> Self {
        let half = head_dim / 2;
        let mut cos = Vec::with_capacity(max_positions * head_dim);
        let mut sin = Vec::with_capacity(max_positions * head_dim);
        let inv_freq: Vec<f64> = (0..half)
            .map(|i| 1.0 / theta.powf((2 * i) as f64 / head_dim as f64))
            .collect();
        for pos in 0..max_positions {
            let angles: Vec<f64> = inv_freq.iter().map(|f| pos as f64 * f).collect();
            for pass in 0..2 {
                for &a in &angles {
                    cos.push(a.cos() as f32);
                    let s = a.sin() as f32;
                    sin.push(if pass == 0 { -s } else { s });
                }
            }
        }
        let shape = [max_positions, head_dim];
        Rope {
            cos: Tensor::from_data(TensorData::new(cos, shape), device),
            sin: Tensor::from_data(TensorData::new(sin, shape), device),
        }
    }

    /// The cosine and signed sine rows of `positions` `[batch, len]`, looked up once per chunk
    /// and shared by the queries and keys of every layer.
    pub fn angles(&self, positions: &Tensor<2, Int>) -> RopeAngles {
        let [batch, len] = positions.dims();
        let head_dim = self.cos.dims()[1];
        let flat = positions.clone().reshape([batch * len]);
        let table = |t: &Tensor<2>| {
            t.clone()
                .select(0, flat.clone())
                .reshape([batch, 1, len, head_dim])
        };
        RopeAngles {
            cos: table(&self.cos),
            sin: table(&self.sin),
        }
    }
}

/// The RoPE tables at one chunk's positions, `[batch, 1, len, head_dim]` each.
#[derive(Debug, Clone)]
pub struct RopeAngles {
    cos: Tensor<4>,
    sin: Tensor<4>,
}

impl RopeAngles {
    /// These angles with `f` applied to both tables (moving them on or off autodiff).
    pub(crate) fn map(&self, f: impl Fn(Tensor<4>) -> Tensor<4>) -> Self {
        RopeAngles {
            cos: f(self.cos.clone()),
            sin: f(self.sin.clone()),
        }
    }

    /// Rotates `x` `[batch, heads, len, head_dim]` by these angles.
    pub fn rotate(&self, x: Tensor<4>) -> Tensor<4> {
        let half = x.dims()[3] / 2;
        let swapped = Tensor::cat(
            vec![
                x.clone().narrow(3, half, half),
                x.clone().narrow(3, 0, half),
            ],
            3,
        );
        x * self.cos.clone() + swapped * self.sin.clone()
    }
}
