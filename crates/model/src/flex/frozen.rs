//! `x @ w` for a frozen weight `w` (a LoRA base, a reference or scoring model's weight) with
//! the products in bf16 (`bf16.rs`), forward and backward: `y = x w` through `w`'s panels,
//! `dx = dy wᵀ` through `wᵀ`'s, each packed once and cached.
//!
//! The cache is keyed by the weight's storage (the address of its shared buffer, with the view's
//! offset, shape and strides) and holds a weak handle to it: while the entry exists no other
//! buffer can take that address, and an entry whose weight is gone is dropped at the next
//! product. Flex writes a tensor in place only through `Arc::get_mut` (which refuses while a
//! weak handle exists) or `Arc::make_mut` (which then moves the values to a new buffer, so
//! that the weak handle dies): an entry never describes values other than its weight's. A
//! weight that changes every step (an EMA reference) is packed again for each new version.
//! The panels of `W` and `Wᵀ` take the f32 weight's memory again (half of it each).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, OnceLock, PoisonError, Weak};

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::tensor::{Bytes, Tensor};
use burn_autodiff::Autodiff;
use burn_autodiff::checkpoint::base::Checkpointer;
use burn_autodiff::checkpoint::strategy::NoCheckpointing;
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{Backward, Ops, OpsKind, unary};

use super::bf16::{self, Panels};
use super::product::View;
use super::{Primitive, Tracked, matmul, primitive, tensor};

/// `x @ w` for `x` `[m, k]` and a weight `w` `[k, n]`: with `bf16` on a CPU that has
/// AVX512-BF16 ([`bf16_supported`]), when both are f32 flex tensors and `w` takes no gradient,
/// through bf16 products (see the module doc); else [`matmul`]. Differentiable in `x` (and in
/// `w` on the f32 path).
pub fn weight_product(x: Tensor<2>, w: Tensor<2>, bf16: bool) -> Tensor<2> {
    if bf16 && bf16::supported() {
        match (primitive(&x), primitive(&w)) {
            (Some(Primitive::Plain(x)), Some(Primitive::Plain(w))) => {
                if let Some(entry) = cached(&w) {
                    return Tensor::from_primitive::<Flex>(product(&entry.forward(&w), &x));
                }
            }
            (Some(Primitive::Tracked(x)), Some(Primitive::Tracked(w))) if !w.is_tracked() => {
                if let Some(entry) = cached(w.primitive()) {
                    return Tensor::from_primitive::<Autodiff<Flex>>(tracked(
                        x,
                        w.primitive(),
                        &entry,
                    ));
                }
            }
            _ => {}
        }
    }
    matmul(x, w)
}

/// Whether this CPU has the instructions of [`weight_product`]'s bf16 products (AVX-512F and
/// AVX512-BF16).
pub fn bf16_supported() -> bool {
    bf16::supported()
}

/// The backward pass: `dx = dy wᵀ` through the transpose's panels.
#[derive(Debug)]
struct Bf16ProductBackward;

impl Backward<Flex, 1> for Bf16ProductBackward {
    /// `wᵀ`'s panels.
    type State = Arc<Panels>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let transposed = ops.state;
        unary::<Flex, _>(ops.parents, ops.node, grads, |grad| {
            product(&transposed, &grad)
        });
    }
}

/// The product recorded by autodiff, keeping `wᵀ`'s panels when `x` takes a gradient.
fn tracked(x: Tracked, w: &FlexTensor, entry: &Entry) -> Tracked {
    let out = product(&entry.forward(w), x.primitive());
    match Bf16ProductBackward
        .prepare::<NoCheckpointing>([x.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(entry.transposed(w), out),
        OpsKind::UnTracked(prep) => prep.finish(out),
    }
}

/// `x @ w` through `w`'s panels, into a new `[m, n]` tensor.
fn product(panels: &Panels, x: &FlexTensor) -> FlexTensor {
    let m = x.layout().shape()[0];
    assert_eq!(x.layout().shape()[1], panels.k(), "the inputs' width");
    let n = panels.n();
    let contiguous;
    let view = match View::of(x) {
        Some(view) => view,
        None => {
            contiguous = x.to_contiguous();
            View::of(&contiguous).expect("a contiguous tensor's view")
        }
    };
    tensor(panels.product(view, m), [m, n])
}

/// A weight's panels, each packed when first needed.
struct Entry {
    /// The weight's storage: dead once the weight is gone.
    owner: Weak<Bytes>,
    forward: OnceLock<Arc<Panels>>,
    transposed: OnceLock<Arc<Panels>>,
}

impl Entry {
    /// `w`'s panels.
    fn forward(&self, w: &FlexTensor) -> Arc<Panels> {
        let [k, n] = dims(w);
        packed_once(&self.forward, || Panels::pack(weight_view(w), k, n))
    }

    /// `wᵀ`'s panels.
    fn transposed(&self, w: &FlexTensor) -> Arc<Panels> {
        let [k, n] = dims(w);
        packed_once(&self.transposed, || {
            Panels::pack(weight_view(w).transpose(), n, k)
        })
    }
}

/// The panels in `cell`, packed by `pack` when missing. Packed outside the cell (which would
/// block other threads, rayon's workers among them, while the packing waits on the pool): two
/// threads that race may both pack, and the first one's panels are kept.
fn packed_once(cell: &OnceLock<Arc<Panels>>, pack: impl FnOnce() -> Panels) -> Arc<Panels> {
    if let Some(panels) = cell.get() {
        return panels.clone();
    }
    // A lost race leaves the other thread's (identical) panels in the cell.
    let _ = cell.set(Arc::new(pack()));
    cell.get().expect("set above").clone()
}

/// The `[k, n]` of a 2-D tensor.
fn dims(w: &FlexTensor) -> [usize; 2] {
    let shape = w.layout().shape();
    [shape[0], shape[1]]
}

/// The view of a weight [`cached`] accepted.
fn weight_view(w: &FlexTensor) -> View<'_> {
    View::of(w).expect("a weight with non-negative strides")
}

/// A cache key: the storage's address, the view's offset, shape and strides.
type Key = (usize, usize, [usize; 2], [isize; 2]);

/// The panels of every weight seen (see the module doc).
static CACHE: LazyLock<Mutex<HashMap<Key, Arc<Entry>>>> = LazyLock::new(Default::default);

/// The cache entry of `w`, made when missing, after dropping the entries of weights that are
/// gone; `None` for a weight with negative strides.
fn cached(w: &FlexTensor) -> Option<Arc<Entry>> {
    View::of(w)?;
    let storage = w.data_arc();
    let layout = w.layout();
    let strides = layout.strides();
    let key = (
        Arc::as_ptr(&storage) as usize,
        layout.start_offset(),
        dims(w),
        [strides[0], strides[1]],
    );
    let mut cache = CACHE.lock().unwrap_or_else(PoisonError::into_inner);
    cache.retain(|_, entry| entry.owner.strong_count() > 0);
    let entry = cache.entry(key).or_insert_with(|| {
        Arc::new(Entry {
            owner: Arc::downgrade(&storage),
            forward: OnceLock::new(),
            transposed: OnceLock::new(),
        })
    });
    Some(entry.clone())
}

/// Whether the cache holds `entry`.
#[cfg(test)]
fn holds(entry: &Arc<Entry>) -> bool {
    let cache = CACHE.lock().unwrap_or_else(PoisonError::into_inner);
    cache.values().any(|e| Arc::ptr_eq(e, entry))
}

#[cfg(test)]
#[path = "bf16_tests.rs"]
mod tests;
