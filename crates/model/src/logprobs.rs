//! `log p(target | h)` of target tokens through the output head: hidden states `[batch, len,
//! hidden]`, head weight `[hidden, vocab]`, targets `[batch, len]`.
//!
//! A frozen head (LoRA, a reference model, evaluation) takes the fused path: the log-probs and
//! their gradient with respect to the hidden state, `D = W (onehot(target) - softmax(h W))`, are
//! computed together on the backend without autodiff, a chunk of rows at a time, so the
//! `[rows, vocab]` logits exist for one chunk only. The autodiff graph then holds one product
//! per row, `lp = (h - detach(h)).D + value`, whose value is `value` and whose gradient in `h`
//! is `D` (the fused linear cross-entropy of Liger-Kernel). With a tracked `h` it takes the same
//! two large matrix products as autodiff through the logits and a backward pass (the logits,
//! and the hidden gradient, computed whether or not a backward pass follows), and none of the
//! elementwise passes, allocations and saved tensors over `[rows, vocab]` that autodiff records
//! for the log-softmax; without a tracked `h`, only the logits. A trainable head takes the
//! plain path.
//!
//! On flex, [`head_logprobs`] is [`flex::head_logprobs`]: the same scheme as one operation with
//! its own backward pass, for trainable heads too.

use burn::tensor::activation::softmax;
use burn::tensor::{IndexingUpdateOp, Int, Tensor};

use crate::flex;
use crate::transformer::Transformer;

/// Elements of one chunk's `[rows, vocab]` buffers (4 Mi floats, 16 MiB in f32).
const CHUNK_ELEMENTS: usize = 1 << 22;
/// The fewest rows per chunk: each chunk reads the whole head weight (twice with a gradient),
/// so a large vocabulary must not shrink chunks to a bandwidth-bound handful of rows.
const MIN_CHUNK_ROWS: usize = 64;

/// `log_softmax(logits)[targets]` along the last axis: `[batch, len, vocab]` x `[batch, len]`.
pub fn gather_logprobs(logits: Tensor<3>, targets: Tensor<2, Int>) -> Tensor<2> {
    let max = logits.clone().max_dim(2).detach();
    let shifted = logits - max;
    let lse = shifted.clone().exp().sum_dim(2).log();
    let picked = shifted.gather(2, targets.unsqueeze_dim(2));
    (picked - lse).squeeze_dim(2)
}

/// `log_softmax(hidden @ weight)[targets]`, `[batch, len]`: fused and chunked when `weight` is
/// not tracked by autodiff (see the module doc), else through the full logits. Differentiable
/// in `hidden` (and in a trainable `weight`).
pub fn head_logprobs(hidden: Tensor<3>, weight: Tensor<2>, targets: Tensor<2, Int>) -> Tensor<2> {
    let [batch, len, width] = hidden.dims();
    if batch * len == 0 {
        return Tensor::zeros([batch, len], &hidden.device());
    }
    let rows = hidden.clone().reshape([batch * len, width]);
    if let Some(lp) = flex::head_logprobs(&rows, &weight, &targets.clone().reshape([batch * len])) {
        return lp.reshape([batch, len]);
    }
    let vocab = weight.dims()[1];
    let chunk_rows = (CHUNK_ELEMENTS / vocab.max(1)).max(MIN_CHUNK_ROWS);
    head_logprobs_chunked(hidden, weight, targets, chunk_rows)
}

/// [`head_logprobs`] with `chunk_rows` rows per chunk.
fn head_logprobs_chunked(
    hidden: Tensor<3>,
    weight: Tensor<2>,
    targets: Tensor<2, Int>,
    chunk_rows: usize,
) -> Tensor<2> {
    if weight.is_autodiff() && weight.is_tracked() {
        return gather_logprobs(Transformer::project(hidden, weight), targets);
    }
    let [batch, len, width] = hidden.dims();
    let rows = batch * len;
    let hidden = hidden.reshape([rows, width]);
    let autodiff = hidden.is_autodiff();
    let tracked = autodiff && hidden.is_tracked();
    let constant = hidden.clone().inner();
    let weight = weight.inner();
    let weight_t = tracked.then(|| weight.clone().transpose());
    let targets = targets.inner().reshape([rows, 1]);
    let mut values = Vec::new();
    let mut grads = Vec::new();
    for start in (0..rows).step_by(chunk_rows) {
        let n = chunk_rows.min(rows - start);
        let ids = targets.clone().narrow(0, start, n);
        let logits = flex::matmul(constant.clone().narrow(0, start, n), weight.clone());
        let probs = softmax(logits.clone(), 1);
        // log-sum-exp = max - log(largest probability), which is at least 1/vocab: exact where
        // log(p[target]) would underflow.
        let lse = logits.clone().max_dim(1) - probs.clone().max_dim(1).log();
        values.push(logits.gather(1, ids.clone()) - lse);
        if let Some(weight_t) = &weight_t {
            let ones = Tensor::ones([n, 1], &ids.device());
            let residual = probs.neg().scatter(1, ids, ones, IndexingUpdateOp::Add);
            grads.push(flex::matmul(residual, weight_t.clone()));
        }
    }
    let value = Tensor::cat(values, 0);
    let logprobs = if tracked {
        // Zero in value (no large intermediate to overflow in f16), `D` in gradient.
        let zero = hidden.clone() - hidden.detach();
        (zero * Tensor::cat(grads, 0).autodiff()).sum_dim(1) + value.autodiff()
    } else if autodiff {
        value.autodiff()
    } else {
        value
    };
    logprobs.reshape([batch, len])
}

#[cfg(test)]
mod tests {
    use bpo_testkit::max_abs_diff;
    use burn::tensor::{Device, TensorData};

    use super::*;
    use crate::host::to_f32_vec;

    const ROWS: [usize; 2] = [2, 5];
    const WIDTH: usize = 16;
    const VOCAB: usize = 37;

    /// Deterministic pseudo-random values in about [-1.7, 1.7].
    fn values(n: usize, salt: usize) -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 7919 + salt * 104_729) as f32 * 0.618).sin() * 1.7)
            .collect()
    }

    fn inputs(device: &Device) -> (Tensor<3>, Tensor<2>, Tensor<2, Int>) {
        let [batch, len] = ROWS;
        let hidden = TensorData::new(values(batch * len * WIDTH, 1), [batch, len, WIDTH]);
        let weight = TensorData::new(values(WIDTH * VOCAB, 2), [WIDTH, VOCAB]);
        let ids: Vec<i32> = (0..batch * len).map(|i| (i * 7 % VOCAB) as i32).collect();
        let targets = Tensor::from_data(TensorData::new(ids, ROWS), device);
        (
            Tensor::from_data(hidden, device),
            Tensor::from_data(weight, device),
            targets,
        )
    }

    /// The log-probs and the gradients of `sum(coeff * lp)` in the hidden states (and the head,
    /// when it is trainable), on an autodiff device.
    fn value_and_grads(
        chunk_rows: Option<usize>,
        train_head: bool,
    ) -> (Vec<f32>, Vec<f32>, Option<Vec<f32>>) {
        let device = Device::flex().autodiff();
        let (hidden, weight, targets) = inputs(&Device::flex());
        let hidden = hidden.autodiff().require_grad();
        let weight = if train_head {
            weight.autodiff().require_grad()
        } else {
            weight.autodiff()
        };
        let lp = match chunk_rows {
            Some(rows) => head_logprobs_chunked(hidden.clone(), weight.clone(), targets, rows),
            None => gather_logprobs(
                Transformer::project(hidden.clone(), weight.clone()),
                targets,
            ),
        };
        let coeff: Vec<f32> = (0..10).map(|i| 0.3 * i as f32 - 1.0).collect();
        let coeff = Tensor::<2>::from_data(TensorData::new(coeff, ROWS), &device);
        let grads = (lp.clone() * coeff).sum().backward();
        let head_grad = weight.grad(&grads).map(to_f32_vec);
        (
            to_f32_vec(lp),
            to_f32_vec(hidden.grad(&grads).unwrap()),
            head_grad,
        )
    }

    #[test]
    fn fused_logprobs_and_hidden_gradient_equal_autodiff_through_the_logits() {
        let (plain, plain_grad, _) = value_and_grads(None, false);
        for chunk_rows in [1, 3, 10, 64] {
            let (fused, fused_grad, head_grad) = value_and_grads(Some(chunk_rows), false);
            assert!(
                max_abs_diff(&plain, &fused) < 1e-5,
                "chunk {chunk_rows}: values"
            );
            assert!(
                max_abs_diff(&plain_grad, &fused_grad) < 1e-5,
                "chunk {chunk_rows}: grads"
            );
            assert!(head_grad.is_none(), "a frozen head gets no gradient");
        }
    }

    #[test]
    fn a_trainable_head_gets_its_gradient() {
        let (plain, plain_grad, plain_head) = value_and_grads(None, true);
        let (fused, fused_grad, fused_head) = value_and_grads(Some(3), true);
        assert_eq!(plain, fused);
        assert_eq!(plain_grad, fused_grad);
        assert_eq!(plain_head.expect("head gradient"), fused_head.unwrap());
    }

    #[test]
    fn untracked_hidden_on_an_autodiff_device_and_empty_input() {
        let (hidden, weight, targets) = inputs(&Device::flex());
        let plain = gather_logprobs(
            Transformer::project(hidden.clone(), weight.clone()),
            targets.clone(),
        );
        let fused = head_logprobs(hidden.autodiff(), weight.autodiff(), targets.autodiff());
        assert!(fused.is_autodiff() && !fused.is_tracked());
        assert!(max_abs_diff(&to_f32_vec(plain), &to_f32_vec(fused)) < 1e-5);
        let device = Device::flex();
        let empty = head_logprobs(
            Tensor::zeros([2, 0, WIDTH], &device),
            Tensor::zeros([WIDTH, VOCAB], &device),
            Tensor::zeros([2, 0], &device),
        );
        assert_eq!(empty.dims(), [2, 0]);
    }

    #[test]
    fn without_autodiff_and_far_below_the_softmax_floor() {
        let device = Device::flex();
        let (hidden, weight, targets) = inputs(&device);
        // Scale the logits so that most targets have log-probs far below ln(f32::MIN_POSITIVE).
        let weight = weight * 40.0;
        let plain = gather_logprobs(
            Transformer::project(hidden.clone(), weight.clone()),
            targets.clone(),
        );
        let fused = head_logprobs_chunked(hidden, weight, targets, 4);
        let (plain, fused) = (to_f32_vec(plain), to_f32_vec(fused));
        assert!(plain.iter().any(|&lp| lp < -200.0), "{plain:?}");
        let scale = plain.iter().fold(1.0f32, |m, v| m.max(v.abs()));
        assert!(
            max_abs_diff(&plain, &fused) < 1e-5 * scale,
            "{plain:?} vs {fused:?}"
        );
    }
}
