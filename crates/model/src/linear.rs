//! Weight products of few-row activations (the projections of a decoding step), spread over
//! the CPU thread pool so that every thread streams its own contiguous block of the weight.
//!
//! A decoding step is made of such products, each reading a whole weight matrix from memory for
//! one or a few activation rows, so its speed is the speed at which the weights stream in. Burn's
//! flex backend runs a matmul below ~7M multiply-adds on one thread. Splitting the weight's
//! columns across threads (an earlier version) makes each thread read a short piece of every
//! row, which this VM's memory serves at about the speed of one thread; splitting its rows (the
//! inner dimension) gives each thread one contiguous block and streams faster: a C model of
//! SmolLM2's decoding products, `benches/compare/decode_bandwidth.c`, measured 7-11 GB/s by
//! columns and 15-17 GB/s by rows with 2 threads.
//!
//! So the product is split along the inner dimension into one block per pool thread, the blocks
//! run in parallel and their partial products are added. The sum's rounding depends on the
//! number of blocks: a given thread count always gives the same numbers, a different one may
//! differ in the last bits. Other backends and larger inputs take the plain product.

use burn::nn::Linear;
use burn::tensor::{Device, Tensor};
use rayon::prelude::*;

/// Activations with at most this many rows are split; larger products parallelise themselves.
const MAX_SPLIT_ROWS: usize = 16;
/// Each block holds at least this many weight rows: smaller ones would not pay for the split.
const MIN_BLOCK_ROWS: usize = 64;

/// `x @ weight` for `x` `[rows, k]` and `weight` `[k, n]`, split across the thread pool when `x`
/// has few rows and lives on the flex backend.
pub fn matmul(x: Tensor<2>, weight: Tensor<2>) -> Tensor<2> {
    let [k, _] = weight.dims();
    let blocks = blocks(&x, &weight);
    if blocks < 2 {
        return x.matmul(weight);
    }
    let depth = k.div_ceil(blocks);
    let partials: Vec<Tensor<2>> = (0..blocks)
        .into_par_iter()
        .map(|i| {
            let (start, len) = (i * depth, depth.min(k - i * depth));
            x.clone()
                .narrow(1, start, len)
                .matmul(weight.clone().narrow(0, start, len))
        })
        .collect();
    // Added in block order, so the rounding does not depend on which thread finished first.
    partials
        .into_iter()
        .reduce(|sum, partial| sum + partial)
        .expect("at least two blocks")
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

/// How many blocks [`matmul`] splits this product into (1: the plain product): one per pool
/// thread for few rows on flex, fewer when the weight is too shallow.
fn blocks(x: &Tensor<2>, weight: &Tensor<2>) -> usize {
    let [rows, _] = x.dims();
    let [k, _] = weight.dims();
    if rows > MAX_SPLIT_ROWS || !is_flex(&x.device()) {
        return 1;
    }
    rayon::current_num_threads().min(k / MIN_BLOCK_ROWS).max(1)
}

/// Whether `device` is the flex CPU backend, with or without autodiff.
fn is_flex(device: &Device) -> bool {
    device.clone().inner() == Device::flex()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::to_f32_vec;
    use burn::nn::LinearConfig;
    use burn::tensor::Distribution;

    fn max_abs_diff(a: Tensor<2>, b: Tensor<2>) -> f32 {
        (a - b).abs().max().into_scalar()
    }

    fn pool(threads: usize) -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
    }

    #[test]
    fn split_product_equals_the_plain_one_and_repeats_exactly() {
        let device = Device::flex();
        for (rows, k, n) in [
            (1, 576, 700),
            (8, 129, 257),
            (16, 320, 1024),
            (1, 100, 100),
            (17, 256, 512),
        ] {
            let x = Tensor::<2>::random([rows, k], Distribution::Normal(0.0, 1.0), &device);
            let w = Tensor::<2>::random([k, n], Distribution::Normal(0.0, 1.0), &device);
            let plain = x.clone().matmul(w.clone());
            // A transposed (tied-embedding) weight splits the same way.
            let wt = w.clone().transpose().reshape([n, k]).transpose();
            for threads in [1, 2, 3, 5] {
                let expected_blocks = if rows <= MAX_SPLIT_ROWS {
                    threads.min(k / MIN_BLOCK_ROWS).max(1)
                } else {
                    1
                };
                let pool = pool(threads);
                assert_eq!(pool.install(|| blocks(&x, &w)), expected_blocks);
                for weight in [w.clone(), wt.clone()] {
                    let split = pool.install(|| matmul(x.clone(), weight.clone()));
                    assert_eq!(split.dims(), [rows, n]);
                    let diff = max_abs_diff(split.clone(), plain.clone());
                    assert!(diff <= 1e-4, "{rows}x{k}x{n}, {threads} threads: {diff}");
                    let again = pool.install(|| matmul(x.clone(), weight));
                    assert_eq!(
                        to_f32_vec(split),
                        to_f32_vec(again),
                        "{rows}x{k}x{n}, {threads} threads"
                    );
                }
            }
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
