//! A model's parameters by module path (`layers.3.attn.q.weight`): their shapes (without
//! initialising lazy parameters), their values, and setting them from host tensors.

use std::collections::{BTreeMap, HashMap};

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Device, Tensor};

use crate::weights::tensor::HostTensor;

/// The dotted module path (`layers.3.attn.q.weight`) of the parameter a visitor or mapper is
/// at: `enter` and `exit` follow `enter_module` and `exit_module`.
#[derive(Debug, Default)]
pub struct ModulePath(Vec<String>);

impl ModulePath {
    /// Entering submodule `name`.
    pub fn enter(&mut self, name: &str) {
        self.0.push(name.to_owned());
    }

    /// Leaving the current submodule.
    pub fn exit(&mut self) {
        self.0.pop();
    }

    /// The path so far, joined with dots.
    pub fn joined(&self) -> String {
        self.0.join(".")
    }
}

struct Collect {
    path: ModulePath,
    values: bool,
    found: BTreeMap<String, HostTensor>,
}

impl ModuleVisitor for Collect {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.enter(name);
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.exit();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let tensor = if self.values {
            HostTensor::from_tensor(param.val())
        } else {
            HostTensor {
                shape: param.lazy_shape().dims::<D>().to_vec(),
                data: Vec::new(),
            }
        };
        self.found.insert(self.path.joined(), tensor);
    }
}

/// Every float parameter's shape by path (lazy parameters stay uninitialised).
pub fn shapes<M: Module>(model: &M) -> BTreeMap<String, Vec<usize>> {
    let mut v = Collect {
        path: ModulePath::default(),
        values: false,
        found: BTreeMap::new(),
    };
    model.visit(&mut v);
    v.found.into_iter().map(|(k, t)| (k, t.shape)).collect()
}

/// Every float parameter's value by path, on the host.
pub fn values<M: Module>(model: &M) -> BTreeMap<String, HostTensor> {
    let mut v = Collect {
        path: ModulePath::default(),
        values: true,
        found: BTreeMap::new(),
    };
    model.visit(&mut v);
    v.found
}

struct Set<'a> {
    path: ModulePath,
    values: HashMap<String, HostTensor>,
    device: &'a Device,
}

impl ModuleMapper for Set<'_> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.enter(name);
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.exit();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        match self.values.remove(&self.path.joined()) {
            Some(host) => Param::from_tensor(host.to_tensor(self.device)),
            None => param,
        }
    }
}

/// Replaces the parameters named in `values` by fresh ones holding those values on `device`
/// (shapes must match: check with [`shapes`] first); returns the model and the names no
/// parameter had.
pub fn set<M: Module>(
    model: M,
    values: HashMap<String, HostTensor>,
    device: &Device,
) -> (M, Vec<String>) {
    let mut mapper = Set {
        path: ModulePath::default(),
        values,
        device,
    };
    let model = model.map(&mut mapper);
    let mut left: Vec<String> = mapper.values.into_keys().collect();
    left.sort();
    (model, left)
}
