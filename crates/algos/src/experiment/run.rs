//! Running the grid: the initial policy's evaluation, then every (loss, method, F, seed) run
//! trained online and evaluated, with learning curves after each phase.

use std::time::Instant;

use bpo_data::PromptRecord;
use bpo_model::fsutil::write_atomic;
use bpo_model::{Transformer, load};

use crate::annotate::Annotator;
use crate::config::ReferenceMode;
use crate::error::AlgoError;
use crate::eval::{EvalReport, EvalSettings, evaluate};
use crate::experiment::config::{ExperimentConfig, Method};
use crate::experiment::report::{plot_results, results_markdown};
use crate::experiment::results::{ExperimentResults, RunResult};
use crate::experiment::stats::summarise;
use crate::metrics::MetricsRecord;
use crate::online::prompts::load_prompts;
use crate::online::run::train_online;
use crate::trainer::{Observer, open_device};

/// Evaluates the win rate on the curve prompts after each phase.
struct CurveObserver<'a> {
    inner: &'a mut dyn Observer,
    prompts: &'a [PromptRecord],
    gold: &'a mut dyn Annotator,
    settings: &'a EvalSettings,
    tokenizer: &'a bpo_model::Tokenizer,
    curve: Vec<(usize, f64)>,
}

impl Observer for CurveObserver<'_> {
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
            let settings = EvalSettings {
                kl_samples: 0,
                bootstrap: 0,
                ..self.settings.clone()
            };
            let report = evaluate(
                policy,
                None,
                self.tokenizer,
                self.prompts,
                self.gold,
                None,
                &settings,
            )?;
            self.curve.push((pairs_used, report.win_rate.value));
        }
        self.inner.phase_end(phase, pairs_used, policy)
    }
}

/// Receives the experiment's progress: which run starts, and everything a run reports.
pub trait ExperimentObserver: Observer {
    /// Run `index` (0-based) of `total` starts.
    fn run_start(&mut self, index: usize, total: usize, title: &str);
}

fn prompts_limited(spec: &str, limit: Option<usize>) -> Result<Vec<PromptRecord>, AlgoError> {
    let mut prompts = load_prompts(spec)?;
    if let Some(limit) = limit {
        prompts.truncate(limit);
    }
    Ok(prompts)
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
    let test = prompts_limited(&config.eval.prompts, config.eval.limit)?;
    let curve_prompts = if config.eval.curve_limit > 0 {
        prompts_limited(&config.eval.curve_prompts, Some(config.eval.curve_limit))?
    } else {
        Vec::new()
    };
    let mut gold = config.online.annotator.build()?;
    let mut heldout = config
        .eval
        .heldout
        .as_ref()
        .map(|h| h.build())
        .transpose()?;
    let (initial, tokenizer) = load(&config.online.model, &device)?;
    observer.message(&format!(
        "evaluating the initial policy on {} prompts",
        test.len()
    ));
    let eval_model = |model: &Transformer,
                      gold: &mut dyn Annotator,
                      heldout: Option<&mut Box<dyn Annotator>>|
     -> Result<EvalReport, AlgoError> {
        evaluate(
            model,
            Some(&initial),
            &tokenizer,
            &test,
            gold,
            heldout.map(|h| h.as_mut() as &mut dyn Annotator),
            &config.eval.settings,
        )
    };
    let initial_report = eval_model(&initial, gold.as_mut(), heldout.as_mut())?;
    let initial_curve_point = if curve_prompts.is_empty() {
        None
    } else {
        let settings = EvalSettings {
            kl_samples: 0,
            bootstrap: 0,
            ..config.eval.settings.clone()
        };
        Some(
            evaluate(
                &initial,
                None,
                &tokenizer,
                &curve_prompts,
                gold.as_mut(),
                None,
                &settings,
            )?
            .win_rate
            .value,
        )
    };

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
        let mut online = config.online.clone();
        online.loss.kind = loss;
        online.phases = phases;
        online.reference.mode = match method {
            Method::Bpo => ReferenceMode::Behavior,
            Method::Offline | Method::OnlineDap => ReferenceMode::Initial,
        };
        online.run.seed = config.online.run.seed + seed as u64;
        online.run.out = dir.clone();
        let run_started = Instant::now();
        let mut curve_observer = CurveObserver {
            inner: observer,
            prompts: &curve_prompts,
            gold: gold.as_mut(),
            settings: &config.eval.settings,
            tokenizer: &tokenizer,
            curve: initial_curve_point.map(|w| (0, w)).into_iter().collect(),
        };
        let outcome = train_online(&online, None, &mut curve_observer)?;
        let curve = curve_observer.curve;
        // The run is complete: its checkpoints (full weights) are no longer needed.
        let _ = std::fs::remove_dir_all(dir.join("checkpoints"));
        let train_seconds = run_started.elapsed().as_secs_f64();
        observer.message(&format!("{title}: evaluating on {} prompts", test.len()));
        let report = eval_model(&outcome.model, gold.as_mut(), heldout.as_mut())?;
        observer.message(&format!(
            "{title}: win rate {:.3} [{:.3}, {:.3}], gold score {:.3}",
            report.win_rate.value, report.win_rate.low, report.win_rate.high, report.gold_score
        ));
        let pairs = outcome.phases.iter().map(|p| p.pairs).sum();
        runs.push(RunResult {
            loss,
            method,
            phases,
            seed,
            dir,
            budget: online.budget,
            pairs,
            train_seconds,
            report,
            curve,
            phase_metrics: outcome.phases,
        });
    }

    let (rows, comparisons) = summarise(config, &initial_report, &runs);
    let results = ExperimentResults {
        config: config.clone(),
        gold: gold.name(),
        heldout: heldout.as_ref().map(|h| h.name()),
        initial: initial_report,
        runs,
        rows,
        comparisons,
        seconds: started.elapsed().as_secs_f64(),
    };
    let json = serde_json::to_string_pretty(&results).expect("json");
    write_atomic(&out.join("results.json"), json.as_bytes())?;
    let plots = plot_results(&results, out)?;
    write_atomic(
        &out.join("results.md"),
        results_markdown(&results, &plots).as_bytes(),
    )?;
    Ok(results)
}
