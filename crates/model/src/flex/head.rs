//! `log_softmax(h W)[target]` per row, with its own backward pass on flex: the output head's
//! log-probs, the largest elementwise work of a training step (`[rows, vocab]` values).
//!
//! Autodiff through the log-softmax records a max, a subtraction, an `exp`, a sum, a `log` and a
//! gather, and runs their backward passes over `[rows, vocab]` buffers one at a time on one
//! thread. Here each row is one vectorised pass on the rayon pool that leaves the residual
//! `G = onehot(target) - softmax(h W)` in the logits' buffer; the gradients are then
//! `dh = (g G) W^T` and `dW = h^T (g G)` for the upstream per-row gradient `g`.
//! - A trainable head keeps `G` (`[rows, vocab]`, once: autodiff keeps several such tensors).
//! - A frozen head (LoRA, a reference model) computes `D = G W^T` at once, a chunk of rows at a
//!   time, and keeps only `D` (`[rows, hidden]`): the backward pass is then `dh = g D`.
//! - Without a tracked input, only the log-probs, a chunk of rows at a time.
//!
//! Row sums are accumulated in fixed lanes ([`log_sum_exp`]), so their order does not depend on
//! the vector width.

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::tensor::{Int, Tensor};
use burn_autodiff::Autodiff;
use burn_autodiff::checkpoint::base::Checkpointer;
use burn_autodiff::checkpoint::strategy::NoCheckpointing;
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{Backward, Ops, OpsKind};
use rayon::prelude::*;

use super::math::{exp, log_sum_exp, vectorised};
use super::product::product;
use super::{Primitive, primitive, tensor, values};

/// Elements of one chunk's `[rows, vocab]` logits when only `[rows, hidden]` results are kept
/// (4 Mi floats, 16 MiB).
const CHUNK_ELEMENTS: usize = 1 << 22;
/// The fewest rows per chunk: each chunk reads the whole head weight (twice with a gradient).
const MIN_CHUNK_ROWS: usize = 64;

/// The log-probs of `targets` (`[rows]`) under `hidden` `[rows, hidden]` through the head
/// `weight` `[hidden, vocab]`, `[rows]`, differentiable in both, when both are f32 tensors on
/// flex; `None` elsewhere (Burn's ops then compute it).
pub fn head_logprobs(
    hidden: &Tensor<2>,
    weight: &Tensor<2>,
    targets: &Tensor<1, Int>,
) -> Option<Tensor<1>> {
    let (rows, vocab) = (hidden.dims()[0], weight.dims()[1]);
    assert_eq!(targets.dims(), [rows], "one target per hidden row");
    let ids = || -> Vec<usize> {
        let ids: Vec<usize> = targets
            .to_data()
            .iter::<i64>()
            .map(|id| id as usize)
            .collect();
        assert!(ids.iter().all(|&id| id < vocab), "targets in 0..{vocab}");
        ids
    };
    match (primitive(hidden)?, primitive(weight)?) {
        (Primitive::Plain(h), Primitive::Plain(w)) => {
            let (lp, _) = chunked(&h, &w, &ids(), false);
            Some(Tensor::from_primitive::<Flex>(tensor(lp, [rows])))
        }
        (Primitive::Tracked(h), Primitive::Tracked(w)) => {
            let (hp, wp) = (h.primitive().clone(), w.primitive().clone());
            let ids = ids();
            let (lp, state) = if w.is_tracked() {
                let mut residual = product(&hp, &wp);
                let lp = log_softmax_rows(&mut residual, &ids, true);
                let state = TrainableState {
                    hidden: hp,
                    weight: wp,
                    residual,
                };
                (lp, Some(HeadState::Trainable(Box::new(state))))
            } else if h.is_tracked() {
                let (lp, d) = chunked(&hp, &wp, &ids, true);
                (lp, Some(HeadState::Frozen(d.expect("asked for D"))))
            } else {
                (chunked(&hp, &wp, &ids, false).0, None)
            };
            let out = match HeadBackward
                .prepare::<NoCheckpointing>([h.node(), w.node()])
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(prep) => {
                    prep.finish(state.expect("a tracked input"), tensor(lp, [rows]))
                }
                OpsKind::UnTracked(prep) => prep.finish(tensor(lp, [rows])),
            };
            Some(Tensor::from_primitive::<Autodiff<Flex>>(out))
        }
        _ => None,
    }
}

/// What the backward pass reads.
#[derive(Debug, Clone)]
enum HeadState {
    /// `D = G W^T`, `[rows, hidden]`: the hidden states' gradient per unit of upstream gradient.
    Frozen(FlexTensor),
    /// The inputs and the residual of a trainable head.
    Trainable(Box<TrainableState>),
}

/// What the backward pass through a trainable head reads.
#[derive(Debug, Clone)]
struct TrainableState {
    hidden: FlexTensor,
    weight: FlexTensor,
    /// `G = onehot(target) - softmax(h W)`, `[rows, vocab]`.
    residual: FlexTensor,
}

/// The backward pass of [`head_logprobs`] (see the module doc).
#[derive(Debug)]
struct HeadBackward;

impl Backward<Flex, 2> for HeadBackward {
    type State = HeadState;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<Flex>(&ops.node).to_contiguous();
        let g = values(&grad);
        let [hidden_parent, weight_parent] = ops.parents;
        match ops.state {
            HeadState::Frozen(d) => {
                if let Some(parent) = hidden_parent {
                    grads.register::<Flex>(parent.id, scale_rows(d, g));
                }
            }
            HeadState::Trainable(state) => {
                let TrainableState {
                    hidden,
                    weight,
                    residual,
                } = *state;
                let scaled = scale_rows(residual, g);
                if let Some(parent) = hidden_parent {
                    grads.register::<Flex>(parent.id, product(&scaled, &weight.transpose(0, 1)));
                }
                if let Some(parent) = weight_parent {
                    grads.register::<Flex>(parent.id, product(&hidden.transpose(0, 1), &scaled));
                }
            }
        }
    }
}

/// The log-probs, a chunk of rows at a time, and with `with_d`, `D = G W^T`.
fn chunked(
    hidden: &FlexTensor,
    weight: &FlexTensor,
    ids: &[usize],
    with_d: bool,
) -> (Vec<f32>, Option<FlexTensor>) {
    let vocab = weight.layout().shape()[1];
    let chunk_rows = (CHUNK_ELEMENTS / vocab.max(1)).max(MIN_CHUNK_ROWS);
    chunks_of(hidden, weight, ids, with_d, chunk_rows)
}

/// [`chunked`] with `chunk_rows` rows per chunk.
fn chunks_of(
    hidden: &FlexTensor,
    weight: &FlexTensor,
    ids: &[usize],
    with_d: bool,
    chunk_rows: usize,
) -> (Vec<f32>, Option<FlexTensor>) {
    let rows = ids.len();
    let weight_t = weight.transpose(0, 1);
    let mut lp = Vec::with_capacity(rows);
    let mut d = Vec::with_capacity(if with_d {
        rows * hidden.layout().shape()[1]
    } else {
        0
    });
    for start in (0..rows).step_by(chunk_rows) {
        let n = chunk_rows.min(rows - start);
        let mut logits = product(&hidden.narrow(0, start, n), weight);
        lp.extend(log_softmax_rows(
            &mut logits,
            &ids[start..start + n],
            with_d,
        ));
        if with_d {
            let chunk = product(&logits, &weight_t);
            d.extend_from_slice(values(&chunk));
        }
    }
    let width = hidden.layout().shape()[1];
    let d = with_d.then(|| tensor(d, [rows, width]));
    (lp, d)
}

/// `log_softmax(row)[target]` of each row of `logits` (contiguous `[rows, vocab]`); with
/// `residual`, the rows are overwritten by `onehot(target) - softmax(row)`.
fn log_softmax_rows(logits: &mut FlexTensor, ids: &[usize], residual: bool) -> Vec<f32> {
    let vocab = logits.layout().shape()[1];
    let values = logits.storage_mut::<f32>();
    let mut lp = vec![0.0; ids.len()];
    if vocab == 0 {
        return lp;
    }
    values
        .par_chunks_mut(vocab)
        .zip(lp.par_iter_mut())
        .zip(ids.par_iter())
        .for_each(|((row, lp), &id)| {
            vectorised(
                #[inline(always)]
                || {
                    let lse = log_sum_exp(row);
                    *lp = row[id] - lse;
                    if residual {
                        for x in row.iter_mut() {
                            *x = -exp(*x - lse);
                        }
                        row[id] += 1.0;
                    }
                },
            )
        });
    lp
}

/// Row `i` of `values` (`[rows, n]`, ours: contiguous from offset 0) times `scale[i]`, in place.
fn scale_rows(mut values: FlexTensor, scale: &[f32]) -> FlexTensor {
    let width = values.layout().shape()[1];
    if width > 0 {
        values
            .storage_mut::<f32>()
            .par_chunks_mut(width)
            .zip(scale.par_iter())
            .for_each(|(row, &s)| row.iter_mut().for_each(|x| *x *= s));
    }
    values
}

#[cfg(test)]
mod tests {
    use bpo_testkit::{hashed_values, max_abs_diff};
    use burn::tensor::{Device, TensorData};

    use super::*;
    use crate::host::to_f32_vec;
    use crate::logprobs::gather_logprobs;

    const ROWS: usize = 11;
    const WIDTH: usize = 16;
    const VOCAB: usize = 37;

    /// Hidden states `[ROWS, WIDTH]`, a head `[WIDTH, VOCAB]` whose logits span about
    /// `logit_scale` (tied: a transposed view of a `[VOCAB, WIDTH]` embedding), and targets.
    fn inputs(logit_scale: f32, tied: bool) -> (Tensor<2>, Tensor<2>, Tensor<1, Int>) {
        let device = Device::flex();
        let hidden = TensorData::new(hashed_values(ROWS * WIDTH, 1), [ROWS, WIDTH]);
        let w: Vec<f32> = hashed_values(WIDTH * VOCAB, 2)
            .iter()
            .map(|v| v * logit_scale)
            .collect();
        let weight = if tied {
            Tensor::<2>::from_data(TensorData::new(w, [VOCAB, WIDTH]), &device).transpose()
        } else {
            Tensor::from_data(TensorData::new(w, [WIDTH, VOCAB]), &device)
        };
        let ids: Vec<i64> = (0..ROWS).map(|i| (i * 7 % VOCAB) as i64).collect();
        let targets = Tensor::from_data(TensorData::new(ids, [ROWS]), &device);
        (Tensor::from_data(hidden, &device), weight, targets)
    }

    /// The log-probs and the gradients of `sum(coeff * lp)` in the inputs that `track` marks,
    /// by our op or by Burn's autodiff through the logits.
    fn value_and_grads(
        ours: bool,
        track: [bool; 2],
        logit_scale: f32,
        tied: bool,
    ) -> (Vec<f32>, Option<Vec<f32>>, Option<Vec<f32>>) {
        let (hidden, weight, targets) = inputs(logit_scale, tied);
        let on_graph = |t: Tensor<2>, tracked: bool| {
            let t = t.autodiff();
            if tracked { t.require_grad() } else { t }
        };
        let (hidden, weight) = (on_graph(hidden, track[0]), on_graph(weight, track[1]));
        let targets = targets.autodiff();
        let lp = if ours {
            head_logprobs(&hidden, &weight, &targets).expect("flex tensors")
        } else {
            // Burn's own matmul, not ours.
            let logits = hidden.clone().matmul(weight.clone()).unsqueeze();
            gather_logprobs(logits, targets.unsqueeze()).squeeze_dim(0)
        };
        if track == [false, false] {
            assert!(!lp.is_tracked());
            return (to_f32_vec(lp.inner()), None, None);
        }
        let coeff: Vec<f32> = (0..ROWS).map(|i| 0.3 * i as f32 - 1.0).collect();
        let coeff = Tensor::<1>::from_data(TensorData::new(coeff, [ROWS]), &Device::flex());
        let grads = (lp.clone() * coeff.autodiff()).sum().backward();
        let grad = |t: &Tensor<2>| t.grad(&grads).map(to_f32_vec);
        (to_f32_vec(lp.inner()), grad(&hidden), grad(&weight))
    }

    #[test]
    fn logprobs_and_gradients_equal_autodiff_through_the_logits() {
        // Frozen head, trainable head (also tied), trainable head only, nothing tracked.
        for (track, tied) in [
            ([true, false], false),
            ([true, true], false),
            ([true, true], true),
            ([false, true], false),
            ([false, false], true),
        ] {
            let (value, grad_h, grad_w) = value_and_grads(true, track, 3.0, tied);
            let (expected, exp_h, exp_w) = value_and_grads(false, track, 3.0, tied);
            assert!(max_abs_diff(&value, &expected) < 1e-5, "{track:?} {tied}");
            for (grad, exp) in [(grad_h, exp_h), (grad_w, exp_w)] {
                assert_eq!(grad.is_some(), exp.is_some(), "{track:?}");
                if let (Some(grad), Some(exp)) = (grad, exp) {
                    assert!(max_abs_diff(&grad, &exp) < 1e-5, "{track:?} {tied}");
                }
            }
        }
    }

    #[test]
    fn exact_far_below_the_softmax_floor_and_without_autodiff() {
        // Logits spread over ~300 nats: most targets' probabilities underflow f32.
        let (hidden, weight, targets) = inputs(300.0, false);
        let ours = to_f32_vec(head_logprobs(&hidden, &weight, &targets).unwrap());
        let logits = hidden.matmul(weight).unsqueeze();
        let burns = to_f32_vec(gather_logprobs(logits, targets.unsqueeze()));
        assert!(burns.iter().any(|&lp| lp < -200.0), "{burns:?}");
        let scale = burns.iter().fold(1.0f32, |m, v| m.max(v.abs()));
        assert!(
            max_abs_diff(&ours, &burns) < 1e-6 * scale,
            "{ours:?} vs {burns:?}"
        );
    }

    #[test]
    fn chunks_give_the_same_logprobs_and_hidden_gradients() {
        let (hidden, weight, _) = inputs(3.0, false);
        let flex = |t: Tensor<2>| t.try_into_primitive::<Flex>().unwrap();
        let (h, w) = (flex(hidden), flex(weight));
        let ids: Vec<usize> = (0..ROWS).map(|i| i * 7 % VOCAB).collect();
        let (whole, d) = chunks_of(&h, &w, &ids, true, ROWS);
        let d = d.unwrap().as_slice::<f32>().unwrap().to_vec();
        for chunk_rows in [1, 3, 4] {
            let (lp, dc) = chunks_of(&h, &w, &ids, true, chunk_rows);
            assert!(max_abs_diff(&lp, &whole) < 1e-6, "{chunk_rows}");
            let dc = dc.unwrap().as_slice::<f32>().unwrap().to_vec();
            assert!(max_abs_diff(&dc, &d) < 1e-6, "{chunk_rows}");
        }
    }
}
