//! SwiGLU's gating, `silu(gate) * up`, as one operation with its own backward pass on flex.
//!
//! Through Burn's autodiff it is a sigmoid, two products and, backward, the sigmoid once more,
//! its derivative, four products and a sum: nine single-threaded passes with a scalar `exp`,
//! and three saved tensors. Here it is one vectorised pass each way on the rayon pool, saving
//! the two inputs (which the gate and up products hold anyway).

use std::mem::MaybeUninit;

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::tensor::Tensor;
use burn::tensor::activation::silu;
use burn_autodiff::Autodiff;
use burn_autodiff::checkpoint::base::Checkpointer;
use burn_autodiff::checkpoint::strategy::NoCheckpointing;
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{Backward, Ops, OpsKind};

use super::math::{filled, filled_pair, sigmoid, vectorised};
use super::{Primitive, Tracked, primitive, tensor, values};

/// `silu(gate) * up`, elementwise, differentiable in both. Ours on flex f32 tensors of the same
/// shape (see the module doc), Burn's ops elsewhere.
pub fn swiglu<const D: usize>(gate: Tensor<D>, up: Tensor<D>) -> Tensor<D> {
    if gate.dims() == up.dims() {
        match (primitive(&gate), primitive(&up)) {
            (Some(Primitive::Plain(g)), Some(Primitive::Plain(u))) => {
                return Tensor::from_primitive::<Flex>(forward(&g, &u));
            }
            (Some(Primitive::Tracked(g)), Some(Primitive::Tracked(u))) => {
                return Tensor::from_primitive::<Autodiff<Flex>>(tracked(g, u));
            }
            _ => {}
        }
    }
    silu(gate) * up
}

/// The backward pass: `d up = d * silu(g)`, `d gate = d * up * s (1 + g (1 - s))` with
/// `s = sigmoid(g)`, both in one pass.
#[derive(Debug)]
struct SwigluBackward;

impl Backward<Flex, 2> for SwigluBackward {
    /// The inputs, contiguous.
    type State = (FlexTensor, FlexTensor);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (gate, up) = ops.state;
        let grad = grads.consume::<Flex>(&ops.node).to_contiguous();
        let [gate_parent, up_parent] = ops.parents;
        let shape = gate.layout().shape().clone();
        let (g, u, d) = (values(&gate), values(&up), values(&grad));
        // SAFETY: the loop writes every element of both chunks.
        let (d_gate, d_up) = unsafe {
            filled_pair(g.len(), |offset, dg, du| {
                let end = offset + dg.len();
                let (g, u, d) = (&g[offset..end], &u[offset..end], &d[offset..end]);
                vectorised(
                    #[inline(always)]
                    || {
                        for i in 0..dg.len() {
                            let s = sigmoid(g[i]);
                            du[i] = MaybeUninit::new(d[i] * (g[i] * s));
                            dg[i] = MaybeUninit::new(d[i] * u[i] * s * (1.0 + g[i] * (1.0 - s)));
                        }
                    },
                )
            })
        };
        if let Some(parent) = gate_parent {
            grads.register::<Flex>(parent.id, tensor(d_gate, shape.clone()));
        }
        if let Some(parent) = up_parent {
            grads.register::<Flex>(parent.id, tensor(d_up, shape));
        }
    }
}

/// [`forward`] recorded by autodiff.
fn tracked(gate: Tracked, up: Tracked) -> Tracked {
    let (g, u) = (
        gate.primitive().to_contiguous(),
        up.primitive().to_contiguous(),
    );
    let out = forward(&g, &u);
    match SwigluBackward
        .prepare::<NoCheckpointing>([gate.node(), up.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish((g, u), out),
        OpsKind::UnTracked(prep) => prep.finish(out),
    }
}

/// `silu(g) * u` of two flex f32 tensors of one shape.
fn forward(gate: &FlexTensor, up: &FlexTensor) -> FlexTensor {
    let (gate, up) = (gate.to_contiguous(), up.to_contiguous());
    let (g, u) = (values(&gate), values(&up));
    // SAFETY: the loop writes every element of the chunk.
    let out = unsafe {
        filled(g.len(), |offset, out| {
            let (g, u) = (
                &g[offset..offset + out.len()],
                &u[offset..offset + out.len()],
            );
            vectorised(
                #[inline(always)]
                || {
                    for i in 0..out.len() {
                        out[i] = MaybeUninit::new(g[i] * sigmoid(g[i]) * u[i]);
                    }
                },
            )
        })
    };
    tensor(out, gate.layout().shape().clone())
}
