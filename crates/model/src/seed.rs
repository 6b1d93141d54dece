//! Reproducible random initialisation. Burn draws initial weights from a process-wide RNG per
//! backend and initialises parameters lazily, on first use; two threads that seed and build
//! models at the same time would interleave their draws. [`seeded_init`] serialises the
//! seed-build-materialise sequence so that the same seed always gives the same weights.

use std::sync::Mutex;

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Tensor};

static INIT_LOCK: Mutex<()> = Mutex::new(());

/// Forces every lazily initialised float parameter to draw its values now.
struct Materialise;

impl ModuleVisitor for Materialise {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let _ = param.val();
    }
}

/// Seeds `device`'s RNG with `seed`, builds a module with `build` and draws all of its random
/// parameters, while no other thread does the same.
pub fn seeded_init<M: Module>(device: &Device, seed: u64, build: impl FnOnce() -> M) -> M {
    let _guard = INIT_LOCK
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    device.seed(seed);
    let module = build();
    module.visit(&mut Materialise);
    module
}
