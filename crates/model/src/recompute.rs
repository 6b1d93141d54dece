//! Per-block activation checkpointing (TRL's `gradient_checkpointing`) on flex: a block's
//! forward pass runs without recording, so autodiff keeps only the block's input and its keys
//! and values instead of every intermediate (queries, attention, MLP activations); the backward
//! pass runs the block again, recorded on a graph of its own, and passes that run's gradients
//! on. One more block forward per step, for the memory of all but a few tensors per block.
//!
//! The keys and values go into the KV cache, and a later chunk may attend to them (the
//! responses after a shared prompt), so they are computed outside the checkpointed part,
//! recorded as usual; the part checkpointed is the rest of the block given all keys and values.
//!
//! On other backends, dtypes and with Burn's own checkpointing, the block runs as usual.

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Gradients as TensorGradients, Tensor};
use burn_autodiff::Autodiff;
use burn_autodiff::NodeId;
use burn_autodiff::checkpoint::base::Checkpointer;
use burn_autodiff::checkpoint::strategy::NoCheckpointing;
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{Backward, Ops, OpsKind};

use crate::block::Block;
use crate::cache::KvCache;
use crate::flex::{Primitive, Tracked, primitive};
use crate::mask::LayerMask;
use crate::rope::RopeAngles;

/// [`Block::forward`] (without packed weights; the products in bf16 when `bf16`) with the block
/// checkpointed when its input and keys/values are tracked f32 tensors on flex (see the module
/// doc); the same values.
pub(crate) fn checkpointed_block(
    block: &Block,
    x: Tensor<3>,
    mask: &LayerMask,
    rope: Option<&RopeAngles>,
    cache: &mut KvCache,
    layer: usize,
    bf16: bool,
) -> Tensor<3> {
    // bf16 only where no projection trains: the block's copy below holds every weight as
    // untracked, and its recomputation the trained ones as tracked (f32).
    let bf16 = bf16 && block.projections_frozen();
    let (k, v) = block.keys_values(x.clone(), rope, bf16);
    let (k, v) = cache.append(layer, k, v);
    let tracked = |t: Option<Primitive>| match t {
        Some(Primitive::Tracked(t)) => Some(t),
        _ => None,
    };
    let inputs = (
        tracked(primitive(&x)),
        tracked(primitive(&k)),
        tracked(primitive(&v)),
    );
    let (Some(xt), Some(kt), Some(vt)) = inputs else {
        return block.with_keys_values(x, (k, v), mask, rope, bf16);
    };
    // Without a tracked input the op would record nothing, and the block's own parameters
    // would get no gradient: then the block is recorded as usual.
    if !(xt.is_tracked() || kt.is_tracked() || vt.is_tracked()) {
        return block.with_keys_values(x, (k, v), mask, rope, bf16);
    }
    let plain = [&xt, &kt, &vt].map(|t| t.primitive().clone());
    let [xp, kp, vp] = plain.clone();
    // Recorded by nothing: untracked copies of the inputs and parameters, on autodiff still,
    // so that every operation runs as in the recomputation (some of Burn's differ in the last
    // bit between flex and autodiff on flex).
    let untracked = block.clone().map(&mut FreshLeaves { keep_grad: false });
    let y = untracked.with_keys_values(
        leaf(xp, false),
        (leaf(kp, false), leaf(vp, false)),
        mask,
        rope,
        bf16,
    );
    let y = y
        .try_into_primitive::<Autodiff<Flex>>()
        .expect("a block on flex gives a flex tensor")
        .into_primitive();
    let out = match Recompute
        .prepare::<NoCheckpointing>([xt.node(), kt.node(), vt.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let state = State {
                block: block.clone(),
                inputs: plain,
                mask: mask.clone(),
                rope: rope.cloned(),
                bf16,
            };
            prep.finish(state, y)
        }
        OpsKind::UnTracked(prep) => prep.finish(y),
    };
    Tensor::from_primitive::<Autodiff<Flex>>(out)
}

/// What the backward pass runs the block again with.
#[derive(Debug, Clone)]
struct State {
    block: Block,
    /// x, and all keys and values of the layer.
    inputs: [FlexTensor; 3],
    mask: LayerMask,
    rope: Option<RopeAngles>,
    /// Whether the block's products are in bf16.
    bf16: bool,
}

/// The backward pass of [`checkpointed_block`]: the block run again on fresh leaves (a copy of
/// its parameters and inputs, so that nothing of the outer graph, whose lock this step holds,
/// enters the inner one), an inner backward pass of `sum(y * dy)`, and its gradients registered
/// for the inputs and for the block's own parameters.
#[derive(Debug)]
struct Recompute;

impl Backward<Flex, 3> for Recompute {
    type State = State;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let State {
            block,
            inputs,
            mask,
            rope,
            bf16,
        } = ops.state;
        let dy = grads.consume::<Flex>(&ops.node);
        // Not `Module::fork`: its device move is recorded on the outer graph, whose lock this
        // step holds.
        let fresh = block.clone().map(&mut FreshLeaves { keep_grad: true });
        let [x, k, v] = inputs;
        let (x, k, v) = (leaf::<3>(x, true), leaf::<4>(k, true), leaf::<4>(v, true));
        let rope = rope.map(|r| r.map(|t| t.inner().autodiff()));
        let kv = (k.clone(), v.clone());
        let y = fresh.with_keys_values(x.clone(), kv, &mask, rope.as_ref(), bf16);
        let dy = leaf::<3>(dy, false);
        let inner = (y * dy).sum().backward();
        let input_grads = [
            x.grad(&inner).map(plain_of),
            k.grad(&inner).map(plain_of),
            v.grad(&inner).map(plain_of),
        ];
        for (parent, grad) in ops.parents.into_iter().zip(input_grads) {
            if let (Some(parent), Some(grad)) = (parent, grad) {
                grads.register::<Flex>(parent.id, grad);
            }
        }
        let mut ids = TrainableIds(Vec::new());
        block.visit(&mut ids);
        let mut param_grads = TrainableGrads {
            grads: &inner,
            found: Vec::new(),
        };
        fresh.visit(&mut param_grads);
        assert_eq!(
            ids.0.len(),
            param_grads.found.len(),
            "a fork keeps the parameters"
        );
        for (id, grad) in ids.0.into_iter().zip(param_grads.found) {
            if let Some(grad) = grad {
                grads.register::<Flex>(id, grad);
            }
        }
    }
}

/// Every float parameter as a new leaf with the same values, sharing no node with any graph:
/// needing a gradient where the original does when `keep_grad`, else none. (Not
/// `Module::no_grad` for the untracked copy: on a parameter not yet initialised, it would
/// switch off the original's gradient too, whose lazy state a clone shares.)
struct FreshLeaves {
    keep_grad: bool,
}

impl ModuleMapper for FreshLeaves {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        param.map(|tensor| {
            let trainable = self.keep_grad && tensor.is_require_grad();
            let fresh = tensor.inner().autodiff();
            if trainable {
                fresh.require_grad()
            } else {
                fresh
            }
        })
    }
}

/// `values` as a new autodiff leaf, needing a gradient when `grad`.
fn leaf<const D: usize>(values: FlexTensor, grad: bool) -> Tensor<D> {
    let t = Tensor::from_primitive::<Flex>(values).autodiff();
    if grad { t.require_grad() } else { t }
}

/// The flex values of a gradient computed on flex.
fn plain_of<const D: usize>(t: Tensor<D>) -> FlexTensor {
    t.try_into_primitive::<Flex>()
        .expect("gradients on flex are flex tensors")
}

/// The autodiff nodes of a module's parameters that need gradients, in visiting order.
struct TrainableIds(Vec<NodeId>);

impl ModuleVisitor for TrainableIds {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = param.val();
        if value.is_require_grad() {
            let tracked: Tracked = value
                .try_into_primitive::<Autodiff<Flex>>()
                .expect("a trainable parameter on flex");
            self.0.push(tracked.id());
        }
    }
}

/// The gradients of a module's parameters that need them, in visiting order.
struct TrainableGrads<'a> {
    grads: &'a TensorGradients,
    found: Vec<Option<FlexTensor>>,
}

impl ModuleVisitor for TrainableGrads<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = param.val();
        if value.is_require_grad() {
            self.found.push(value.grad(self.grads).map(plain_of));
        }
    }
}
