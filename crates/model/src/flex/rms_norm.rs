//! RMSNorm, `y = x / sqrt(mean(x^2) + eps) * w` over the last axis, as one operation with its
//! own backward pass on flex.
//!
//! Through Burn's autodiff it is six operations forward (square, mean, add, sqrt, divide,
//! scale) and about twice as many backward, each a single-threaded pass with a fresh buffer.
//! Here each way is one pass over the rows on the rayon pool, saving the input and one
//! `1 / rms` per row. With `r = 1 / rms` and `g = dy * w`:
//! `dx = r g - x r^3 mean(g x)` and `dw = sum over rows of dy x r`.

use std::mem::MaybeUninit;

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::tensor::{Shape, Tensor};
use burn_autodiff::Autodiff;
use burn_autodiff::checkpoint::base::Checkpointer;
use burn_autodiff::checkpoint::strategy::NoCheckpointing;
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{Backward, Ops, OpsKind};
use rayon::prelude::*;

use super::math::{lane_sum, vectorised};
use super::{Primitive, primitive, tensor, values};

/// Rows per task of the weight gradient's partial sums (fixed, so that the sum's order, and
/// its bits, do not depend on the thread count).
const ROWS_PER_PARTIAL: usize = 64;

/// RMSNorm of `x` over its last axis with scale `weight`, differentiable in both; ours on flex
/// f32 tensors (see the module doc), Burn's ops elsewhere.
pub fn rms_norm<const D: usize>(x: Tensor<D>, weight: Tensor<1>, eps: f64) -> Tensor<D> {
    let shape = x.shape();
    let width = x.dims()[D - 1];
    if weight.dims() == [width] && width > 0 {
        match (primitive(&x), primitive(&weight)) {
            (Some(Primitive::Plain(xp)), Some(Primitive::Plain(w))) => {
                let xp = rows(xp, width);
                let (y, _) = forward(&xp, &w.to_contiguous(), eps as f32);
                return Tensor::from_primitive::<Flex>(y.reshape(shape));
            }
            (Some(Primitive::Tracked(xt)), Some(Primitive::Tracked(wt))) => {
                let xp = rows(xt.primitive().clone(), width);
                let wp = wt.primitive().to_contiguous();
                let (y, inv_rms) = forward(&xp, &wp, eps as f32);
                let out = match NormBackward
                    .prepare::<NoCheckpointing>([xt.node(), wt.node()])
                    .compute_bound()
                    .stateful()
                {
                    OpsKind::Tracked(prep) => {
                        prep.finish((xp, wp, inv_rms, shape.clone()), y.reshape(shape))
                    }
                    OpsKind::UnTracked(prep) => prep.finish(y.reshape(shape)),
                };
                return Tensor::from_primitive::<Autodiff<Flex>>(out);
            }
            _ => {}
        }
    }
    let rms = (x.clone().square().mean_dim(D - 1) + eps).sqrt();
    (x / rms) * weight.unsqueeze()
}

/// The backward pass of [`rms_norm`] (formulas in the module doc).
#[derive(Debug)]
struct NormBackward;

impl Backward<Flex, 2> for NormBackward {
    /// The input as contiguous `[rows, width]`, the weight, `1 / rms` per row, the input's
    /// shape.
    type State = (FlexTensor, FlexTensor, Vec<f32>, Shape);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (x, w, inv_rms, shape) = ops.state;
        let grad = grads.consume::<Flex>(&ops.node);
        let width = x.layout().shape()[1];
        let dy = rows(grad, width);
        let (x, w, dy) = (values(&x), values(&w), values(&dy));
        let [x_parent, w_parent] = ops.parents;
        if let Some(parent) = x_parent {
            // SAFETY: the second loop writes every element of the row.
            let dx = unsafe {
                row_map(x.len(), width, |row, out| {
                    let at = row * width;
                    let (x, dy, r) = (&x[at..at + width], &dy[at..at + width], inv_rms[row]);
                    vectorised(
                        #[inline(always)]
                        || {
                            let dot = lane_sum(width, |i| dy[i] * w[i] * x[i]);
                            let c = r * r * r * dot / width as f32;
                            for i in 0..width {
                                out[i].write(r * (dy[i] * w[i]) - x[i] * c);
                            }
                        },
                    )
                })
            };
            grads.register::<Flex>(
                parent.id,
                tensor(dx, [x.len() / width, width]).reshape(shape),
            );
        }
        if let Some(parent) = w_parent {
            let partials: Vec<Vec<f32>> = inv_rms
                .par_chunks(ROWS_PER_PARTIAL)
                .enumerate()
                .map(|(block, inv_rms)| {
                    let mut sum = vec![0.0f32; width];
                    for (j, &r) in inv_rms.iter().enumerate() {
                        let at = (block * ROWS_PER_PARTIAL + j) * width;
                        let (x, dy) = (&x[at..at + width], &dy[at..at + width]);
                        for i in 0..width {
                            sum[i] += dy[i] * x[i] * r;
                        }
                    }
                    sum
                })
                .collect();
            let mut dw = vec![0.0f32; width];
            for partial in partials {
                dw.iter_mut().zip(partial).for_each(|(s, p)| *s += p);
            }
            grads.register::<Flex>(parent.id, tensor(dw, [width]));
        }
    }
}

/// `y` and `1 / rms` per row of `x` (contiguous `[rows, width]`).
fn forward(x: &FlexTensor, w: &FlexTensor, eps: f32) -> (FlexTensor, Vec<f32>) {
    let width = x.layout().shape()[1];
    let (xs, w) = (values(x), values(w));
    let count = xs.len() / width;
    let mut inv_rms = vec![0.0f32; count];
    // SAFETY: the loop writes every element of the row.
    let y = unsafe {
        row_map_with(xs.len(), width, &mut inv_rms, |row, out, inv_rms| {
            let x = &xs[row * width..(row + 1) * width];
            vectorised(
                #[inline(always)]
                || {
                    let squares = lane_sum(width, |i| x[i] * x[i]);
                    let rms = (squares / width as f32 + eps).sqrt();
                    *inv_rms = 1.0 / rms;
                    for i in 0..width {
                        out[i].write(x[i] / rms * w[i]);
                    }
                },
            )
        })
    };
    (tensor(y, [count, width]), inv_rms)
}

/// A new `[len / width, width]` vector filled row by row on the rayon pool.
///
/// # Safety
/// `fill` must write every element of each row it is given.
unsafe fn row_map(
    len: usize,
    width: usize,
    fill: impl Fn(usize, &mut [MaybeUninit<f32>]) + Sync,
) -> Vec<f32> {
    let mut unused = vec![0.0f32; len / width];
    // SAFETY: the caller's contract.
    unsafe { row_map_with(len, width, &mut unused, |row, out, _| fill(row, out)) }
}

/// [`row_map`] that also sets one value per row in `per_row`.
///
/// # Safety
/// As [`row_map`].
unsafe fn row_map_with(
    len: usize,
    width: usize,
    per_row: &mut [f32],
    fill: impl Fn(usize, &mut [MaybeUninit<f32>], &mut f32) + Sync,
) -> Vec<f32> {
    let mut out = Vec::with_capacity(len);
    out.spare_capacity_mut()[..len]
        .par_chunks_mut(width)
        .zip(per_row.par_iter_mut())
        .enumerate()
        .for_each(|(row, (out, value))| fill(row, out, value));
    // SAFETY: `fill` wrote every element of every row (the caller's contract).
    unsafe { out.set_len(len) };
    out
}

/// `tensor` as contiguous `[rows, width]`.
fn rows(tensor: FlexTensor, width: usize) -> FlexTensor {
    let count = tensor.layout().shape().num_elements() / width;
    tensor.to_contiguous().reshape([count, width].into())
}
