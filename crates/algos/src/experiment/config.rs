//! What `bpo experiment` runs: the grid of methods, losses, F and seeds, and how policies are
//! evaluated.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::annotate::AnnotatorConfig;
use crate::config::LoraConfig;
use crate::error::AlgoError;
use crate::eval::EvalSettings;
use crate::loss::LossKind;
use crate::online::config::{OnlineConfig, OnlineSampling};

/// The three ways of spending the budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// F = 1: all pairs from the initial model, reference = initial.
    Offline,
    /// F phases, reference = initial.
    OnlineDap,
    /// F phases, reference = the behavior model of each phase.
    Bpo,
}

impl Method {
    /// Name in reports.
    pub fn label(self) -> &'static str {
        match self {
            Method::Offline => "offline DAP",
            Method::OnlineDap => "online DAP",
            Method::Bpo => "BPO",
        }
    }

    pub(crate) fn slug(self) -> &'static str {
        match self {
            Method::Offline => "offline",
            Method::OnlineDap => "online",
            Method::Bpo => "bpo",
        }
    }
}

/// How the policies are evaluated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExperimentEval {
    /// Prompts with references for the final numbers. Default `sentiment:test`.
    pub prompts: String,
    /// Use the first N of them. Default 64.
    pub limit: Option<usize>,
    /// Prompts for the learning curves (win rate after each phase). Default `sentiment:dev`.
    pub curve_prompts: String,
    /// Use the first N of them; 0 = no curves. Default 16.
    pub curve_limit: usize,
    /// The held-out judge. Default AFINN-165.
    pub heldout: Option<AnnotatorConfig>,
    /// Generation, bootstrap and KL settings.
    pub settings: EvalSettings,
}

impl Default for ExperimentEval {
    fn default() -> Self {
        ExperimentEval {
            prompts: "sentiment:test".into(),
            limit: Some(64),
            curve_prompts: "sentiment:dev".into(),
            curve_limit: 16,
            heldout: Some(AnnotatorConfig::Afinn),
            settings: EvalSettings {
                max_new_tokens: 24,
                max_prompt_tokens: Some(64),
                batch_size: 64,
                ..EvalSettings::default()
            },
        }
    }
}

/// `bpo experiment`: the online config every run starts from (its `annotator` is the gold
/// annotator, its `phases` and `reference` are set per method), the grid and the evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExperimentConfig {
    /// The shared run settings (model, prompts, gold annotator, budget, sampling, loss, LoRA,
    /// optimizer, batch size, seed).
    pub online: OnlineConfig,
    /// Losses compared. Default `[dpo]`.
    pub losses: Vec<LossKind>,
    /// Values of F for online DAP and BPO (F = 1 is offline DAP). Default `[2]`.
    pub phases: Vec<usize>,
    /// Seeds per cell (seed i is `online.run.seed + i`). Default 1.
    pub seeds: usize,
    /// Evaluation.
    pub eval: ExperimentEval,
    /// Results directory. Default `runs/experiment`.
    pub out: PathBuf,
}

impl Default for ExperimentConfig {
    /// The embedded default, sized to finish within 20 minutes on a 2-core CPU with one seed
    /// (a SmolLM2 forward pass runs at ~100 tokens/s there): SmolLM2-135M-Instruct, the
    /// sentiment task, VADER as gold annotator, AFINN-165 as the held-out judge, 96 annotated
    /// pairs in steps of 8, LoRA r = 16 on all linear layers of the last 10 of the 30 blocks
    /// (no backward pass below them), learning rate 3e-3, 24-token responses, 64 test prompts.
    /// The learning rate was chosen on the dev split: at 1e-3 no method moves the policy within
    /// 96 pairs, at 6e-3 all of them over-optimise (KL to initial 13-19 nats).
    fn default() -> Self {
        let mut online = OnlineConfig {
            max_prompt_tokens: Some(64),
            budget: 96,
            sampling: OnlineSampling {
                max_new_tokens: 24,
                batch_size: 32,
                ..OnlineSampling::default()
            },
            lora: Some(LoraConfig {
                rank: 16,
                alpha: 32.0,
                layers: Some((20..30).collect()),
                ..LoraConfig::default()
            }),
            ..OnlineConfig::default()
        };
        online.optim.lr = 3e-3;
        online.run.batch_size = 8;
        online.run.kl_metrics = false;
        online.run.save_model = false;
        online.run.keep_checkpoints = 1;
        ExperimentConfig {
            online,
            losses: vec![LossKind::Dpo],
            phases: vec![2],
            seeds: 1,
            eval: ExperimentEval::default(),
            out: PathBuf::from("runs/experiment"),
        }
    }
}

impl ExperimentConfig {
    /// Shrinks everything to a smoke run (`--quick`): 16 pairs, 8-token responses, 8 test and
    /// 4 curve prompts, one seed, LoRA on every block (any model size).
    pub fn quick(mut self) -> Self {
        self.online.budget = 16;
        if let Some(lora) = &mut self.online.lora {
            lora.layers = None;
        }
        self.online.sampling.max_new_tokens = 8;
        self.online.run.batch_size = 4;
        self.seeds = 1;
        self.eval.limit = Some(8);
        self.eval.curve_limit = 4;
        self.eval.settings.max_new_tokens = 8;
        self.eval.settings.bootstrap = 200;
        self
    }

    /// Rejects impossible grids.
    pub fn validate(&self) -> Result<(), AlgoError> {
        if self.losses.is_empty() || self.phases.is_empty() || self.seeds == 0 {
            return Err(AlgoError::Config(
                "losses and phases must not be empty and seeds must be at least 1".into(),
            ));
        }
        if let Some(&f) = self
            .phases
            .iter()
            .find(|&&f| f == 0 || f > self.online.budget)
        {
            return Err(AlgoError::Config(format!(
                "phases: F = {f} must be between 1 and the budget ({})",
                self.online.budget
            )));
        }
        self.online.validate()
    }

    /// Every run of the grid: (loss, method, F, seed index).
    pub fn runs(&self) -> Vec<(LossKind, Method, usize, usize)> {
        let mut runs = Vec::new();
        for &loss in &self.losses {
            for seed in 0..self.seeds {
                runs.push((loss, Method::Offline, 1, seed));
                for &f in self.phases.iter().filter(|&&f| f > 1) {
                    runs.push((loss, Method::OnlineDap, f, seed));
                    runs.push((loss, Method::Bpo, f, seed));
                }
            }
        }
        runs
    }
}
