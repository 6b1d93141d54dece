//! Linear layers: their products through [`flex::weight_product`] (our gemm product with its own
//! backward pass on flex, bf16 for frozen weights when asked ([`Products`]), Burn's matmul
//! elsewhere), and, during generation, the products of a
//! decoding step (at most [`MAX_ROWS`] rows) through weights packed for them (`linear/packed.rs`).

mod kernels;
mod packed;
mod pages;
mod team;

use burn::module::Param;
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::tensor::{Device, Tensor, TensorData};

use crate::flex;
use crate::host::to_f32_vec;

pub use packed::{MAX_ROWS, PackedWeight, Unpacked};

/// A `[d_in, d_out]` linear layer with weights drawn (lazily) from `init` and a zero bias when
/// `bias` is set.
pub fn layer(d_in: usize, d_out: usize, bias: bool, init: &Initializer, device: &Device) -> Linear {
    let layer = LinearConfig::new(d_in, d_out)
        .with_bias(bias)
        .with_initializer(init.clone())
        .init(device);
    let bias = layer
        .bias
        .map(|_| Param::from_tensor(Tensor::zeros([d_out], device)));
    Linear { bias, ..layer }
}

/// How a forward pass makes its products with the base weights: in f32, in bf16 where a
/// weight is frozen ([`flex::weight_product`]), or through weights packed for decoding (`W`:
/// one block's, [`crate::decoding::BlockWeights`], or one layer group's, [`PackedWeight`]).
#[derive(Debug)]
pub enum Products<'a, W> {
    /// f32 products.
    F32,
    /// bf16 products with frozen weights on CPUs that have AVX512-BF16, f32 otherwise.
    Bf16,
    /// Products through packed weights (decoding).
    Packed(&'a W),
}

impl<W> Clone for Products<'_, W> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<W> Copy for Products<'_, W> {}

impl<'a, W> Products<'a, W> {
    /// Unpacked products, in bf16 when `bf16`.
    pub fn unpacked(bf16: bool) -> Self {
        if bf16 { Products::Bf16 } else { Products::F32 }
    }

    /// The same choice for a part of the packed weights.
    pub fn map<V>(self, part: impl FnOnce(&'a W) -> &'a V) -> Products<'a, V> {
        match self {
            Products::F32 => Products::F32,
            Products::Bf16 => Products::Bf16,
            Products::Packed(w) => Products::Packed(part(w)),
        }
    }

    /// Whether the products are in bf16.
    pub fn bf16(self) -> bool {
        matches!(self, Products::Bf16)
    }
}

/// A [`Linear`] layer's forward pass on `[batch, len, d_in]`, the product with the base
/// weight in bf16 when `bf16` and that weight is frozen ([`flex::weight_product`]).
///
/// A weight with a LoRA adapter (`W + s A B`, Burn's `apply_lora`) is applied in activation
/// space, as PEFT does: `x W + s (x A) B`. Multiplying by the adapted weight instead would make
/// autodiff form the full `[d_in, d_out]` gradient of `W + s A B` on every step, the cost of
/// full fine-tuning; this way the frozen `W` only passes gradients to `x`, and `A`, `B` get
/// theirs from rank-sized products (in f32).
pub fn forward(layer: &Linear, x: Tensor<3>, bf16: bool) -> Tensor<3> {
    let [batch, len, d_in] = x.dims();
    let rows = x.reshape([batch * len, d_in]);
    let y = flex::weight_product(rows.clone(), base_weight(layer), bf16);
    let d_out = y.dims()[1];
    finish(layer, rows, y).reshape([batch, len, d_out])
}

/// The forward passes of `layers`, which read the same input: through packed weights (their
/// base weights packed side by side, [`Unpacked::SideBySide`]) one product for all of them,
/// then each layer's adapter and bias; otherwise, or for more than [`MAX_ROWS`] rows,
/// [`forward`] layer by layer (in f32 for packed weights).
pub fn forward_together(
    layers: &[&Linear],
    products: Products<'_, PackedWeight>,
    x: Tensor<3>,
) -> Vec<Tensor<3>> {
    let [batch, len, d_in] = x.dims();
    let m = batch * len;
    let packed = match products {
        Products::Packed(packed) if m <= MAX_ROWS => packed,
        _ => {
            return layers
                .iter()
                .map(|layer| forward(layer, x.clone(), products.bf16()))
                .collect();
        }
    };
    assert_eq!(
        packed.k(),
        d_in,
        "the packed weights take inputs of {}",
        packed.k()
    );
    let widths: usize = layers
        .iter()
        .map(|l| l.weight.lazy_shape().dims::<2>()[1])
        .sum();
    assert_eq!(
        packed.n(),
        widths,
        "the packed weights are not these layers'"
    );
    let rows = x.reshape([m, d_in]);
    let device = rows.device();
    let y = packed.product(&to_f32_vec(rows.clone()), m);
    let y = Tensor::<2>::from_data(TensorData::new(y, [m, packed.n()]), &device);
    let mut c0 = 0;
    layers
        .iter()
        .map(|layer| {
            let d_out = layer.weight.lazy_shape().dims::<2>()[1];
            let part = y.clone().narrow(1, c0, d_out);
            c0 += d_out;
            finish(layer, rows.clone(), part).reshape([batch, len, d_out])
        })
        .collect()
}

/// The weight a layer's product takes: the frozen base of a LoRA-adapted weight, else the
/// weight.
pub fn base_weight(layer: &Linear) -> Tensor<2> {
    match layer.weight.adapter() {
        Some(_) => layer.weight.base(),
        None => layer.weight.val(),
    }
}

/// `y` (the product of `rows` `[m, d_in]` with the layer's base weight) plus the LoRA
/// adapter's low-rank product and the bias, where the layer has them.
fn finish(layer: &Linear, rows: Tensor<2>, y: Tensor<2>) -> Tensor<2> {
    let y = match layer.weight.adapter() {
        // The scale multiplies the rank-wide `x A`, not the `[rows, d_out]` product.
        Some(lora) => y + flex::matmul(flex::matmul(rows, lora.a.val()) * lora.scale, lora.b.val()),
        None => y,
    };
    match &layer.bias {
        Some(bias) => y + bias.val().unsqueeze(),
        None => y,
    }
}

/// `x @ weight (+ bias)` for `x` `[batch, len, d_in]` and `weight` `[d_in, d_out]`, as one 2-D
/// product: Burn's `linear` would first copy a non-contiguous weight to broadcast it.
pub fn apply(x: Tensor<3>, weight: Tensor<2>, bias: Option<Tensor<1>>) -> Tensor<3> {
    let [batch, len, d_in] = x.dims();
    let d_out = weight.dims()[1];
    let y = flex::matmul(x.reshape([batch * len, d_in]), weight);
    let y = match bias {
        Some(bias) => y + bias.unsqueeze(),
        None => y,
    };
    y.reshape([batch, len, d_out])
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::{Lora, Module};
    use burn::tensor::Distribution;

    fn pool(threads: usize) -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
    }

    fn max_diff(a: Tensor<3>, b: Tensor<3>) -> f32 {
        (a - b).abs().max().into_scalar()
    }

    #[test]
    fn layer_forward_equals_burns_linear() {
        let device = Device::flex();
        let layer = LinearConfig::new(160, 320).init(&device);
        for (batch, len) in [(1, 1), (2, 3), (4, 8)] {
            let x = Tensor::<3>::random([batch, len, 160], Distribution::Normal(0.0, 1.0), &device);
            let ours = pool(2).install(|| forward(&layer, x.clone(), false));
            let diff = max_diff(ours, layer.forward(x));
            assert!(diff <= 1e-5, "{batch}x{len}: {diff}");
        }
    }

    #[test]
    fn layers_forward_together_as_each_alone() {
        let device = Device::flex();
        let init = Initializer::Normal {
            mean: 0.0,
            std: 0.1,
        };
        let layers = [
            layer(96, 96, true, &init, &device),
            layer(96, 40, false, &init, &device),
            layer(96, 130, true, &init, &device).apply_lora(Lora::new(4, 8.0)),
        ];
        let refs: Vec<&Linear> = layers.iter().collect();
        let values: Vec<Vec<f32>> = layers.iter().map(|l| to_f32_vec(base_weight(l))).collect();
        let parts: Vec<(&[f32], usize)> = values
            .iter()
            .zip(&layers)
            .map(|(v, l)| (v.as_slice(), l.weight.lazy_shape().dims::<2>()[1]))
            .collect();
        let packed = PackedWeight::side_by_side(&parts, 96);
        // 65 rows take the plain forward pass.
        for (batch, len) in [(1, 1), (3, 2), (64, 1), (13, 5)] {
            let x = Tensor::<3>::random([batch, len, 96], Distribution::Normal(0.0, 1.0), &device);
            let ours =
                pool(2).install(|| forward_together(&refs, Products::Packed(&packed), x.clone()));
            assert_eq!(ours.len(), layers.len());
            for (i, (ours, layer)) in ours.into_iter().zip(&layers).enumerate() {
                let diff = max_diff(ours, forward(layer, x.clone(), false));
                assert!(diff <= 1e-5, "layer {i}, {batch}x{len}: {diff}");
            }
        }
    }
}
