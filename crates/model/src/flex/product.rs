//! The matrix product `[m, k] x [k, n]` on flex, forward and backward, through the `gemm` crate
//! that flex's own matmul calls (the same kernels), written once into a fresh buffer: flex's
//! matmul zeroes its output and copies it to an aligned allocation before `gemm` writes it,
//! two extra passes over every product and its page faults.

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::tensor::Tensor;
use burn_autodiff::checkpoint::base::Checkpointer;
use burn_autodiff::checkpoint::strategy::NoCheckpointing;
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{Backward, Ops, OpsKind, binary};
use rayon::prelude::*;

use super::{Primitive, Tracked, primitive, tensor};

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
///
/// When `b`'s rows are not contiguous (a transposed weight, the backward pass's `dY W^T`),
/// gemm packs it on the calling thread before its parallel section, a serial pass over the
/// whole weight; there the product is split by output columns into one gemm per pool thread,
/// each packing its own part.
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
        let a = Operand::of(a);
        let b = Operand::of(b);
        let out_ptr = SendPtr(out.as_mut_ptr());
        let parallel = m.saturating_mul(n).saturating_mul(k) >= PARALLEL_MULTIPLY_ADDS;
        let threads = rayon::current_num_threads().min(n / 64).max(1);
        if parallel && b.col_stride != 1 && threads > 1 {
            // Blocks of `width` columns; the last one may be narrower, none is empty.
            let width = n.div_ceil(threads);
            let blocks = n.div_ceil(width);
            (0..blocks).into_par_iter().for_each(|i| {
                let start = i * width;
                let cols = width.min(n - start);
                // SAFETY: block `i` writes columns start..start + cols of every row, which no
                // other block writes; the offsets stay inside `out` and `b`.
                unsafe {
                    let out = out_ptr;
                    gemm_into(
                        out.0.add(start),
                        n,
                        m,
                        cols,
                        k,
                        a,
                        b.columns_from(start),
                        gemm::Parallelism::None,
                    )
                }
            });
        } else {
            let parallelism = if parallel {
                gemm::Parallelism::Rayon(0)
            } else {
                gemm::Parallelism::None
            };
            // SAFETY: see `gemm_into`; `out` has room for m * n values.
            unsafe { gemm_into(out.as_mut_ptr(), n, m, n, k, a, b, parallelism) };
        }
        // SAFETY: gemm with `read_dst = false` wrote each of the m * n values.
        unsafe { out.set_len(m * n) };
    }
    tensor(out, [m, n])
}

/// A matrix inside a slice: element `[i, j]` at `data[i * row_stride + j * col_stride]`.
#[derive(Clone, Copy)]
pub(super) struct View<'a> {
    data: &'a [f32],
    row_stride: usize,
    col_stride: usize,
}

impl<'a> View<'a> {
    /// The row-major matrix in `data` with rows `width` values apart.
    pub(super) fn rows(data: &'a [f32], width: usize) -> Self {
        View {
            data,
            row_stride: width,
            col_stride: 1,
        }
    }

    /// The transpose of [`View::rows`]`(data, width)`.
    pub(super) fn transposed(data: &'a [f32], width: usize) -> Self {
        View {
            data,
            row_stride: 1,
            col_stride: width,
        }
    }

    /// The view of a 2-D f32 flex tensor; `None` for negative strides.
    pub(super) fn of(tensor: &'a FlexTensor) -> Option<Self> {
        let strides = tensor.layout().strides();
        Some(View {
            data: &tensor.storage::<f32>()[tensor.layout().start_offset()..],
            row_stride: usize::try_from(strides[0]).ok()?,
            col_stride: usize::try_from(strides[1]).ok()?,
        })
    }

    /// The transpose: element `[i, j]` is this view's `[j, i]`.
    pub(super) fn transpose(self) -> Self {
        View {
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    /// Element `[i, j]`.
    pub(super) fn at(&self, i: usize, j: usize) -> f32 {
        self.data[i * self.row_stride + j * self.col_stride]
    }

    /// The first `len` values of row `i` when the row is contiguous.
    pub(super) fn row(&self, i: usize, len: usize) -> Option<&'a [f32]> {
        (self.col_stride == 1).then(|| &self.data[i * self.row_stride..][..len])
    }

    /// Checks that the `[rows, cols]` matrix lies inside the slice.
    fn check(&self, rows: usize, cols: usize) {
        let last = (rows - 1) * self.row_stride + (cols - 1) * self.col_stride;
        assert!(
            last < self.data.len(),
            "a [{rows}, {cols}] view past its slice"
        );
    }
}

/// `out = a @ b`, or `out += a @ b` when `accumulate`, for `a` `[m, k]`, `b` `[k, n]` and `out`
/// row-major `[m, n]` (its first `m * n` values), on the calling thread: the same values
/// whatever the thread count.
pub(super) fn product_into(
    out: &mut [f32],
    (m, n, k): (usize, usize, usize),
    a: View,
    b: View,
    accumulate: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(out.len() >= m * n, "room for a [{m}, {n}] product");
    if k == 0 {
        if !accumulate {
            out[..m * n].fill(0.0);
        }
        return;
    }
    a.check(m, k);
    b.check(k, n);
    // SAFETY: the checks above keep every element gemm reads or writes inside its slice.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.data.as_ptr(),
            a.col_stride as isize,
            a.row_stride as isize,
            b.data.as_ptr(),
            b.col_stride as isize,
            b.row_stride as isize,
            if accumulate { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

/// A matrix operand: the address of element [0, 0] and the strides, in elements.
#[derive(Clone, Copy)]
struct Operand {
    ptr: *const f32,
    row_stride: isize,
    col_stride: isize,
}

// SAFETY: the operands are read-only views of tensors that outlive the product.
unsafe impl Send for Operand {}
unsafe impl Sync for Operand {}

impl Operand {
    /// The view of a 2-D f32 flex tensor.
    fn of(tensor: &FlexTensor) -> Self {
        let strides = tensor.layout().strides();
        let start = tensor.layout().start_offset();
        Operand {
            ptr: tensor.storage::<f32>()[start..].as_ptr(),
            row_stride: strides[0],
            col_stride: strides[1],
        }
    }

    /// The view from column `col` on.
    fn columns_from(self, col: usize) -> Self {
        Operand {
            ptr: self.ptr.wrapping_offset(col as isize * self.col_stride),
            ..self
        }
    }
}

/// An output pointer shared by the column blocks (each writes its own columns).
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);

// SAFETY: the blocks write disjoint elements.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

/// `out[.., ..n] = a @ b` for `m` rows, `n` columns and depth `k`, `out` row-major with row
/// stride `out_stride`.
///
/// # Safety
/// `a` and `b` address `[m, k]` and `[k, n]` views inside live buffers, and `out` has room for
/// `m` rows of `out_stride` values.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_into(
    out: *mut f32,
    out_stride: usize,
    m: usize,
    n: usize,
    k: usize,
    a: Operand,
    b: Operand,
    parallelism: gemm::Parallelism,
) {
    // SAFETY: the caller's contract; gemm with `read_dst = false` writes each output once.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out,
            1,
            out_stride as isize,
            false,
            a.ptr,
            a.col_stride,
            a.row_stride,
            b.ptr,
            b.col_stride,
            b.row_stride,
            0.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        )
    }
}
