//! AdamW settings and the learning-rate schedule.

use serde::{Deserialize, Serialize};

use crate::error::AlgoError;

/// Shape of the learning-rate schedule after warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    /// Linear decay to 0 at the last step (the paper's).
    Linear,
    /// Cosine decay to 0 at the last step.
    Cosine,
    /// Constant after warm-up.
    Constant,
}

/// AdamW and the learning-rate schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimConfig {
    /// Peak learning rate. Default 5e-5 (the paper's).
    pub lr: f64,
    /// AdamW epsilon. Default 1e-6 (the paper's; Burn's own default is 1e-5).
    pub eps: f64,
    /// Decoupled weight decay. Default 0 (Burn's own default is 1e-4).
    pub weight_decay: f64,
    /// AdamW beta1. Default 0.9.
    pub beta1: f64,
    /// AdamW beta2. Default 0.999.
    pub beta2: f64,
    /// Global gradient-norm clip, PyTorch semantics; 0 disables. Default 1.0.
    pub max_grad_norm: f64,
    /// Linear warm-up steps. Default 0.
    pub warmup_steps: usize,
    /// `linear`, `cosine` or `constant`. Default `linear`.
    pub schedule: ScheduleKind,
}

impl Default for OptimConfig {
    fn default() -> Self {
        OptimConfig {
            lr: 5e-5,
            eps: 1e-6,
            weight_decay: 0.0,
            beta1: 0.9,
            beta2: 0.999,
            max_grad_norm: 1.0,
            warmup_steps: 0,
            schedule: ScheduleKind::Linear,
        }
    }
}

impl OptimConfig {
    /// Rejects impossible settings.
    pub fn validate(&self) -> Result<(), AlgoError> {
        let bad = |m: String| Err(AlgoError::Config(m));
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad(format!("optim.lr must be > 0, got {}", self.lr));
        }
        if self.eps.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
            return bad("optim.eps must be > 0".into());
        }
        if !(0.0..1.0).contains(&self.beta1) || !(0.0..1.0).contains(&self.beta2) {
            return bad("optim.beta1 and optim.beta2 must be in [0, 1)".into());
        }
        if self.weight_decay < 0.0 || self.max_grad_norm < 0.0 {
            return bad("optim.weight_decay and optim.max_grad_norm must be >= 0".into());
        }
        Ok(())
    }

    /// The learning rate of optimizer step `step` (0-based) out of `total`, as Hugging Face's
    /// `get_{linear,cosine}_schedule_with_warmup` compute it.
    pub fn lr_at(&self, step: usize, total: usize) -> f64 {
        let (step, warmup) = (step as f64, self.warmup_steps as f64);
        if step < warmup {
            return self.lr * step / warmup.max(1.0);
        }
        let progress = (step - warmup) / (total as f64 - warmup).max(1.0);
        let factor = match self.schedule {
            ScheduleKind::Constant => 1.0,
            ScheduleKind::Linear => (1.0 - progress).max(0.0),
            ScheduleKind::Cosine => 0.5 * (1.0 + (std::f64::consts::PI * progress.min(1.0)).cos()),
        };
        self.lr * factor
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_match_hugging_face() {
        let mut o = OptimConfig {
            lr: 1.0,
            warmup_steps: 2,
            ..OptimConfig::default()
        };
        let lrs: Vec<f64> = (0..6).map(|s| o.lr_at(s, 6)).collect();
        assert_eq!(lrs, vec![0.0, 0.5, 1.0, 0.75, 0.5, 0.25]);
        o.schedule = ScheduleKind::Cosine;
        assert!((o.lr_at(4, 6) - 0.5).abs() < 1e-12);
        o.schedule = ScheduleKind::Constant;
        assert_eq!(o.lr_at(5, 6), 1.0);
    }
}
