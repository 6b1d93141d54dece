//! The matrix product `[m, k] x [k, n]` on flex, forward and backward, through the `gemm` crate
//! as flex's own matmul calls it (same kernels, same thread split), written once into a fresh
//! buffer: flex's matmul zeroes its output and copies it to an aligned allocation before
//! `gemm` writes it, two extra passes over every product and its page faults.

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::tensor::{Tensor, TensorData};
use burn_autodiff::checkpoint::base::Checkpointer;
use burn_autodiff::checkpoint::strategy::NoCheckpointing;
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{Backward, Ops, OpsKind, binary};

use super::{Primitive, Tracked, primitive};

/// Products of at least this many multiply-adds run on the rayon pool (flex's threshold).
const PARALLEL_MULTIPLY_ADDS: usize = 192 * 192 * 192;

/// `lhs @ rhs` for `[m, k]` x `[k, n]`; our product on flex f32 tensors (see the module doc),
/// Burn's matmul elsewhere. Differentiable in both operands.
pub fn matmul(lhs: Tensor<2>, rhs: Tensor<2>) -> Tensor<2> {
    match (primitive(&lhs), primitive(&rhs)) {
        (Some(Primitive::Plain(a)), Some(Primitive::Plain(b))) => {
            Tensor::from_primitive::<Flex>(product(&a, &b))
        }
        (Some(Primitive::Tracked(a)), Some(Primitive::Tracked(b))) => {
            Tensor::from_primitive::<burn_autodiff::Autodiff<Flex>>(tracked_product(a, b))
        }
        _ => lhs.matmul(rhs),
    }
}

/// The backward pass of [`matmul`]: `dA = dC B^T`, `dB = A^T dC`, each only for an operand
/// that needs it.
#[derive(Debug)]
struct ProductBackward;

impl Backward<Flex, 2> for ProductBackward {
    /// `A` when `B` needs a gradient, `B` when `A` does.
    type State = (Option<FlexTensor>, Option<FlexTensor>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (lhs, rhs) = ops.state;
        binary::<Flex, _, _>(
            ops.parents,
            ops.node,
            grads,
            |grad| {
                product(
                    &grad,
                    &rhs.expect("kept for the lhs gradient").transpose(0, 1),
                )
            },
            |grad| {
                product(
                    &lhs.expect("kept for the rhs gradient").transpose(0, 1),
                    &grad,
                )
            },
        );
    }
}

/// [`product`] recorded by autodiff, saving only the operands the backward pass reads.
fn tracked_product(lhs: Tracked, rhs: Tracked) -> Tracked {
    let (keep_rhs, keep_lhs) = (lhs.is_tracked(), rhs.is_tracked());
    let out = product(lhs.primitive(), rhs.primitive());
    match ProductBackward
        .prepare::<NoCheckpointing>([lhs.node(), rhs.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let state = (
                keep_lhs.then(|| lhs.primitive().clone()),
                keep_rhs.then(|| rhs.primitive().clone()),
            );
            prep.finish(state, out)
        }
        OpsKind::UnTracked(prep) => prep.finish(out),
    }
}

/// `a @ b` for f32 matrices of any strides, into a new contiguous `[m, n]` tensor.
pub(super) fn product(a: &FlexTensor, b: &FlexTensor) -> FlexTensor {
    let (m, k) = (a.layout().shape()[0], a.layout().shape()[1]);
    let n = b.layout().shape()[1];
    assert_eq!(
        b.layout().shape()[0],
        k,
        "matmul of [{m}, {k}] and [{}, {n}]",
        b.layout().shape()[0]
    );
    let mut out = Vec::<f32>::with_capacity(m * n);
    if k == 0 {
        out.resize(m * n, 0.0);
    } else if m * n > 0 {
        let (a_rows, a_cols) = (a.layout().strides()[0], a.layout().strides()[1]);
        let (b_rows, b_cols) = (b.layout().strides()[0], b.layout().strides()[1]);
        let parallelism = if m * n * k >= PARALLEL_MULTIPLY_ADDS {
            gemm::Parallelism::Rayon(0)
        } else {
            gemm::Parallelism::None
        };
        // SAFETY: the operand pointers address element [0, 0] of views whose strides stay
        // inside their buffers (flex's layout invariant); `out` has room for m * n values, and
        // gemm with `read_dst = false` writes each of them once before `set_len`.
        unsafe {
            let a_ptr = a.storage::<f32>().as_ptr().add(a.layout().start_offset());
            let b_ptr = b.storage::<f32>().as_ptr().add(b.layout().start_offset());
            gemm::gemm(
                m,
                n,
                k,
                out.as_mut_ptr(),
                1,
                n as isize,
                false,
                a_ptr,
                a_cols,
                a_rows,
                b_ptr,
                b_cols,
                b_rows,
                0.0,
                1.0,
                false,
                false,
                false,
                parallelism,
            );
            out.set_len(m * n);
        }
    }
    FlexTensor::from_data(TensorData::new(out, [m, n]))
}
