//! Running the experiment: optional tuning on dev, the initial policy's evaluation, then every
//! (loss, method, F, seed) run trained online and evaluated on the same prompts, with learning
//! curves after each phase; then statistics and the report.

use std::path::PathBuf;
use std::time::Instant;

use bpo_data::PromptRecord;
use bpo_model::fsutil::write_atomic;
use bpo_model::{Tokenizer, Transformer, load};

use crate::annotate::Annotator;
use crate::error::AlgoError;
use crate::eval::{EvalReport, EvalSettings, evaluate};
use crate::experiment::config::{ExperimentConfig, Method, MethodSettings};
use crate::experiment::plots::plot_results;
use crate::experiment::progress::Progress;
use crate::experiment::report::{results_markdown, summary_lines};
use crate::experiment::results::{ExperimentResults, RunResult, Timing};
use crate::experiment::stats::summarise;
use crate::experiment::tune::tune;
use crate::loss::LossKind;
use crate::metrics::MetricsRecord;
use crate::online::prompts::{load_prompts, sample_prompts};
use crate::online::run::train_online;
use crate::trainer::{Observer, open_device};

/// Receives the experiment's progress: which run starts, and everything a run reports.
pub trait ExperimentObserver: Observer {
    /// Run `index` (0-based) of `total` starts.
    fn run_start(&mut self, index: usize, total: usize, title: &str);
}

/// The initial policy, the judges and the settings every evaluation uses.
pub(crate) struct Evaluator {
    pub(crate) initial: Transformer,
    pub(crate) tokenizer: Tokenizer,
    pub(crate) gold: Box<dyn Annotator>,
    pub(crate) heldout: Option<Box<dyn Annotator>>,
    pub(crate) settings: EvalSettings,
}

impl Evaluator {
    /// The full evaluation of `model` on `prompts` (held-out judge and KL included).
    pub(crate) fn evaluate(
        &mut self,
        model: &Transformer,
        prompts: &[PromptRecord],
    ) -> Result<EvalReport, AlgoError> {
        let heldout = self
            .heldout
            .as_mut()
            .map(|h| h.as_mut() as &mut dyn Annotator);
        evaluate(
            model,
            Some(&self.initial),
            &self.tokenizer,
            prompts,
            self.gold.as_mut(),
            heldout,
            &self.settings,
        )
    }

    /// The gold win rate only (learning curves, tuning): no held-out judge, KL or interval.
    pub(crate) fn win_rate(
        &mut self,
        model: &Transformer,
        prompts: &[PromptRecord],
    ) -> Result<EvalReport, AlgoError> {
        let settings = EvalSettings {
            kl_samples: 0,
            bootstrap: 0,
            ..self.settings.clone()
        };
        evaluate(
            model,
            None,
            &self.tokenizer,
            prompts,
            self.gold.as_mut(),
            None,
            &settings,
        )
    }
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

/// Trains one run online and evaluates its final policy on `prompts`.
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
    let sum = |f: &dyn Fn(&crate::online::phase::PhaseRecord) -> f64| phases.iter().map(f).sum();
    Ok(RunResult {
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
    })
}

/// Runs the experiment and writes its results directory.
pub fn run_experiment(
    config: &ExperimentConfig,
    observer: &mut dyn ExperimentObserver,
) -> Result<ExperimentResults, AlgoError> {
    config.validate()?;
    let started = Instant::now();
    let out = &config.out;
    std::fs::create_dir_all(out).map_err(|e| AlgoError::io(out, e))?;
    let device = open_device(&config.online.device, config.online.dtype, observer)?;
    let sample = |spec: &str, limit| -> Result<Vec<PromptRecord>, AlgoError> {
        Ok(sample_prompts(
            load_prompts(spec)?,
            limit,
            config.eval.sample_seed,
        ))
    };
    let test = sample(&config.eval.prompts, config.eval.limit)?;
    let curve_prompts = match config.eval.curve_limit {
        0 => Vec::new(),
        n => sample(&config.eval.curve_prompts, Some(n))?,
    };
    let (initial, tokenizer) = load(&config.online.model, &device)?;
    let mut evaluator = Evaluator {
        initial,
        tokenizer,
        gold: config.online.annotator.build()?,
        heldout: config
            .eval
            .heldout
            .as_ref()
            .map(|h| h.build())
            .transpose()?,
        settings: config.eval.settings.clone(),
    };
    let mut progress = Progress::calibrate(config, &evaluator, test.len(), curve_prompts.len())?;
    observer.message(&progress.plan_message(test.len(), curve_prompts.len()));
    let mut config = config.clone();
    let tuning = match &config.tune {
        Some(tune_config) => {
            let tuning = tune(
                &config,
                tune_config,
                &mut evaluator,
                &mut progress,
                observer,
            )?;
            config.per_method.extend(tuning.chosen.iter().copied());
            Some(tuning)
        }
        None => None,
    };
    observer.message(&format!(
        "evaluating the initial policy on {} prompts",
        test.len()
    ));
    let initial = evaluator.initial.clone();
    let initial_report = evaluator.evaluate(&initial, &test)?;
    let grid = config.runs();
    let mut runs = Vec::with_capacity(grid.len());
    for (index, &(loss, method, phases, seed)) in grid.iter().enumerate() {
        let dir = out
            .join("runs")
            .join(loss.name())
            .join(format!("{}-F{phases}", method.slug()))
            .join(format!("seed-{seed}"));
        let title = format!("{} {} F={phases} seed {seed}", loss.name(), method.label());
        observer.run_start(index, grid.len(), &title);
        let spec = RunSpec {
            loss,
            method,
            phases,
            seed,
            run_seed: config.online.run.seed + seed as u64,
            settings: config.settings_for(method),
            dir,
            full_evaluation: true,
        };
        let run = train_and_evaluate(
            &config,
            spec,
            &mut evaluator,
            &test,
            &curve_prompts,
            &mut progress,
            observer,
        )?;
        observer.message(&format!(
            "{title}: win rate {:.3} (pairs {}, steps {}), gold score {:.3}",
            run.report.win_rate.value, run.pairs, run.steps, run.report.gold_score
        ));
        runs.push(run);
    }
    let (rows, comparisons) = summarise(&config, &initial_report, &runs)?;
    let genre = |r: &PromptRecord| {
        r.meta
            .get("genre")
            .and_then(|g| g.as_str())
            .unwrap_or_default()
            .to_owned()
    };
    let results = ExperimentResults {
        config: config.clone(),
        gold: evaluator.gold.name(),
        heldout: evaluator.heldout.as_ref().map(|h| h.name()),
        prompts: initial_report
            .prompt_texts
            .iter()
            .cloned()
            .zip(test.iter().map(genre))
            .collect(),
        initial: initial_report,
        runs,
        rows,
        comparisons,
        tuning,
        seconds: started.elapsed().as_secs_f64(),
    };
    let json = serde_json::to_string_pretty(&results).expect("json");
    write_atomic(&out.join("results.json"), json.as_bytes())?;
    let plots = plot_results(&results, out)?;
    write_atomic(
        &out.join("results.md"),
        results_markdown(&results, &plots).as_bytes(),
    )?;
    for line in summary_lines(&results) {
        observer.message(&line);
    }
    Ok(results)
}
