//! Optimisation helpers: AdamW with explicit settings, PyTorch's global-norm gradient clipping
//! (Burn's own clip is per tensor), and parameter-wise maps by module path (EMA).

use std::collections::HashMap;

use bpo_model::burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use bpo_model::burn::optim::{
    AdamW, AdamWConfig, AdamWState, AdaptiveMomentumState, GradientsParams, LearningRate,
    ModuleOptimizer, Optimizer,
};
use bpo_model::burn::tensor::{Device, Tensor};
use bpo_model::flex::{AdamWStep, adamw_takes, adamw_update};
use bpo_model::host::to_f32_vec;
use bpo_model::weights::params::ModulePath;

use crate::config::OptimConfig;

/// AdamW with every setting taken from `config` (none of Burn's defaults): Burn's AdamW, whose
/// update runs as one pass per parameter on flex (`FusedAdamW`).
pub fn adamw(config: &OptimConfig) -> ModuleOptimizer {
    ModuleOptimizer::from(FusedAdamW::new(config))
}

/// AdamW as Burn's [`AdamW`] computes it, with Burn's state (checkpoints are unchanged), whose
/// update of a flex parameter is one pass ([`adamw_update`]); other tensors take Burn's AdamW.
/// Built without AMSGrad and cautious weight decay (Burn's defaults), which the one-pass update
/// does not implement.
#[derive(Clone)]
struct FusedAdamW {
    burn: AdamW,
    beta1: f32,
    beta2: f32,
    eps: f32,
    weight_decay: f32,
}

impl FusedAdamW {
    fn new(config: &OptimConfig) -> Self {
        let (beta1, beta2) = (config.beta1 as f32, config.beta2 as f32);
        let (eps, weight_decay) = (config.eps as f32, config.weight_decay as f32);
        let burn = AdamWConfig::new()
            .with_beta_1(beta1)
            .with_beta_2(beta2)
            .with_epsilon(eps)
            .with_weight_decay(weight_decay)
            .build();
        FusedAdamW {
            burn,
            beta1,
            beta2,
            eps,
            weight_decay,
        }
    }
}

impl Optimizer for FusedAdamW {
    type State<const D: usize> = AdamWState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        let moments = state.as_ref().map(|s| &s.momentum);
        let fused = adamw_takes(&tensor)
            && adamw_takes(&grad)
            && moments.is_none_or(|m| {
                m.max_moment_2.is_none() && adamw_takes(&m.moment_1) && adamw_takes(&m.moment_2)
            });
        if !fused {
            return self.burn.step(lr, tensor, grad, state);
        }
        let time = state.as_ref().map_or(1, |s| s.momentum.time + 1);
        let step = AdamWStep {
            lr,
            beta1: self.beta1,
            beta2: self.beta2,
            eps: self.eps,
            weight_decay: self.weight_decay,
            time: time as i32,
        };
        let moments = state.map(|s| (s.momentum.moment_1, s.momentum.moment_2));
        let (tensor, moment_1, moment_2) = adamw_update(tensor, grad, moments, &step);
        let momentum = AdaptiveMomentumState::new(time, moment_1, moment_2);
        (tensor, Some(AdamWState::new(momentum)))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        AdamW::to_device(state, device)
    }
}

struct SquaredNorm<'a> {
    grads: &'a GradientsParams,
    total: Option<Tensor<1>>,
}

impl ModuleVisitor for SquaredNorm<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.get::<D>(param.id) {
            let s = g.square().sum();
            self.total = Some(match self.total.take() {
                Some(t) => t + s,
                None => s,
            });
        }
    }
}

struct Scale<'a> {
    grads: &'a mut GradientsParams,
    factor: f64,
}

impl ModuleVisitor for Scale<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.remove::<D>(param.id) {
            self.grads.register::<D>(param.id, g * self.factor);
        }
    }
}

/// The global L2 norm of all gradients of `module`'s parameters.
pub fn grad_norm<M: Module>(module: &M, grads: &GradientsParams) -> f64 {
    let mut v = SquaredNorm { grads, total: None };
    module.visit(&mut v);
    v.total.map_or(0.0, |t| (to_f32_vec(t)[0] as f64).sqrt())
}

/// Scales every gradient by `factor`.
pub fn scale_grads<M: Module>(module: &M, grads: &mut GradientsParams, factor: f64) {
    module.visit(&mut Scale { grads, factor });
}

/// Clips gradients to a global norm of `max_norm` as `torch.nn.utils.clip_grad_norm_` does
/// (scale by `max_norm / (norm + 1e-6)` when that is below 1); returns the norm before clipping.
pub fn clip_grad_norm<M: Module>(module: &M, grads: &mut GradientsParams, max_norm: f64) -> f64 {
    let norm = grad_norm(module, grads);
    if max_norm > 0.0 && norm.is_finite() {
        let coef = max_norm / (norm + 1e-6);
        if coef < 1.0 {
            scale_grads(module, grads, coef);
        }
    }
    norm
}

struct Collect {
    path: ModulePath,
    values: HashMap<String, Tensor<1>>,
}

impl ModuleVisitor for Collect {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.enter(name);
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.exit();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = param.val();
        let n = value.shape().num_elements();
        self.values.insert(self.path.joined(), value.reshape([n]));
    }
}

struct Blend<'a> {
    path: ModulePath,
    values: &'a HashMap<String, Tensor<1>>,
    keep: f64,
}

impl ModuleMapper for Blend<'_> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.enter(name);
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.exit();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some(new) = self.values.get(&self.path.joined()) else {
            return param;
        };
        let keep = self.keep;
        param.map(|old| {
            let other = new.clone().reshape(old.shape());
            old * keep + other * (1.0 - keep)
        })
    }
}

/// `target = keep * target + (1 - keep) * source`, parameter by parameter (matched by path).
/// Both must have the same structure without adapters: pass a LoRA policy through
/// `valid().materialize()` first.
pub fn blend_into<M: Module>(target: M, source: &M, keep: f64) -> M {
    let mut collect = Collect {
        path: ModulePath::default(),
        values: HashMap::new(),
    };
    source.visit(&mut collect);
    target.map(&mut Blend {
        path: ModulePath::default(),
        values: &collect.values,
        keep,
    })
}

/// `target = sum_i coefficient(path) * sources[i]`, parameter by parameter (matched by path;
/// LoRA factors are visited as `<weight path>.lora.a` and `.lora.b`). Parameters of `target`
/// that no source has are kept.
pub fn combine_into<M: Module>(target: M, sources: &[M], coefficient: impl Fn(&str) -> f64) -> M {
    let mut sum: HashMap<String, Tensor<1>> = HashMap::new();
    for source in sources {
        let mut collect = Collect {
            path: ModulePath::default(),
            values: HashMap::new(),
        };
        source.visit(&mut collect);
        for (path, value) in collect.values {
            let scaled = value * coefficient(&path);
            let total = match sum.remove(&path) {
                Some(acc) => acc + scaled,
                None => scaled,
            };
            sum.insert(path, total);
        }
    }
    target.map(&mut Blend {
        path: ModulePath::default(),
        values: &sum,
        keep: 0.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bpo_model::burn::nn::LinearConfig;
    use bpo_model::burn::tensor::TensorData;
    use bpo_model::host::to_f32_vec;

    #[test]
    fn global_norm_clipping_matches_pytorch() {
        let device = Device::flex().autodiff();
        let linear = LinearConfig::new(2, 3).init(&device);
        let x = Tensor::<2>::from_floats([[1.0, 2.0]], &device);
        let loss = linear.forward(x).sum();
        let mut grads = GradientsParams::from_grads(loss.backward(), &linear);
        // dW[i][j] = x[i] = [[1, 1, 1], [2, 2, 2]], db = [1, 1, 1]: norm^2 = 3 + 12 + 3.
        let norm = clip_grad_norm(&linear, &mut grads, 1.0);
        assert!((norm - 18f64.sqrt()).abs() < 1e-5, "{norm}");
        let after = grad_norm(&linear, &grads);
        assert!(
            (after - 18f64.sqrt() / (18f64.sqrt() + 1e-6)).abs() < 1e-5,
            "{after}"
        );
        // Below the threshold nothing changes.
        let unchanged = clip_grad_norm(&linear, &mut grads, 10.0);
        assert!((unchanged - after).abs() < 1e-9);
        assert!((grad_norm(&linear, &grads) - after).abs() < 1e-6);
    }

    #[test]
    fn blend_mixes_parameters_by_path() {
        let device = Device::flex();
        let a = LinearConfig::new(2, 2).init(&device);
        let b = LinearConfig::new(2, 2).init(&device);
        let mixed = blend_into(a.clone(), &b, 0.75);
        let (wa, wb, wm) = (
            to_f32_vec(a.weight.val()),
            to_f32_vec(b.weight.val()),
            to_f32_vec(mixed.weight.val()),
        );
        for i in 0..4 {
            assert!((wm[i] - (0.75 * wa[i] + 0.25 * wb[i])).abs() < 1e-6);
        }
    }

    #[test]
    fn fused_adamw_steps_as_burns_adamw() {
        for weight_decay in [0.0, 0.1] {
            let config = OptimConfig {
                weight_decay,
                ..OptimConfig::default()
            };
            let ours = FusedAdamW::new(&config);
            let burns = ours.burn.clone();
            let device = Device::flex();
            let values = |seed: usize| -> Tensor<2> {
                let v: Vec<f32> = (0..3 * 40_000)
                    .map(|i| (((i * 7919 + seed * 104_729) % 1000) as f32 / 500.0 - 1.0) * 0.3)
                    .collect();
                Tensor::from_data(TensorData::new(v, [3, 40_000]), &device)
            };
            let (mut p_ours, mut p_burn) = (values(0), values(0));
            assert!(adamw_takes(&p_ours), "the fused update runs");
            let (mut s_ours, mut s_burn) = (None, None);
            for step in 1..=3 {
                let grad = values(step);
                (p_ours, s_ours) = ours.step(1e-3, p_ours, grad.clone(), s_ours);
                (p_burn, s_burn) = burns.step(1e-3, p_burn, grad, s_burn);
                let (a, b): (&AdamWState<2>, &AdamWState<2>) =
                    (s_ours.as_ref().unwrap(), s_burn.as_ref().unwrap());
                assert_eq!(a.momentum.time, b.momentum.time);
                for (x, y, what) in [
                    (p_ours.clone(), p_burn.clone(), "param"),
                    (
                        a.momentum.moment_1.clone(),
                        b.momentum.moment_1.clone(),
                        "m",
                    ),
                    (
                        a.momentum.moment_2.clone(),
                        b.momentum.moment_2.clone(),
                        "v",
                    ),
                ] {
                    let (x, y) = (to_f32_vec(x), to_f32_vec(y));
                    let diff = x
                        .iter()
                        .zip(&y)
                        .map(|(x, y)| (x - y).abs() / (1e-6 + y.abs()))
                        .fold(0.0f32, f32::max);
                    assert!(diff < 1e-5, "step {step} {what}: {diff}");
                }
            }
        }
    }
}
