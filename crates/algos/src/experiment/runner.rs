//! One run of the experiment's grid: trained online with a learning-curve point after each
//! phase, then evaluated on the test (or dev) prompts; what it spent, where.

use std::path::PathBuf;
use std::time::Instant;

use bpo_data::PromptRecord;
use bpo_model::Transformer;

use crate::error::AlgoError;
use crate::experiment::config::{ExperimentConfig, Method, MethodSettings};
use crate::experiment::evaluator::Evaluator;
use crate::experiment::progress::Progress;
use crate::experiment::results::{RunResult, Timing};
use crate::experiment::reuse::{Evaluated, run_settings, store, stored};
use crate::loss::LossKind;
use crate::metrics::MetricsRecord;
use crate::online::phase::PhaseRecord;
use crate::online::run::train_online;
use crate::trainer::Observer;

/// Receives the experiment's progress: which run starts, and everything a run reports.
pub trait ExperimentObserver: Observer {
    /// Run `index` (0-based) of `total` starts.
    fn run_start(&mut self, index: usize, total: usize, title: &str);
}

/// Evaluates the win rate on the curve prompts after each phase and keeps the ETA up to date.
struct RunObserver<'a> {
    inner: &'a mut dyn Observer,
    evaluator: &'a mut Evaluator,
    prompts: &'a [PromptRecord],
    progress: &'a mut Progress,
    curve: Vec<(usize, f64)>,
    curve_seconds: f64,
}

impl Observer for RunObserver<'_> {
    fn message(&mut self, text: &str) {
        self.inner.message(text);
    }

    fn step(&mut self, step: usize, total: usize, record: &MetricsRecord) {
        self.inner.step(step, total, record);
    }

    fn phase_end(
        &mut self,
        phase: usize,
        pairs_used: usize,
        policy: &Transformer,
    ) -> Result<(), AlgoError> {
        if !self.prompts.is_empty() {
            let started = Instant::now();
            let report = self.evaluator.win_rate(policy, self.prompts)?;
            self.curve.push((pairs_used, report.win_rate.value));
            self.curve_seconds += started.elapsed().as_secs_f64();
        }
        self.progress.phase_done();
        let eta = self.progress.eta_message();
        self.inner.message(&eta);
        self.inner.phase_end(phase, pairs_used, policy)
    }
}

/// One run of the grid.
pub(crate) struct RunSpec {
    pub(crate) loss: LossKind,
    pub(crate) method: Method,
    pub(crate) phases: usize,
    pub(crate) seed: usize,
    pub(crate) run_seed: u64,
    pub(crate) settings: MethodSettings,
    pub(crate) dir: PathBuf,
    /// Evaluate with the held-out judge and the KL (final runs), or the gold win rate only
    /// (tuning).
    pub(crate) full_evaluation: bool,
}

/// Trains one run online and evaluates its final policy on `prompts`, or takes its stored
/// result when an earlier experiment finished the same run ([`crate::experiment::reuse`]).
pub(crate) fn train_and_evaluate(
    config: &ExperimentConfig,
    spec: RunSpec,
    evaluator: &mut Evaluator,
    prompts: &[PromptRecord],
    curve_prompts: &[PromptRecord],
    progress: &mut Progress,
    observer: &mut dyn Observer,
) -> Result<RunResult, AlgoError> {
    let online = config.run_config(
        spec.loss,
        spec.method,
        spec.phases,
        spec.settings,
        spec.run_seed,
        spec.dir.clone(),
    );
    let evaluated = Evaluated {
        eval: &config.eval,
        full: spec.full_evaluation,
        prompts,
        curve_prompts,
    };
    let settings = run_settings(&online, &evaluated);
    let result_path = spec.dir.join("result.json");
    if let Some(mut run) = stored::<RunResult>(&result_path, &settings) {
        run.dir = spec.dir.clone();
        progress.skip_run(spec.phases);
        observer.message(&format!(
            "reusing the finished run in {} (same settings)",
            spec.dir.display()
        ));
        return Ok(run);
    }
    let initial_point = if curve_prompts.is_empty() {
        None
    } else {
        let initial = evaluator.initial.clone();
        Some((
            0,
            evaluator.win_rate(&initial, curve_prompts)?.win_rate.value,
        ))
    };
    let mut run_observer = RunObserver {
        inner: observer,
        evaluator,
        prompts: curve_prompts,
        progress,
        curve: initial_point.into_iter().collect(),
        curve_seconds: 0.0,
    };
    let outcome = train_online(&online, None, &mut run_observer)?;
    let (curve, curve_seconds) = (run_observer.curve, run_observer.curve_seconds);
    // The run is complete: its checkpoints (full weights) are no longer needed.
    let _ = std::fs::remove_dir_all(spec.dir.join("checkpoints"));
    let started = Instant::now();
    let report = if spec.full_evaluation {
        evaluator.evaluate(&outcome.model, prompts)?
    } else {
        evaluator.win_rate(&outcome.model, prompts)?
    };
    let phases = &outcome.phases;
    let sum = |f: &dyn Fn(&PhaseRecord) -> f64| phases.iter().map(f).sum();
    let run = RunResult {
        loss: spec.loss,
        method: spec.method,
        phases: spec.phases,
        seed: spec.seed,
        settings: spec.settings,
        dir: spec.dir,
        budget: online.budget,
        pairs: phases.iter().map(|p| p.pairs).sum(),
        dropped_identical: phases.iter().map(|p| p.dropped_identical).sum(),
        dropped_ties: phases.iter().map(|p| p.dropped_ties).sum(),
        steps: outcome.steps,
        timing: Timing {
            sampling: sum(&|p| p.sample_seconds),
            reference: sum(&|p| p.reference_seconds),
            training: sum(&|p| p.train_seconds),
            evaluation: started.elapsed().as_secs_f64(),
            curves: curve_seconds,
        },
        report,
        curve,
        phase_metrics: outcome.phases,
    };
    store(&result_path, &settings, &run)?;
    Ok(run)
}
