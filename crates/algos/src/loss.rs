//! The loss zoo of direct alignment from preferences, used offline and online alike: pure
//! functions of policy and reference sequence log-probs.
//!
//! With `h = [log pi(y_w) - log ref(y_w)] - [log pi(y_l) - log ref(y_l)]`:
//! - DPO: `-log sigmoid(beta h)`; with label smoothing `e` (cDPO)
//!   `-(1 - e) log sigmoid(beta h) - e log sigmoid(-beta h)`;
//! - robust DPO: `[-(1 - e) log sigmoid(beta h) + e log sigmoid(-beta h)] / (1 - 2e)`;
//! - IPO: `(h - 1 / (2 beta))^2` on log-probs averaged per response token;
//! - SLiC: `max(0, 1 - beta h)`;
//! - length-normalised DPO: DPO on per-token averaged log-probs;
//! - plus an optional SFT term `sft_weight * mean NLL per chosen token`.

use bpo_model::burn;
use bpo_model::host::to_f32_vec;
use burn::tensor::Tensor;
use burn::tensor::activation::{log_sigmoid, relu};
use serde::{Deserialize, Serialize};

use crate::error::AlgoError;
use crate::metrics::MetricsRecord;

/// Which loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LossKind {
    /// Sigmoid loss of DPO (cDPO with `label_smoothing > 0`).
    Dpo,
    /// IPO's squared loss on per-token averaged log-probs.
    Ipo,
    /// SLiC's hinge on the reference-normalised margin.
    Slic,
    /// Robust DPO (unbiased under label noise of rate `label_smoothing`).
    Robust,
}

impl LossKind {
    /// Parses `dpo`, `ipo`, `slic` or `robust`.
    pub fn parse(s: &str) -> Result<Self, AlgoError> {
        match s {
            "dpo" | "sigmoid" => Ok(LossKind::Dpo),
            "ipo" => Ok(LossKind::Ipo),
            "slic" | "hinge" => Ok(LossKind::Slic),
            "robust" => Ok(LossKind::Robust),
            other => Err(AlgoError::Config(format!(
                "unknown loss `{other}` (dpo, ipo, slic, robust)"
            ))),
        }
    }

    /// The loss's name as used in configs and reports.
    pub fn name(self) -> &'static str {
        match self {
            LossKind::Dpo => "dpo",
            LossKind::Ipo => "ipo",
            LossKind::Slic => "slic",
            LossKind::Robust => "robust",
        }
    }
}

/// A loss and its settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LossConfig {
    /// `dpo`, `ipo`, `slic` or `robust`. Default `dpo`.
    pub kind: LossKind,
    /// Strength of the pull towards the reference. Default 0.1 (the paper's).
    pub beta: f64,
    /// Assumed label-flip rate `e` for cDPO (`dpo`) and `robust`, in `[0, 0.5)`. Default 0.
    pub label_smoothing: f64,
    /// Use per-token averaged log-probs in DPO/SLiC/robust (IPO always does). Default false.
    pub length_normalized: bool,
    /// Weight of the SFT term (NLL per chosen token). Default 0.
    pub sft_weight: f64,
}

impl Default for LossConfig {
    fn default() -> Self {
        LossConfig {
            kind: LossKind::Dpo,
            beta: 0.1,
            label_smoothing: 0.0,
            length_normalized: false,
            sft_weight: 0.0,
        }
    }
}

impl LossConfig {
    /// Rejects settings with no meaning.
    pub fn validate(&self) -> Result<(), AlgoError> {
        if !(self.beta > 0.0 && self.beta.is_finite()) {
            return Err(AlgoError::Config(format!(
                "loss.beta must be > 0, got {}",
                self.beta
            )));
        }
        if !(0.0..0.5).contains(&self.label_smoothing) {
            return Err(AlgoError::Config(format!(
                "loss.label_smoothing must be in [0, 0.5), got {}",
                self.label_smoothing
            )));
        }
        if self.sft_weight < 0.0 {
            return Err(AlgoError::Config("loss.sft_weight must be >= 0".into()));
        }
        Ok(())
    }

    /// Whether the loss compares per-token averaged log-probs.
    pub fn averaged(&self) -> bool {
        self.kind == LossKind::Ipo || self.length_normalized
    }
}

/// Summed log-probs of the chosen and rejected responses of `n` pairs, with their token counts
/// (all `[n]`).
#[derive(Debug, Clone)]
pub struct PairLogps {
    /// `log p(chosen | prompt)`.
    pub chosen: Tensor<1>,
    /// `log p(rejected | prompt)`.
    pub rejected: Tensor<1>,
    /// Chosen response lengths.
    pub chosen_tokens: Tensor<1>,
    /// Rejected response lengths.
    pub rejected_tokens: Tensor<1>,
}

impl PairLogps {
    /// Builds host-side values (reference log-probs) on `device`.
    pub fn from_host(
        chosen: &[f32],
        rejected: &[f32],
        chosen_tokens: &[f32],
        rejected_tokens: &[f32],
        device: &burn::tensor::Device,
    ) -> Self {
        let t = |v: &[f32]| Tensor::<1>::from_floats(v, device);
        PairLogps {
            chosen: t(chosen),
            rejected: t(rejected),
            chosen_tokens: t(chosen_tokens),
            rejected_tokens: t(rejected_tokens),
        }
    }

    fn values(&self, averaged: bool) -> (Tensor<1>, Tensor<1>) {
        if averaged {
            (
                self.chosen.clone() / self.chosen_tokens.clone().clamp_min(1.0),
                self.rejected.clone() / self.rejected_tokens.clone().clamp_min(1.0),
            )
        } else {
            (self.chosen.clone(), self.rejected.clone())
        }
    }

    /// The same values, cut from the autodiff graph.
    pub fn detach(&self) -> Self {
        PairLogps {
            chosen: self.chosen.clone().detach(),
            rejected: self.rejected.clone().detach(),
            chosen_tokens: self.chosen_tokens.clone(),
            rejected_tokens: self.rejected_tokens.clone(),
        }
    }
}

/// The statistics TRL users know, averaged over the pairs of a batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LossStats {
    /// The loss.
    pub loss: f64,
    /// Mean implicit reward `beta (log pi - log ref)` of chosen responses.
    #[serde(rename = "rewards/chosen")]
    pub rewards_chosen: f64,
    /// Mean implicit reward of rejected responses.
    #[serde(rename = "rewards/rejected")]
    pub rewards_rejected: f64,
    /// Share of pairs whose chosen reward exceeds the rejected one.
    #[serde(rename = "rewards/accuracies")]
    pub rewards_accuracies: f64,
    /// Mean chosen-minus-rejected reward.
    #[serde(rename = "rewards/margins")]
    pub rewards_margins: f64,
    /// Mean summed log-prob of chosen responses under the policy.
    #[serde(rename = "logps/chosen")]
    pub logps_chosen: f64,
    /// Mean summed log-prob of rejected responses under the policy.
    #[serde(rename = "logps/rejected")]
    pub logps_rejected: f64,
}

impl LossStats {
    /// The statistics as a metrics record, under TRL's names.
    pub fn record(&self) -> MetricsRecord {
        match serde_json::to_value(self).expect("json") {
            serde_json::Value::Object(m) => m
                .into_iter()
                .filter_map(|(k, v)| Some((k, v.as_f64()?)))
                .collect(),
            _ => MetricsRecord::new(),
        }
    }

    /// The mean of several batches' statistics (gradient accumulation), weighted by pairs.
    pub fn weighted_mean(parts: &[(LossStats, usize)]) -> LossStats {
        let total: usize = parts.iter().map(|(_, n)| n).sum();
        let mut out = LossStats::default();
        for (s, n) in parts {
            let w = *n as f64 / total.max(1) as f64;
            out.loss += w * s.loss;
            out.rewards_chosen += w * s.rewards_chosen;
            out.rewards_rejected += w * s.rewards_rejected;
            out.rewards_accuracies += w * s.rewards_accuracies;
            out.rewards_margins += w * s.rewards_margins;
            out.logps_chosen += w * s.logps_chosen;
            out.logps_rejected += w * s.logps_rejected;
        }
        out
    }
}

/// The loss `[1]` (mean over pairs, differentiable through `policy`) and its statistics.
/// `reference = None` is reference-free (reference log-probs of zero).
pub fn dap_loss(
    config: &LossConfig,
    policy: &PairLogps,
    reference: Option<&PairLogps>,
) -> (Tensor<1>, LossStats) {
    let averaged = config.averaged();
    let (pc, pr) = policy.values(averaged);
    let (rc, rr) = match reference {
        Some(r) => r.values(averaged),
        None => (pc.zeros_like(), pr.zeros_like()),
    };
    let chosen_ratio = pc - rc;
    let rejected_ratio = pr - rr;
    let h = chosen_ratio.clone() - rejected_ratio.clone();
    let beta = config.beta;
    let e = config.label_smoothing;
    let per_pair = match config.kind {
        LossKind::Dpo => -(log_sigmoid(h.clone() * beta) * (1.0 - e) + log_sigmoid(h * -beta) * e),
        LossKind::Robust => {
            (-log_sigmoid(h.clone() * beta) * (1.0 - e) + log_sigmoid(h * -beta) * e)
                / (1.0 - 2.0 * e)
        }
        LossKind::Ipo => (h - 1.0 / (2.0 * beta)).square(),
        LossKind::Slic => relu(-(h * beta) + 1.0),
    };
    let mut loss = per_pair.mean();
    if config.sft_weight > 0.0 {
        let nll = -(policy.chosen.clone() / policy.chosen_tokens.clone().clamp_min(1.0));
        loss = loss + nll.mean() * config.sft_weight;
    }
    let rewards_c = to_f32_vec(chosen_ratio.detach() * beta);
    let rewards_r = to_f32_vec(rejected_ratio.detach() * beta);
    let mean = |v: &[f32]| v.iter().map(|&x| x as f64).sum::<f64>() / v.len().max(1) as f64;
    let stats = LossStats {
        loss: to_f32_vec(loss.clone().detach())[0] as f64,
        rewards_chosen: mean(&rewards_c),
        rewards_rejected: mean(&rewards_r),
        rewards_accuracies: mean(
            &rewards_c
                .iter()
                .zip(&rewards_r)
                .map(|(c, r)| if c > r { 1.0 } else { 0.0 })
                .collect::<Vec<f32>>(),
        ),
        rewards_margins: mean(
            &rewards_c
                .iter()
                .zip(&rewards_r)
                .map(|(c, r)| c - r)
                .collect::<Vec<_>>(),
        ),
        logps_chosen: mean(&to_f32_vec(policy.chosen.clone().detach())),
        logps_rejected: mean(&to_f32_vec(policy.rejected.clone().detach())),
    };
    (loss, stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    fn logps(c: &[f32], r: &[f32], lc: &[f32], lr: &[f32]) -> PairLogps {
        PairLogps::from_host(c, r, lc, lr, &Device::flex())
    }

    fn loss(config: &LossConfig, policy: &PairLogps, reference: Option<&PairLogps>) -> f64 {
        dap_loss(config, policy, reference).1.loss
    }

    fn config(kind: LossKind, beta: f64) -> LossConfig {
        LossConfig {
            kind,
            beta,
            ..LossConfig::default()
        }
    }

    #[test]
    fn closed_forms_at_policy_equal_reference() {
        let p = logps(&[-3.0, -7.5], &[-4.0, -2.0], &[3.0, 5.0], &[2.0, 4.0]);
        for beta in [0.1, 0.5, 2.0] {
            let dpo = loss(&config(LossKind::Dpo, beta), &p, Some(&p));
            assert!((dpo - std::f64::consts::LN_2).abs() < 1e-6, "{dpo}");
            let ipo = loss(&config(LossKind::Ipo, beta), &p, Some(&p));
            assert!(
                (ipo - 1.0 / (4.0 * beta * beta)).abs() < 1e-4 * ipo,
                "{ipo}"
            );
            let slic = loss(&config(LossKind::Slic, beta), &p, Some(&p));
            assert!((slic - 1.0).abs() < 1e-6);
            let mut robust = config(LossKind::Robust, beta);
            robust.label_smoothing = 0.2;
            assert!((loss(&robust, &p, Some(&p)) - std::f64::consts::LN_2).abs() < 1e-6);
        }
    }

    #[test]
    fn hand_computed_values() {
        // One pair: policy chosen -2 (4 tokens), rejected -5 (2 tokens);
        // reference chosen -3, rejected -4. Summed: h = (-2 + 3) - (-5 + 4) = 2.
        // Averaged: h = (-0.5 + 0.75) - (-2.5 + 2) = 0.75.
        let p = logps(&[-2.0], &[-5.0], &[4.0], &[2.0]);
        let r = logps(&[-3.0], &[-4.0], &[4.0], &[2.0]);
        let sig = |x: f64| 1.0 / (1.0 + (-x).exp());
        let beta = 0.5;
        let dpo = loss(&config(LossKind::Dpo, beta), &p, Some(&r));
        assert!((dpo - -(sig(1.0)).ln()).abs() < 1e-6);
        let mut cdpo = config(LossKind::Dpo, beta);
        cdpo.label_smoothing = 0.1;
        let want = -0.9 * sig(1.0).ln() - 0.1 * sig(-1.0).ln();
        assert!((loss(&cdpo, &p, Some(&r)) - want).abs() < 1e-6);
        let mut robust = config(LossKind::Robust, beta);
        robust.label_smoothing = 0.1;
        let want = (-0.9 * sig(1.0).ln() + 0.1 * sig(-1.0).ln()) / 0.8;
        assert!((loss(&robust, &p, Some(&r)) - want).abs() < 1e-6);
        let ipo = loss(&config(LossKind::Ipo, beta), &p, Some(&r));
        assert!((ipo - (0.75f64 - 1.0).powi(2)).abs() < 1e-6, "{ipo}");
        let slic = loss(&config(LossKind::Slic, beta), &p, Some(&r));
        assert!(slic.abs() < 1e-7, "1 - 0.5 * 2 = 0");
        let mut slic_small = config(LossKind::Slic, 0.25);
        slic_small.length_normalized = false;
        assert!((loss(&slic_small, &p, Some(&r)) - 0.5).abs() < 1e-6);
        let mut ln = config(LossKind::Dpo, beta);
        ln.length_normalized = true;
        assert!((loss(&ln, &p, Some(&r)) - -(sig(0.375)).ln()).abs() < 1e-6);
        let mut sft = config(LossKind::Dpo, beta);
        sft.sft_weight = 2.0;
        assert!((loss(&sft, &p, Some(&r)) - (-(sig(1.0)).ln() + 2.0 * 0.5)).abs() < 1e-6);
        // Reference-free: h = -2 - (-5) = 3.
        assert!((loss(&config(LossKind::Dpo, beta), &p, None) - -(sig(1.5)).ln()).abs() < 1e-6);
    }

    #[test]
    fn statistics_match_trl_definitions() {
        let p = logps(&[-2.0, -6.0], &[-5.0, -1.0], &[1.0, 1.0], &[1.0, 1.0]);
        let r = logps(&[-3.0, -3.0], &[-4.0, -4.0], &[1.0, 1.0], &[1.0, 1.0]);
        let (_, s) = dap_loss(&config(LossKind::Dpo, 0.1), &p, Some(&r));
        // chosen rewards 0.1 * [1, -3], rejected 0.1 * [-1, 3]
        assert!((s.rewards_chosen - -0.1).abs() < 1e-6);
        assert!((s.rewards_rejected - 0.1).abs() < 1e-6);
        assert!((s.rewards_accuracies - 0.5).abs() < 1e-9);
        assert!((s.rewards_margins - -0.2).abs() < 1e-6);
        assert!((s.logps_chosen - -4.0).abs() < 1e-6);
        assert!((s.logps_rejected - -3.0).abs() < 1e-6);
        let mean = LossStats::weighted_mean(&[(s, 2), (LossStats::default(), 2)]);
        assert!((mean.logps_chosen - -2.0).abs() < 1e-6);
    }

    #[test]
    fn invalid_settings_are_rejected() {
        assert!(config(LossKind::Dpo, 0.0).validate().is_err());
        let mut c = config(LossKind::Robust, 0.1);
        c.label_smoothing = 0.5;
        assert!(c.validate().is_err());
        assert!(LossKind::parse("kto").is_err());
    }
}
