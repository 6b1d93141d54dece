//! What `bpo experiment` runs: the grid of methods, losses, F and seeds, and how policies are
//! evaluated.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::annotate::AnnotatorConfig;
use crate::config::{LoraConfig, ReferenceMode};
use crate::error::AlgoError;
use crate::eval::EvalSettings;
use crate::loss::LossKind;
use crate::online::config::{OnlineConfig, OnlineSampling};

/// The three ways of spending the budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
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

    /// Name with its F in reports: `BPO (F=2)`; offline DAP (always F = 1) without it.
    pub fn label_at(self, phases: usize) -> String {
        match self {
            Method::Offline => self.label().to_owned(),
            _ => format!("{} (F={phases})", self.label()),
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
    /// Evaluate a seeded sample of this many prompts, stratified by genre
    /// ([`crate::online::sample_prompts`]); none = every prompt. Default none (the whole test
    /// split, 600 prompts).
    pub limit: Option<usize>,
    /// Prompts for the learning curves (win rate after each phase). Default `sentiment:dev`.
    pub curve_prompts: String,
    /// A stratified sample of this many curve prompts; 0 = no curves (a frontier draws none).
    /// Default 32.
    pub curve_limit: usize,
    /// Seed of the samples of prompts. Default 0.
    pub sample_seed: u64,
    /// The held-out judge. Default AFINN-165.
    pub heldout: Option<AnnotatorConfig>,
    /// Generation, bootstrap and KL settings.
    pub settings: EvalSettings,
}

impl Default for ExperimentEval {
    fn default() -> Self {
        ExperimentEval {
            prompts: "sentiment:test".into(),
            limit: None,
            curve_prompts: "sentiment:dev".into(),
            curve_limit: 32,
            sample_seed: 0,
            heldout: Some(AnnotatorConfig::Afinn),
            settings: EvalSettings {
                max_new_tokens: 40,
                max_prompt_tokens: Some(64),
                batch_size: 64,
                kl_prompts: Some(120),
                ..EvalSettings::default()
            },
        }
    }
}

/// A method's own learning rate and beta (chosen on dev by `--tune`, or given).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MethodSettings {
    /// Peak learning rate.
    pub lr: f64,
    /// The loss's beta.
    pub beta: f64,
}

/// Equal tuning (`bpo experiment --tune`): every method gets the same grid of learning rate x
/// beta on the dev prompts, and runs on the test prompts at its own best dev setting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TuneConfig {
    /// Prompts the settings are chosen on. Default `sentiment:dev`.
    pub prompts: String,
    /// A stratified sample of this many of them; none = all. Default 200.
    pub limit: Option<usize>,
    /// Learning rates tried. Default 1e-3, 2e-3, 4e-3, 8e-3 (doubling, so that the best sits
    /// inside the grid).
    pub lrs: Vec<f64>,
    /// Betas tried. Default 0.1, 0.3.
    pub betas: Vec<f64>,
    /// Seeds per setting (seed i is `online.run.seed + 1000 + i`, apart from the test seeds).
    /// Default 1.
    pub seeds: usize,
}

impl Default for TuneConfig {
    fn default() -> Self {
        TuneConfig {
            prompts: "sentiment:dev".into(),
            limit: Some(200),
            lrs: vec![1e-3, 2e-3, 4e-3, 8e-3],
            betas: vec![0.1, 0.3],
            seeds: 1,
        }
    }
}

/// Frontier mode (`bpo experiment --frontier`): every method runs at every beta of a grid, so
/// that methods are compared where they land in (KL to the initial policy, win rate) space, at
/// matched KL, instead of at one setting each. Learning rates stay each method's own
/// ([`ExperimentConfig::settings_for`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FrontierConfig {
    /// Betas every method runs at, for offline DAP and the first F > 1 of `phases`. Default
    /// 0.03, 0.1, 0.3, 1.0.
    pub betas: Vec<f64>,
    /// Betas for the other values of F in `phases` (the F axis, e.g. two betas around the
    /// frontiers' knee); none = `betas`. Default none.
    pub more_phases_betas: Option<Vec<f64>>,
    /// KL values at which two frontiers are compared; none = the midpoints of four equal parts
    /// of the KL range both frontiers cover. Default none.
    pub kl: Option<Vec<f64>>,
}

impl Default for FrontierConfig {
    fn default() -> Self {
        FrontierConfig {
            betas: vec![0.03, 0.1, 0.3, 1.0],
            more_phases_betas: None,
            kl: None,
        }
    }
}

/// One run of the grid.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlannedRun {
    /// The loss.
    pub loss: LossKind,
    /// How the budget is spent.
    pub method: Method,
    /// Collection phases (1 for offline DAP).
    pub phases: usize,
    /// Learning rate and beta.
    pub settings: MethodSettings,
    /// Seed index (the run seed is `online.run.seed` + this).
    pub seed: usize,
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
    /// Learning rate and beta per method (`offline`, `online_dap`, `bpo`), overriding
    /// `online.optim.lr` and `online.loss.beta`; `--tune` fills it from the dev split.
    pub per_method: BTreeMap<Method, MethodSettings>,
    /// Choose `per_method` on dev first (`--tune`). Default none.
    pub tune: Option<TuneConfig>,
    /// Run every method over a grid of betas and compare frontiers (`--frontier`). Default
    /// none.
    pub frontier: Option<FrontierConfig>,
    /// Evaluation.
    pub eval: ExperimentEval,
    /// Results directory. Default `runs/experiment`.
    pub out: PathBuf,
}

impl Default for ExperimentConfig {
    /// The embedded default, sized to finish in about 15 minutes on a 2-core CPU with one seed:
    /// SmolLM2-135M-Instruct, the sentiment task, VADER as gold annotator, AFINN-165 as the
    /// held-out judge, 96 annotated pairs in steps of 8, LoRA r = 16 on all linear layers of the
    /// last 10 of the 30 blocks (no backward pass below them), learning rate 3e-3, 24-token
    /// responses, evaluated on the whole test split (600 prompts, see [`ExperimentEval`]).
    /// The shared learning rate comes from an earlier dev-split sweep (at 1e-3 no method moved
    /// the policy within 96 pairs, at 6e-3 all of them over-optimised); `--tune` chooses one per
    /// method instead.
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
            per_method: BTreeMap::new(),
            tune: None,
            frontier: None,
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
        self.eval.settings.kl_prompts = Some(4);
        if let Some(tune) = &mut self.tune {
            tune.lrs.truncate(1);
            tune.betas.truncate(1);
            tune.limit = Some(8);
            tune.seeds = 1;
        }
        if let Some(frontier) = &mut self.frontier {
            frontier.betas.truncate(2);
            if let Some(betas) = &mut frontier.more_phases_betas {
                betas.truncate(1);
            }
        }
        self
    }

    /// The learning rate and beta `method` runs at: its `per_method` entry, else the shared
    /// `online.optim.lr` and `online.loss.beta`.
    pub fn settings_for(&self, method: Method) -> MethodSettings {
        self.per_method
            .get(&method)
            .copied()
            .unwrap_or(MethodSettings {
                lr: self.online.optim.lr,
                beta: self.online.loss.beta,
            })
    }

    /// The online config of one run: `loss`, `method` at `settings`, `phases`, seed `seed`,
    /// output `out`.
    pub fn run_config(
        &self,
        loss: LossKind,
        method: Method,
        phases: usize,
        settings: MethodSettings,
        seed: u64,
        out: PathBuf,
    ) -> OnlineConfig {
        let mut online = self.online.clone();
        online.loss.kind = loss;
        online.loss.beta = settings.beta;
        online.optim.lr = settings.lr;
        online.phases = phases;
        online.reference.mode = match method {
            Method::Bpo => ReferenceMode::Behavior,
            Method::Offline | Method::OnlineDap => ReferenceMode::Initial,
        };
        online.run.seed = seed;
        online.run.out = out;
        online
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
        if self.eval.limit == Some(0) || self.tune.as_ref().is_some_and(|t| t.limit == Some(0)) {
            return Err(AlgoError::Config(
                "eval.limit and tune.limit must be at least 1 (leave them out for every prompt)"
                    .into(),
            ));
        }
        if self.tune.is_some()
            && (self.losses.len() > 1 || self.phases.iter().filter(|&&f| f > 1).count() > 1)
        {
            return Err(AlgoError::Config(
                "--tune chooses one setting per method: run it with one loss and one F > 1 \
                 (tune each loss or F in an experiment of its own)"
                    .into(),
            ));
        }
        let positive = |v: f64| v.is_finite() && v > 0.0;
        if let Some(frontier) = &self.frontier {
            if self.tune.is_some() {
                return Err(AlgoError::Config(
                    "--frontier and --tune do not go together: a frontier runs every beta \
                     (tune the learning rates first, then give them in per_method)"
                        .into(),
                ));
            }
            if self.eval.settings.kl_samples == 0 {
                return Err(AlgoError::Config(
                    "--frontier places runs by their KL to the initial policy: \
                     eval.settings.kl_samples must be at least 1"
                        .into(),
                ));
            }
            let betas = frontier.more_phases_betas.iter().flatten();
            if frontier.betas.is_empty()
                || !frontier.betas.iter().chain(betas).all(|&v| positive(v))
                || frontier
                    .more_phases_betas
                    .as_ref()
                    .is_some_and(Vec::is_empty)
            {
                return Err(AlgoError::Config(
                    "frontier.betas and frontier.more_phases_betas must be non-empty lists of \
                     positive numbers"
                        .into(),
                ));
            }
            if frontier
                .kl
                .as_ref()
                .is_some_and(|kl| kl.is_empty() || !kl.iter().all(|v| v.is_finite()))
            {
                return Err(AlgoError::Config(
                    "frontier.kl must be a non-empty list of numbers (leave it out for the \
                     default)"
                        .into(),
                ));
            }
        }
        if let Some(tune) = &self.tune
            && (tune.lrs.is_empty()
                || tune.betas.is_empty()
                || tune.seeds == 0
                || !tune.lrs.iter().chain(&tune.betas).all(|&v| positive(v)))
        {
            return Err(AlgoError::Config(
                "tune.lrs and tune.betas must be non-empty lists of positive numbers and tune.seeds at least 1".into(),
            ));
        }
        if let Some((method, s)) = self
            .per_method
            .iter()
            .find(|(_, s)| !positive(s.lr) || !positive(s.beta))
        {
            return Err(AlgoError::Config(format!(
                "per_method.{}: lr and beta must be positive, got {} and {}",
                method.slug(),
                s.lr,
                s.beta
            )));
        }
        self.online.validate()
    }

    /// Every run of the grid, seed by seed (all of seed 0 first, so that an interrupted grid
    /// has whole seeds done); within a seed, by loss, F and method. In frontier mode each
    /// method runs at each beta of the frontier (its own learning rate).
    pub fn runs(&self) -> Vec<PlannedRun> {
        let first_online = self.phases.iter().copied().find(|&f| f > 1);
        let betas_at = |method: Method, phases: usize| -> Vec<f64> {
            match &self.frontier {
                None => vec![self.settings_for(method).beta],
                Some(frontier) => match (&frontier.more_phases_betas, phases) {
                    (Some(more), f) if f > 1 && Some(f) != first_online => more.clone(),
                    _ => frontier.betas.clone(),
                },
            }
        };
        let mut runs = Vec::new();
        for seed in 0..self.seeds {
            for &loss in &self.losses {
                let mut cells = vec![(Method::Offline, 1)];
                for &f in self.phases.iter().filter(|&&f| f > 1) {
                    cells.push((Method::OnlineDap, f));
                    cells.push((Method::Bpo, f));
                }
                for (method, phases) in cells {
                    for beta in betas_at(method, phases) {
                        let settings = MethodSettings {
                            beta,
                            ..self.settings_for(method)
                        };
                        runs.push(PlannedRun {
                            loss,
                            method,
                            phases,
                            settings,
                            seed,
                        });
                    }
                }
            }
        }
        runs
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
