//! Our own CPU operations on Burn's flex backend, each with its own backward pass inside Burn's
//! autodiff (the custom-operation interface of `burn-autodiff`): [`matmul`] (and
//! [`weight_product`], its bf16 variant for frozen weights), [`swiglu`], [`rms_norm`],
//! [`attention`] and [`head_logprobs`]; and AdamW's update of a parameter in one pass
//! ([`adamw_update`]).
//!
//! Why: a training step spends a third of its time outside the matrix products, and there flex
//! runs every elementwise operation on one thread, one operation (one pass over memory) at a
//! time, with a scalar `exp`; and each of its matrix products fills a fresh buffer three times
//! (zeroed, copied to a 16-byte-aligned allocation, then written by `gemm`). The operations
//! here write each output once, run on the rayon pool, vectorise `exp`, and fuse what autodiff
//! would record as chains of operations, so they save fewer tensors too.
//!
//! Each operation takes the Burn path on every other backend (wgpu, CUDA, ndarray), on other
//! dtypes, and with gradient checkpointing, so the numbers there are Burn's.

mod adamw;
mod attention;
mod bf16;
mod frozen;
mod head;
mod math;
mod product;
mod rms_norm;
mod swiglu;

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::tensor::{DType, Tensor};
use burn_autodiff::Autodiff;

pub use adamw::{AdamWStep, adamw_update, takes as adamw_takes};
pub use attention::attention;
pub use frozen::{bf16_supported, weight_product};
pub use head::head_logprobs;
pub use product::matmul;
pub use rms_norm::rms_norm;
pub use swiglu::swiglu;

/// A flex tensor recorded by autodiff.
pub(crate) type Tracked = FloatTensor<Autodiff<Flex>>;

/// A float tensor's primitive on flex: without autodiff, or with it.
pub(crate) enum Primitive {
    /// On `Device::flex()`.
    Plain(FlexTensor),
    /// On `Device::flex().autodiff()` (without gradient checkpointing).
    Tracked(Tracked),
}

/// A contiguous f32 flex tensor of `values` with `shape` (the buffer is taken, not copied).
fn tensor(values: Vec<f32>, shape: impl Into<burn::tensor::Shape>) -> FlexTensor {
    FlexTensor::from_data(burn::tensor::TensorData::new(values, shape))
}

/// The values of a contiguous f32 flex tensor.
fn values(tensor: &FlexTensor) -> &[f32] {
    tensor.as_slice::<f32>().expect("a contiguous f32 tensor")
}

/// `log_softmax(row)[index]` on the host, vectorised, with the log-sum-exp of the head
/// operation ([`head_logprobs`]): the log-probability a sampler records is computed as
/// training computes it.
pub fn log_softmax_at(row: &[f32], index: usize) -> f32 {
    math::vectorised(
        #[inline(always)]
        || row[index] - math::log_sum_exp(row),
    )
}

/// Whether `tensor` is an f32 tensor on flex (with or without autodiff): what the operations
/// here and the packed decoding weights take.
pub fn is_flex_f32<const D: usize>(tensor: &Tensor<D>) -> bool {
    primitive(tensor).is_some()
}

/// The flex tensor holding the values of `tensor` when it is a contiguous f32 tensor on flex
/// (with or without autodiff): a shared handle, nothing copied; read it with
/// `as_slice::<f32>()`.
pub fn contiguous_f32<const D: usize>(tensor: &Tensor<D>) -> Option<FlexTensor> {
    let flex = match primitive(tensor)? {
        Primitive::Plain(t) => t,
        Primitive::Tracked(t) => t.primitive().clone(),
    };
    flex.as_slice::<f32>().is_some().then_some(flex)
}

/// The flex primitive behind `tensor` when it is an f32 tensor on flex (with or without
/// autodiff), else `None`. Cheap: the data is shared, not copied.
pub(crate) fn primitive<const D: usize>(tensor: &Tensor<D>) -> Option<Primitive> {
    if tensor.is_autodiff() {
        let tracked = tensor.clone().try_into_primitive::<Autodiff<Flex>>().ok()?;
        (tracked.primitive().dtype() == DType::F32).then_some(Primitive::Tracked(tracked))
    } else {
        let plain = tensor.clone().try_into_primitive::<Flex>().ok()?;
        (plain.dtype() == DType::F32).then_some(Primitive::Plain(plain))
    }
}

#[cfg(test)]
mod tests {
    use bpo_testkit::hashed_values;
    use burn::tensor::activation::silu;
    use burn::tensor::{Device, TensorData};

    use super::*;
    use crate::host::to_f32_vec;

    /// A `[rows, cols]` tensor of hashed values times `scale`; with `transposed`, a transposed
    /// view of a `[cols, rows]` tensor (strided, not contiguous).
    fn input(rows: usize, cols: usize, seed: u32, scale: f32, transposed: bool) -> Tensor<2> {
        let values = hashed_values(rows * cols, seed)
            .iter()
            .map(|v| v * scale)
            .collect();
        let device = Device::flex();
        if transposed {
            Tensor::<2>::from_data(TensorData::new(values, [cols, rows]), &device).transpose()
        } else {
            Tensor::from_data(TensorData::new(values, [rows, cols]), &device)
        }
    }

    /// `op(a, b)` and the gradients of `sum(op(a, b) * r)` (fixed hashed `r`) in the inputs
    /// that `track` marks, on flex with autodiff.
    fn value_and_grads(
        op: impl Fn(Tensor<2>, Tensor<2>) -> Tensor<2>,
        a: &Tensor<2>,
        b: &Tensor<2>,
        track: [bool; 2],
    ) -> (Vec<f32>, Option<Vec<f32>>, Option<Vec<f32>>) {
        let on_graph = |t: &Tensor<2>, tracked: bool| {
            let t = t.clone().autodiff();
            if tracked { t.require_grad() } else { t }
        };
        let (a, b) = (on_graph(a, track[0]), on_graph(b, track[1]));
        let out = op(a.clone(), b.clone());
        let [rows, cols] = out.dims();
        let r = Tensor::from_data(
            TensorData::new(hashed_values(rows * cols, 99), [rows, cols]),
            &Device::flex(),
        );
        let grads = (out.clone() * r.autodiff()).sum().backward();
        let grad = |t: &Tensor<2>| t.grad(&grads).map(to_f32_vec);
        (to_f32_vec(out.inner()), grad(&a), grad(&b))
    }

    /// The largest `|x - y| / (1 + |y|)`.
    fn relative_diff(x: &[f32], y: &[f32]) -> f32 {
        assert_eq!(x.len(), y.len());
        x.iter()
            .zip(y)
            .map(|(x, y)| (x - y).abs() / (1.0 + y.abs()))
            .fold(0.0, f32::max)
    }

    /// Our op and Burn's give the same values and gradients (within `tolerance`, relative),
    /// with and without autodiff, for every choice of tracked inputs.
    fn assert_matches_burn(
        ours: impl Fn(Tensor<2>, Tensor<2>) -> Tensor<2>,
        burns: impl Fn(Tensor<2>, Tensor<2>) -> Tensor<2>,
        a: &Tensor<2>,
        b: &Tensor<2>,
        tolerance: f32,
    ) {
        let plain = to_f32_vec(ours(a.clone(), b.clone()));
        for track in [[true, true], [true, false], [false, true]] {
            let (value, grad_a, grad_b) = value_and_grads(&ours, a, b, track);
            let (expected, exp_a, exp_b) = value_and_grads(&burns, a, b, track);
            assert_eq!(value, plain, "the same values with and without autodiff");
            assert!(relative_diff(&value, &expected) <= tolerance, "{track:?}");
            for (grad, exp) in [(grad_a, exp_a), (grad_b, exp_b)] {
                assert_eq!(grad.is_some(), exp.is_some(), "{track:?}");
                if let (Some(grad), Some(exp)) = (grad, exp) {
                    let diff = relative_diff(&grad, &exp);
                    assert!(diff <= tolerance, "{track:?}: gradient {diff}");
                }
            }
        }
    }

    #[test]
    fn matmul_equals_burns_in_value_and_gradients() {
        // The last shape runs on the rayon pool, split by columns when the right operand is a
        // transposed (strided) view; on pools of 1-3 threads.
        for threads in [1, 2, 3] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            for (m, k, n) in [(1, 1, 1), (7, 13, 5), (64, 96, 200), (300, 200, 250)] {
                for (ta, tb) in [(false, false), (true, false), (false, true)] {
                    let a = input(m, k, 1, 1.0, ta);
                    let b = input(k, n, 2, 1.0, tb);
                    pool.install(|| assert_matches_burn(matmul, |a, b| a.matmul(b), &a, &b, 1e-5));
                }
            }
        }
    }

    #[test]
    fn swiglu_equals_silu_times_up_in_value_and_gradients() {
        // Gates in [-8, 8): both tails of the sigmoid; 4 x 9000 spans several parallel chunks.
        for (rows, cols) in [(1, 1), (3, 37), (4, 9000)] {
            let gate = input(rows, cols, 3, 16.0, false);
            let up = input(rows, cols, 4, 4.0, false);
            assert_matches_burn(swiglu, |g, u| silu(g) * u, &gate, &up, 2e-6);
            let strided = input(rows, cols, 5, 16.0, true);
            assert_matches_burn(swiglu, |g, u| silu(g) * u, &strided, &up, 2e-6);
        }
    }

    #[test]
    fn rms_norm_equals_burns_in_value_and_gradients() {
        // 130 rows: three partial sums of the weight gradient.
        for (rows, width) in [(1, 1), (3, 37), (130, 576)] {
            let x = input(rows, width, 6, 4.0, false);
            let weight = input(1, width, 7, 1.0, false) + 1.0;
            // Normalised as `[rows, 1, width]`: the gradient keeps the input's shape.
            let ours = |x: Tensor<2>, w: Tensor<2>| {
                let x = x.reshape([rows, 1, width]);
                rms_norm(x, w.reshape([width]), 1e-5).reshape([rows, width])
            };
            let burns = |x: Tensor<2>, w: Tensor<2>| {
                let rms = (x.clone().square().mean_dim(1) + 1e-5).sqrt();
                (x / rms) * w
            };
            // Sums over rows and columns in other orders than Burn's.
            assert_matches_burn(ours, burns, &x, &weight, 1e-5);
            let strided = input(rows, width, 8, 4.0, true);
            assert_matches_burn(ours, burns, &strided, &weight, 1e-5);
        }
    }

    #[test]
    fn column_split_covers_every_column_on_a_large_pool() {
        // 112 threads and 8192 columns: blocks of 74 columns, the last one narrower.
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(112)
            .build()
            .unwrap();
        let a = input(8, 128, 9, 1.0, false);
        let b = input(128, 8192, 10, 1.0, true);
        let ours = pool.install(|| to_f32_vec(matmul(a.clone(), b.clone())));
        let burns = to_f32_vec(a.matmul(b));
        assert!(relative_diff(&ours, &burns) <= 1e-5);
    }
}
