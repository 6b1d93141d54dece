//! Attention, `softmax(q kᵀ · scale, masked) v`, as one operation with its own backward pass on
//! flex, for grouped-query heads and the masks of [`KeyRanges`].
//!
//! Through Burn's autodiff, attention is its decomposed fallback: the scores, the mask, the
//! softmax (max, subtraction, `exp`, sum, division) and both products as separate operations,
//! most of them single-threaded passes over `[batch, heads, queries, keys]` buffers, several
//! kept for the backward pass, and the dense mask built on the host for every chunk. Here the
//! queries of each head go in blocks of [`BLOCK`]: a block's scores against the keys any of its
//! queries sees (causal, padding and window spans skip the rest) are one matrix product, the
//! masked softmax one vectorised pass, the output one more product; only the log-sum-exp of
//! each query's scores is kept besides the inputs and the output, and the backward pass
//! recomputes the probabilities from it, block by block (flash attention's scheme, with a
//! block's whole key span in one tile).
//!
//! Each value is computed by one task in a fixed order (single-threaded products, fixed-lane
//! sums), so the results do not depend on the thread count: the forward pass runs a task per
//! (row, head, block of queries), the backward one per (row, key/value head), which owns that
//! head's key and value gradients and sums its query heads' contributions in order, without
//! repeating keys or values.

use std::sync::Arc;

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::tensor::Tensor;
use burn_autodiff::Autodiff;
use burn_autodiff::checkpoint::base::Checkpointer;
use burn_autodiff::checkpoint::strategy::NoCheckpointing;
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{Backward, Ops, OpsKind};
use rayon::prelude::*;

use super::math::{exp, lane_sum, vectorised};
use super::product::{View, product_into};
use super::{Primitive, Tracked, primitive, tensor, values};
use crate::mask::KeyRanges;

/// Queries per block: a block's scores, `[BLOCK, keys]`, are one product (256 KiB at 1024
/// keys).
const BLOCK: usize = 64;

/// The sizes of one attention call.
#[derive(Debug, Clone, Copy)]
struct Dims {
    batch: usize,
    heads: usize,
    kv_heads: usize,
    /// Queries per row.
    len: usize,
    /// Keys per row.
    keys: usize,
    /// Width of a head.
    dim: usize,
}

impl Dims {
    /// Query heads per key/value head.
    fn group(&self) -> usize {
        self.heads / self.kv_heads
    }
}

/// `softmax(q kᵀ · scale)` over the keys `mask` allows, times `v`: `[batch, heads, len, dim]`
/// for `q` `[batch, heads, len, dim]` and `k`, `v` `[batch, kv_heads, keys, dim]` (query head
/// `h` reads key/value head `h / (heads / kv_heads)`), differentiable in all three. Ours when
/// the three are f32 tensors on flex, all with autodiff or all without (see the module doc);
/// `None` elsewhere, where the caller takes Burn's attention.
pub fn attention(
    q: &Tensor<4>,
    k: &Tensor<4>,
    v: &Tensor<4>,
    mask: &Arc<KeyRanges>,
    scale: f64,
) -> Option<Tensor<4>> {
    let [batch, heads, len, dim] = q.dims();
    let [_, kv_heads, keys, _] = k.dims();
    let fits = k.dims() == v.dims()
        && k.dims() == [batch, kv_heads, keys, dim]
        && kv_heads > 0
        && heads % kv_heads == 0
        && len * dim > 0;
    if !fits {
        return None;
    }
    assert_eq!(
        (mask.batch, mask.len, mask.keys()),
        (batch, len, keys),
        "the key ranges of another chunk"
    );
    let dims = Dims {
        batch,
        heads,
        kv_heads,
        len,
        keys,
        dim,
    };
    let scale = scale as f32;
    match (primitive(q)?, primitive(k)?, primitive(v)?) {
        (Primitive::Plain(q), Primitive::Plain(k), Primitive::Plain(v)) => {
            let (q, k, v) = (q.to_contiguous(), k.to_contiguous(), v.to_contiguous());
            let inputs = [values(&q), values(&k), values(&v)];
            let (out, _) = forward(inputs, dims, mask, scale);
            Some(Tensor::from_primitive::<Flex>(tensor(
                out,
                [batch, heads, len, dim],
            )))
        }
        (Primitive::Tracked(q), Primitive::Tracked(k), Primitive::Tracked(v)) => Some(
            Tensor::from_primitive::<Autodiff<Flex>>(tracked([q, k, v], dims, mask, scale)),
        ),
        _ => None,
    }
}

/// What the backward pass reads: the inputs, the output and each query's log-sum-exp.
#[derive(Debug, Clone)]
struct State {
    /// q, k and v, contiguous.
    inputs: [FlexTensor; 3],
    out: FlexTensor,
    /// `[batch, heads, len]`.
    log_sum_exp: Vec<f32>,
    mask: Arc<KeyRanges>,
    dims: Dims,
    scale: f32,
}

/// The backward pass of [`attention`] (see the module doc), each gradient only for an input
/// that needs it.
#[derive(Debug)]
struct AttentionBackward;

impl Backward<Flex, 3> for AttentionBackward {
    type State = State;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let state = ops.state;
        let grad = grads.consume::<Flex>(&ops.node).to_contiguous();
        let need = ops.parents.each_ref().map(Option::is_some);
        let grads_of = backward(&state, values(&grad), need);
        for ((parent, grad), input) in ops.parents.into_iter().zip(grads_of).zip(&state.inputs) {
            if let (Some(parent), Some(grad)) = (parent, grad) {
                grads.register::<Flex>(parent.id, tensor(grad, input.layout().shape().clone()));
            }
        }
    }
}

/// [`forward`] recorded by autodiff.
fn tracked(inputs: [Tracked; 3], dims: Dims, mask: &Arc<KeyRanges>, scale: f32) -> Tracked {
    let plain = inputs.each_ref().map(|t| t.primitive().to_contiguous());
    let (out, log_sum_exp) = forward(plain.each_ref().map(values), dims, mask, scale);
    let out = tensor(out, [dims.batch, dims.heads, dims.len, dims.dim]);
    let [q, k, v] = &inputs;
    match AttentionBackward
        .prepare::<NoCheckpointing>([q.node(), k.node(), v.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let state = State {
                inputs: plain,
                out: out.clone(),
                log_sum_exp,
                mask: mask.clone(),
                dims,
                scale,
            };
            prep.finish(state, out)
        }
        OpsKind::UnTracked(prep) => prep.finish(out),
    }
}

/// A block of consecutive queries of one batch row, `first..first + n`, and the keys any of
/// them may see, `span.0..=span.1`.
struct Block {
    row: usize,
    first: usize,
    n: usize,
    span: (usize, usize),
}

impl Block {
    fn new(mask: &KeyRanges, row: usize, first: usize, n: usize) -> Self {
        let ranges = &mask.ranges[row * mask.len + first..][..n];
        let lo = ranges
            .iter()
            .map(|r| r.0)
            .min()
            .expect("a block has queries");
        let hi = ranges
            .iter()
            .map(|r| r.1)
            .max()
            .expect("a block has queries");
        Block {
            row,
            first,
            n,
            span: (lo, hi),
        }
    }

    /// Keys in the span.
    fn width(&self) -> usize {
        self.span.1 - self.span.0 + 1
    }

    /// The span's rows of one head's `[keys, dim]` keys or values.
    fn keys_of<'a>(&self, head: &'a [f32], dim: usize) -> &'a [f32] {
        &head[self.span.0 * dim..(self.span.1 + 1) * dim]
    }

    /// Turns the block's scores `[n, width]` into `P`: for query `i`, `exp(score * scale -
    /// shift(i))` on the keys it may see, exactly 0 elsewhere. With `shift: None`, the shift is
    /// the largest scaled score and each row is then normalised (the forward pass); the row's
    /// log-sum-exp is returned by `out(i, lse)`.
    fn probabilities(
        &self,
        scores: &mut [f32],
        mask: &KeyRanges,
        scale: f32,
        shift: Option<&[f32]>,
        mut out: impl FnMut(usize, f32),
    ) {
        let (width, keys) = (self.width(), mask.keys());
        let key_real = &mask.key_real[self.row * keys..][self.span.0..=self.span.1];
        for (i, row) in scores.chunks_exact_mut(width).enumerate() {
            let query = self.row * mask.len + self.first + i;
            let (lo, hi) = mask.ranges[query];
            let (lo, hi) = (lo - self.span.0, hi - self.span.0);
            let padding = !mask.query_real[query];
            let lse = vectorised(
                #[inline(always)]
                || {
                    let mut max = f32::NEG_INFINITY;
                    for (j, s) in row.iter_mut().enumerate() {
                        let seen = lo <= j && j <= hi && (padding || key_real[j]);
                        *s = if seen { *s * scale } else { f32::NEG_INFINITY };
                        max = max.max(*s);
                    }
                    let by = shift.map_or(max, |lse| lse[i]);
                    for s in row.iter_mut() {
                        *s = if *s == f32::NEG_INFINITY {
                            0.0
                        } else {
                            exp(*s - by)
                        };
                    }
                    if shift.is_some() {
                        return by;
                    }
                    let sum = lane_sum(row.len(), |j| row[j]);
                    let inverse = 1.0 / sum;
                    for s in row.iter_mut() {
                        *s *= inverse;
                    }
                    max + sum.ln()
                },
            );
            out(i, lse);
        }
    }
}

/// The output `[batch, heads, len, dim]` and the log-sum-exp of each query's scaled scores
/// `[batch, heads, len]`.
fn forward(
    [q, k, v]: [&[f32]; 3],
    dims: Dims,
    mask: &KeyRanges,
    scale: f32,
) -> (Vec<f32>, Vec<f32>) {
    let Dims { len, keys, dim, .. } = dims;
    let mut out = vec![0.0; dims.batch * dims.heads * len * dim];
    let mut log_sum_exp = vec![0.0; dims.batch * dims.heads * len];
    out.par_chunks_mut(len * dim)
        .zip(log_sum_exp.par_chunks_mut(len))
        .enumerate()
        .for_each(|(head_row, (out, lse))| {
            let (row, head) = (head_row / dims.heads, head_row % dims.heads);
            let kv = (row * dims.kv_heads + head / dims.group()) * keys * dim;
            let (k, v) = (&k[kv..kv + keys * dim], &v[kv..kv + keys * dim]);
            let q = &q[head_row * len * dim..(head_row + 1) * len * dim];
            out.par_chunks_mut(BLOCK * dim)
                .zip(lse.par_chunks_mut(BLOCK))
                .enumerate()
                .for_each_init(Vec::new, |scores, (i, (out, lse))| {
                    let block = Block::new(mask, row, i * BLOCK, lse.len());
                    let (n, width) = (block.n, block.width());
                    scores.resize(n * width, 0.0);
                    let q = View::rows(&q[block.first * dim..(block.first + n) * dim], dim);
                    let k = View::transposed(block.keys_of(k, dim), dim);
                    product_into(scores, (n, width, dim), q, k, false);
                    block.probabilities(scores, mask, scale, None, |i, value| lse[i] = value);
                    let v = View::rows(block.keys_of(v, dim), dim);
                    product_into(out, (n, dim, width), View::rows(scores, width), v, false);
                });
        });
    (out, log_sum_exp)
}

/// The gradients of q, k and v (those `need` asks for) given the output's gradient `d_out`:
/// with `P` recomputed from the log-sum-exp, `dV = Pᵀ dO`, `dS = P ∘ (dO Vᵀ - rowsum(dO ∘ O))`,
/// `dQ = scale · dS K`, `dK = scale · dSᵀ Q`.
fn backward(state: &State, d_out: &[f32], need: [bool; 3]) -> [Option<Vec<f32>>; 3] {
    let State {
        inputs,
        out,
        log_sum_exp,
        mask,
        dims,
        scale,
    } = state;
    let [q, k, v] = inputs.each_ref().map(values);
    let o = values(out);
    let Dims { len, keys, dim, .. } = *dims;
    let group = dims.group();
    let [need_q, need_k, need_v] = need;
    // One task per (row, key/value head): its query heads' dQ, and its dK and dV.
    let parts: Vec<[Vec<f32>; 3]> = (0..dims.batch * dims.kv_heads)
        .into_par_iter()
        .map(|kv_row| {
            let row = kv_row / dims.kv_heads;
            let kv = kv_row * keys * dim;
            let (k, v) = (&k[kv..kv + keys * dim], &v[kv..kv + keys * dim]);
            let sized = |needed: bool, n: usize| if needed { vec![0.0; n] } else { Vec::new() };
            let mut dq = sized(need_q, group * len * dim);
            let mut dk = sized(need_k, keys * dim);
            let mut dv = sized(need_v, keys * dim);
            let (mut p, mut ds) = (Vec::new(), Vec::new());
            for g in 0..group {
                let head = kv_row * group + g;
                let at = head * len * dim;
                let (q, o, d_out) = (&q[at..], &o[at..], &d_out[at..]);
                let lse = &log_sum_exp[head * len..(head + 1) * len];
                for first in (0..len).step_by(BLOCK) {
                    let block = Block::new(mask, row, first, BLOCK.min(len - first));
                    let (n, width, lo) = (block.n, block.width(), block.span.0);
                    let rows = first * dim..(first + n) * dim;
                    let (q_blk, o_blk, do_blk) = (&q[rows.clone()], &o[rows.clone()], &d_out[rows]);
                    p.resize(n * width, 0.0);
                    let k_span = block.keys_of(k, dim);
                    product_into(
                        &mut p,
                        (n, width, dim),
                        View::rows(q_blk, dim),
                        View::transposed(k_span, dim),
                        false,
                    );
                    block.probabilities(&mut p, mask, *scale, Some(&lse[first..]), |_, _| ());
                    if need_v {
                        product_into(
                            &mut dv[lo * dim..],
                            (width, dim, n),
                            View::transposed(&p, width),
                            View::rows(do_blk, dim),
                            true,
                        );
                    }
                    if !(need_q || need_k) {
                        continue;
                    }
                    ds.resize(n * width, 0.0);
                    product_into(
                        &mut ds,
                        (n, width, dim),
                        View::rows(do_blk, dim),
                        View::transposed(block.keys_of(v, dim), dim),
                        false,
                    );
                    for (i, (ds, p)) in ds
                        .chunks_exact_mut(width)
                        .zip(p.chunks_exact(width))
                        .enumerate()
                    {
                        let (o, d) = (&o_blk[i * dim..][..dim], &do_blk[i * dim..][..dim]);
                        vectorised(
                            #[inline(always)]
                            || {
                                let delta = lane_sum(dim, |c| o[c] * d[c]);
                                for (ds, p) in ds.iter_mut().zip(p) {
                                    *ds = p * (*ds - delta) * *scale;
                                }
                            },
                        );
                    }
                    if need_q {
                        product_into(
                            &mut dq[(g * len + first) * dim..],
                            (n, dim, width),
                            View::rows(&ds, width),
                            View::rows(k_span, dim),
                            false,
                        );
                    }
                    if need_k {
                        product_into(
                            &mut dk[lo * dim..],
                            (width, dim, n),
                            View::transposed(&ds, width),
                            View::rows(q_blk, dim),
                            true,
                        );
                    }
                }
            }
            [dq, dk, dv]
        })
        .collect();
    let mut grads = need.map(|needed| needed.then(Vec::new));
    for part in parts {
        for (grad, part) in grads.iter_mut().zip(part) {
            if let Some(grad) = grad {
                grad.extend_from_slice(&part);
            }
        }
    }
    grads
}

#[cfg(test)]
#[path = "attention_tests.rs"]
mod tests;
