//! Running the experiment: optional tuning on dev, the initial policy's evaluation, then every
//! (loss, method, F, seed) run of the grid ([`crate::experiment::runner`]); then statistics and
//! the report.

use std::path::Path;
use std::time::Instant;

use bpo_data::PromptRecord;
use bpo_model::fsutil::write_atomic;
use bpo_model::hub::HubId;
use bpo_model::spec::{ModelSource, load_source, resolve};

use crate::error::AlgoError;
use crate::eval::EvalReport;
use crate::experiment::config::ExperimentConfig;
use crate::experiment::evaluator::Evaluator;
use crate::experiment::frontier_summary::summarise_frontier;
use crate::experiment::plots::plot_results;
use crate::experiment::progress::Progress;
use crate::experiment::report::{results_markdown, summary_lines};
use crate::experiment::results::ExperimentResults;
use crate::experiment::reuse::{initial_settings, store, stored};
use crate::experiment::runner::{ExperimentObserver, RunSpec, train_and_evaluate};
use crate::experiment::stats::summarise;
use crate::experiment::tune::tune;
use crate::online::prompts::{load_prompts, sample_prompts};
use crate::trainer::open_device;

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
    let sample = |prompts, limit| sample_prompts(prompts, limit, config.eval.sample_seed);
    let split = load_prompts(&config.eval.prompts)?;
    let split_size = split.len();
    let test = sample(split, config.eval.limit);
    let whole_split = test.len() == split_size;
    // A frontier draws no learning curves: it compares where runs end.
    let curve_prompts = match (config.eval.curve_limit, &config.frontier) {
        (0, _) | (_, Some(_)) => Vec::new(),
        (n, None) => sample(load_prompts(&config.eval.curve_prompts)?, Some(n)),
    };
    let source = resolve(&config.online.model)?;
    let (initial, tokenizer) = load_source(&source, &device)?;
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
    if let Some(pinned) = pinned_hub_model(&config.online.model, &source) {
        // Every run trains from the weights loaded now, and stored runs are keyed by them.
        observer.message(&format!("model {} pinned as {pinned}", config.online.model));
        config.online.model = pinned;
    }
    if whole_split {
        // A limit at or over the split's size kept every prompt: report it as the whole split.
        config.eval.limit = None;
    }
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
    let initial_path = out.join("initial.json");
    let initial_key = initial_settings(&config.online, &config.eval, &test);
    let initial_report = match stored::<EvalReport>(&initial_path, &initial_key) {
        Some(report) => {
            observer.message("reusing the initial policy's evaluation (initial.json)");
            report
        }
        None => {
            observer.message(&format!(
                "evaluating the initial policy on {} prompts",
                test.len()
            ));
            let initial = evaluator.initial.clone();
            let report = evaluator.evaluate(&initial, &test)?;
            store(&initial_path, &initial_key, &report)?;
            report
        }
    };
    let grid = config.runs();
    let mut runs = Vec::with_capacity(grid.len());
    for (index, planned) in grid.iter().enumerate() {
        let (loss, method, phases, seed) =
            (planned.loss, planned.method, planned.phases, planned.seed);
        // A frontier has several betas per method: its run directories and titles name them.
        let (cell, title) = match config.frontier {
            Some(_) => (
                format!("{}-F{phases}-beta{}", method.slug(), planned.settings.beta),
                format!(
                    "{} {} F={phases} beta {} seed {seed}",
                    loss.name(),
                    method.label(),
                    planned.settings.beta
                ),
            ),
            None => (
                format!("{}-F{phases}", method.slug()),
                format!("{} {} F={phases} seed {seed}", loss.name(), method.label()),
            ),
        };
        let dir = out
            .join("runs")
            .join(loss.name())
            .join(cell)
            .join(format!("seed-{seed}"));
        observer.run_start(index, grid.len(), &title);
        let spec = RunSpec {
            loss,
            method,
            phases,
            seed,
            run_seed: config.online.run.seed + seed as u64,
            settings: planned.settings,
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
        rows: Vec::new(),
        comparisons: Vec::new(),
        tuning,
        frontier: None,
        seconds: started.elapsed().as_secs_f64(),
    };
    let results = write_report(results, out)?;
    for line in summary_lines(&results) {
        observer.message(&line);
    }
    Ok(results)
}

/// `ORG/NAME@COMMIT` for a model given as a Hub id (not a local path) and loaded from the Hub
/// cache: a revision such as `main` may move while an experiment runs or between the sessions
/// of a long one.
fn pinned_hub_model(spec: &str, source: &ModelSource) -> Option<String> {
    if Path::new(spec).exists() || HubId::parse(spec).is_none() {
        return None;
    }
    let revision = source.hub_revision()?;
    Some(format!("{}@{}", revision.repo, revision.commit))
}

/// Computes the statistics of `results` from its runs and writes `results.json`, `results.md`
/// and the plots to `out`.
fn write_report(
    mut results: ExperimentResults,
    out: &Path,
) -> Result<ExperimentResults, AlgoError> {
    (results.rows, results.comparisons) =
        summarise(&results.config, &results.initial, &results.runs)?;
    results.frontier = summarise_frontier(&results.config, &results.runs);
    let json = serde_json::to_string_pretty(&results).expect("json");
    write_atomic(&out.join("results.json"), json.as_bytes())?;
    let plots = plot_results(&results, out)?;
    write_atomic(
        &out.join("results.md"),
        results_markdown(&results, &plots).as_bytes(),
    )?;
    Ok(results)
}

/// Rewrites the report of a finished experiment in `out` from its `results.json`: statistics,
/// `results.md` and plots as this version of bpo makes them (the statistics an older version
/// stored are recomputed, not read), without training anything.
pub fn rewrite_report(out: &Path) -> Result<ExperimentResults, AlgoError> {
    let path = out.join("results.json");
    let text = std::fs::read_to_string(&path).map_err(|e| AlgoError::io(&path, e))?;
    let not_results = |e: serde_json::Error| {
        AlgoError::Config(format!(
            "{}: not the results of a bpo experiment: {e}",
            path.display()
        ))
    };
    let mut value: serde_json::Value = serde_json::from_str(&text).map_err(not_results)?;
    // The statistics are recomputed: what an older bpo derived is dropped unread.
    if let Some(object) = value.as_object_mut() {
        for derived in ["rows", "comparisons", "frontier"] {
            object.remove(derived);
        }
    }
    let results: ExperimentResults = serde_json::from_value(value).map_err(not_results)?;
    write_report(results, out)
}
