//! Weight products of few-row activations (the projections of a decoding step), spread over
//! the CPU thread pool.
//!
//! Burn's flex backend runs a matmul below ~7M multiply-adds on one thread, and a one-row
//! product on a one-thread matrix-vector kernel. A decoding step is made of such products, each
//! reading a whole weight matrix from memory, so one core does the work of all. Here the
//! weight's columns are split into one slice per pool thread and the slices are multiplied in
//! parallel. Every output column is computed by the same kernel over the same inputs as before;
//! other backends and larger inputs take the plain product.

use burn::nn::Linear;
use burn::tensor::{Device, Tensor};
use rayon::prelude::*;

/// Activations with at most this many rows are split; larger products parallelise themselves.
const MAX_SPLIT_ROWS: usize = 16;
/// Weights narrower than this stay whole: the slices would be too small to pay for the split.
const MIN_SPLIT_COLUMNS: usize = 256;

/// `x @ weight` for `x` `[rows, k]` and `weight` `[k, n]`, split by columns across the thread
/// pool when `x` has few rows and lives on the flex backend.
pub fn matmul(x: Tensor<2>, weight: Tensor<2>) -> Tensor<2> {
    let [_, n] = weight.dims();
    let Some(width) = split_width(&x, &weight) else {
        return x.matmul(weight);
    };
    let parts: Vec<Tensor<2>> = (0..n.div_ceil(width))
        .into_par_iter()
        .map(|i| {
            let start = i * width;
            x.clone()
                .matmul(weight.clone().narrow(1, start, width.min(n - start)))
        })
        .collect();
    Tensor::cat(parts, 1)
}

/// A [`Linear`] layer's forward pass on `[batch, len, d_in]` through [`matmul`].
pub fn forward(layer: &Linear, x: Tensor<3>) -> Tensor<3> {
    apply(x, layer.weight.val(), layer.bias.as_ref().map(|b| b.val()))
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

/// The column slice width [`matmul`] uses, `None` when it takes the plain product.
fn split_width(x: &Tensor<2>, weight: &Tensor<2>) -> Option<usize> {
    let [rows, _] = x.dims();
    let [_, n] = weight.dims();
    let threads = rayon::current_num_threads();
    let split =
        rows <= MAX_SPLIT_ROWS && n >= MIN_SPLIT_COLUMNS && threads >= 2 && is_flex(&x.device());
    split.then(|| n.div_ceil(threads))
}

/// Whether `device` is the flex CPU backend, with or without autodiff.
fn is_flex(device: &Device) -> bool {
    device.clone().inner() == Device::flex()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::LinearConfig;
    use burn::tensor::Distribution;

    fn max_abs_diff(a: Tensor<2>, b: Tensor<2>) -> f32 {
        (a - b).abs().max().into_scalar()
    }

    #[test]
    fn split_product_equals_the_plain_one() {
        let device = Device::flex();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        for (rows, k, n) in [
            (1, 64, 700),
            (8, 96, 257),
            (16, 32, 1024),
            (17, 32, 512),
            (4, 32, 100),
        ] {
            let x = Tensor::<2>::random([rows, k], Distribution::Normal(0.0, 1.0), &device);
            let w = Tensor::<2>::random([k, n], Distribution::Normal(0.0, 1.0), &device);
            let expected_split = rows <= MAX_SPLIT_ROWS && n >= MIN_SPLIT_COLUMNS;
            let width = pool.install(|| split_width(&x, &w));
            assert_eq!(
                width,
                expected_split.then(|| n.div_ceil(3)),
                "{rows}x{k}x{n}"
            );
            let split = pool.install(|| matmul(x.clone(), w.clone()));
            assert_eq!(split.dims(), [rows, n]);
            let diff = max_abs_diff(split, x.clone().matmul(w.clone()));
            assert!(diff <= 1e-5, "{rows}x{k}x{n}: {diff}");
            // A transposed (tied-embedding) weight splits the same way.
            let wt = w.clone().transpose().reshape([n, k]).transpose();
            let diff = max_abs_diff(pool.install(|| matmul(x.clone(), wt)), x.matmul(w));
            assert!(diff <= 1e-5, "{rows}x{k}x{n} transposed: {diff}");
        }
    }

    #[test]
    fn layer_forward_equals_burns_linear() {
        let device = Device::flex();
        let layer = LinearConfig::new(48, 320).init(&device);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        for (batch, len) in [(1, 1), (2, 3), (4, 8)] {
            let x = Tensor::<3>::random([batch, len, 48], Distribution::Normal(0.0, 1.0), &device);
            let ours = pool.install(|| forward(&layer, x.clone()));
            let diff: f32 = (ours - layer.forward(x)).abs().max().into_scalar();
            assert!(diff <= 1e-5, "{batch}x{len}: {diff}");
        }
    }
}
