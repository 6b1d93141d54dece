//! Weight products of few-row activations (the projections of a decoding step), computed by
//! our own CPU kernels on the flex backend: [`kernel`] up to 16 rows, [`panel`] (AVX-512) up
//! to 64 rows, a sampling batch.
//!
//! A decoding step is made of such products, each reading a whole weight matrix from memory for
//! one or a few activation rows, so its speed is the speed at which the weights stream in.
//! Burn's flex matmul (the `gemm` crate) runs products below ~7M multiply-adds on one thread,
//! and for a few rows its kernels walk down narrow strips of weight columns, a row (often more
//! than a page) apart. The kernel instead gives each pool thread one contiguous block of weight
//! rows and streams it front to back: a C model of SmolLM2's decoding products,
//! `benches/compare/decode_bandwidth.c`, measured 7-11 GB/s when threads split the columns and
//! 15-17 GB/s when they split the rows, with 2 threads. `benches/decode_products.rs` times the
//! kernel against Burn's matmul on SmolLM2's shapes.
//!
//! The partial products of the blocks are added in block order: a given thread count always
//! gives the same numbers, a different one may differ in the last bits. Other backends, larger
//! inputs, and weights that are not contiguous row-major f32 take [`flex::matmul`] (our gemm
//! product with its own backward pass on flex, Burn's matmul elsewhere).

mod kernel;
mod panel;

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::module::Param;
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::tensor::{DType, Device, Tensor, TensorData};

use crate::flex;
use crate::host::to_f32_vec;

/// Activations with at most this many rows use the kernel. Larger products are compute-bound,
/// and there the kernel is no faster than Burn's matmul (measured with 128 rows).
const MAX_KERNEL_ROWS: usize = 16;
/// Activations with at most this many rows (and more than [`MAX_KERNEL_ROWS`]) use the panel
/// kernel ([`panel`]) where the CPU has AVX-512.
const MAX_PANEL_ROWS: usize = 64;
/// Each thread's block holds at least this many weight rows: smaller ones would not pay for
/// the split.
const MIN_BLOCK_ROWS: usize = 64;

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

/// `x @ weight` for `x` `[rows, k]` and `weight` `[k, n]`, when `weight` is a contiguous
/// row-major f32 flex tensor: the few-row kernel up to 16 rows, the panel kernel up to 64 rows
/// (where the CPU has AVX-512), else [`flex::matmul`].
pub fn matmul(x: Tensor<2>, weight: Tensor<2>) -> Tensor<2> {
    let [rows, k] = x.dims();
    let n = weight.dims()[1];
    let few = rows <= MAX_KERNEL_ROWS;
    let panel = !few && rows <= MAX_PANEL_ROWS && panel::available();
    // A tracked `x` keeps its graph through `flex::matmul`.
    let tracked = x.is_autodiff() && x.is_tracked();
    let flex_weight = (!tracked && (few || panel))
        .then(|| row_major_flex(&weight))
        .flatten();
    let Some(flex_weight) = flex_weight else {
        return flex::matmul(x, weight);
    };
    let w = flex_weight
        .as_slice::<f32>()
        .expect("row_major_flex checked the layout");
    let device = x.device();
    let x = to_f32_vec(x);
    let y = if few {
        kernel::product(&x, w, rows, k, n, blocks(k))
    } else {
        panel::product(&x, w, rows, k, n)
    };
    Tensor::from_data(TensorData::new(y, [rows, n]), &device)
}

/// A [`Linear`] layer's forward pass on `[batch, len, d_in]` through [`matmul`].
///
/// A weight with a LoRA adapter (`W + s A B`, Burn's `apply_lora`) is applied in activation
/// space, as PEFT does: `x W + s (x A) B`. Multiplying by the adapted weight instead would make
/// autodiff form the full `[d_in, d_out]` gradient of `W + s A B` on every step, the cost of
/// full fine-tuning; this way the frozen `W` only passes gradients to `x`, and `A`, `B` get
/// theirs from rank-sized products.
pub fn forward(layer: &Linear, x: Tensor<3>) -> Tensor<3> {
    let bias = layer.bias.as_ref().map(|b| b.val());
    let Some(lora) = layer.weight.adapter() else {
        return apply(x, layer.weight.val(), bias);
    };
    let [batch, len, d_in] = x.dims();
    let d_out = layer.weight.lazy_shape().dims::<2>()[1];
    let rows = x.reshape([batch * len, d_in]);
    // The scale multiplies the rank-wide `x A`, not the `[rows, d_out]` product.
    let low_rank = flex::matmul(
        flex::matmul(rows.clone(), lora.a.val()) * lora.scale,
        lora.b.val(),
    );
    let y = matmul(rows, layer.weight.base()) + low_rank;
    let y = match bias {
        Some(bias) => y + bias.unsqueeze(),
        None => y,
    };
    y.reshape([batch, len, d_out])
}

/// `x @ weight (+ bias)` for `x` `[batch, len, d_in]` and `weight` `[d_in, d_out]`, as one 2-D
/// [`matmul`]: Burn's `linear` would first copy a non-contiguous weight to broadcast it.
pub fn apply(x: Tensor<3>, weight: Tensor<2>, bias: Option<Tensor<1>>) -> Tensor<3> {
    let [batch, len, d_in] = x.dims();
    let d_out = weight.dims()[1];
    let y = matmul(x.reshape([batch * len, d_in]), weight);
    let y = match bias {
        Some(bias) => y + bias.unsqueeze(),
        None => y,
    };
    y.reshape([batch, len, d_out])
}

/// How many blocks the kernel splits `k` weight rows into: one per pool thread, fewer when
/// the weight is too shallow.
fn blocks(k: usize) -> usize {
    rayon::current_num_threads().min(k / MIN_BLOCK_ROWS).max(1)
}

/// The flex tensor behind `weight` when it is a contiguous row-major f32 matrix on the flex
/// backend without autodiff (a shared handle: the weights are not copied).
fn row_major_flex(weight: &Tensor<2>) -> Option<FlexTensor> {
    let flex = weight.clone().try_into_primitive::<Flex>().ok()?;
    (flex.dtype() == DType::F32 && flex.as_slice::<f32>().is_some()).then_some(flex)
}

#[cfg(test)]
mod tests {
    use bpo_testkit::max_abs_diff;

    use super::*;
    use burn::nn::LinearConfig;
    use burn::tensor::{Device, Distribution};

    fn pool(threads: usize) -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
    }

    #[test]
    fn kernel_product_equals_burns_and_repeats_exactly() {
        let device = Device::flex();
        for (rows, k, n) in [
            (1, 576, 700),
            (8, 129, 257),
            (16, 320, 1024),
            (1, 100, 100),
            (17, 256, 512),
            (32, 576, 192),
            (61, 96, 1000),
        ] {
            let x = Tensor::<2>::random([rows, k], Distribution::Normal(0.0, 1.0), &device);
            let w = Tensor::<2>::random([k, n], Distribution::Normal(0.0, 1.0), &device);
            let plain = x.clone().matmul(w.clone());
            assert!(row_major_flex(&w).is_some());
            // A transposed (tied-embedding) view is not row-major: Burn's matmul takes it.
            let wt = w.clone().transpose().reshape([n, k]).transpose();
            assert!(row_major_flex(&wt).is_none());
            for threads in [1, 2, 3, 5] {
                let pool = pool(threads);
                assert_eq!(
                    pool.install(|| blocks(k)),
                    threads.min(k / MIN_BLOCK_ROWS).max(1)
                );
                for weight in [w.clone(), wt.clone()] {
                    let ours = pool.install(|| matmul(x.clone(), weight.clone()));
                    assert_eq!(ours.dims(), [rows, n]);
                    let diff = max_abs_diff(&to_f32_vec(ours.clone()), &to_f32_vec(plain.clone()));
                    // Two f32 summation orders of k unit-variance terms: the rounding grows
                    // with k.
                    let tolerance = 2e-6 * k as f32;
                    assert!(
                        diff <= tolerance,
                        "{rows}x{k}x{n}, {threads} threads: {diff}"
                    );
                    let again = pool.install(|| matmul(x.clone(), weight));
                    assert_eq!(
                        to_f32_vec(ours),
                        to_f32_vec(again),
                        "{rows}x{k}x{n}, {threads} threads"
                    );
                }
            }
        }
    }

    #[test]
    fn autodiff_weights_take_burns_matmul_and_keep_their_gradient() {
        let device = Device::flex().autodiff();
        let x = Tensor::<2>::random([2, 128], Distribution::Normal(0.0, 1.0), &device);
        let w =
            Tensor::<2>::random([128, 64], Distribution::Normal(0.0, 1.0), &device).require_grad();
        assert!(row_major_flex(&w).is_none());
        let grads = matmul(x, w.clone()).sum().backward();
        assert!(w.grad(&grads).is_some());
    }

    #[test]
    fn a_tracked_input_keeps_its_gradient_with_a_frozen_row_major_weight() {
        let w = Tensor::<2>::random([64, 96], Distribution::Normal(0.0, 1.0), &Device::flex());
        assert!(row_major_flex(&w).is_some());
        for rows in [1, 20, 64] {
            let x =
                Tensor::<2>::random([rows, 64], Distribution::Normal(0.0, 1.0), &Device::flex())
                    .autodiff()
                    .require_grad();
            let grads = matmul(x.clone(), w.clone()).sum().backward();
            assert!(x.grad(&grads).is_some(), "{rows} rows");
        }
    }

    #[test]
    fn layer_forward_equals_burns_linear() {
        let device = Device::flex();
        let layer = LinearConfig::new(160, 320).init(&device);
        for (batch, len) in [(1, 1), (2, 3), (4, 8)] {
            let x = Tensor::<3>::random([batch, len, 160], Distribution::Normal(0.0, 1.0), &device);
            let ours = pool(2).install(|| forward(&layer, x.clone()));
            let diff: f32 = (ours - layer.forward(x)).abs().max().into_scalar();
            assert!(diff <= 1e-5, "{batch}x{len}: {diff}");
        }
    }
}
