//! `bpo experiment`: the paper's question on one task. At the same annotation budget and seeds
//! it trains offline DAP (F = 1, reference = initial), online DAP (F phases, reference =
//! initial) and BPO (F phases, reference = behavior), for each loss and F asked for, evaluates
//! every final policy (and the initial one) against the references with a gold and a held-out
//! judge, and writes `results.md`, `results.json` and plots.

use std::path::{Path, PathBuf};
use std::time::Instant;

use bpo_data::PromptRecord;
use bpo_model::fsutil::write_atomic;
use bpo_model::{Transformer, load, parse_device};
use serde::{Deserialize, Serialize};

use crate::annotate::{Annotator, AnnotatorConfig};
use crate::config::{LoraConfig, ReferenceMode};
use crate::error::AlgoError;
use crate::eval::{EvalReport, EvalSettings, Interval, bootstrap_mean, evaluate, paired_bootstrap};
use crate::loss::LossKind;
use crate::metrics::{MetricsRecord, Series, line_plot};
use crate::online::{OnlineConfig, OnlineSampling, load_prompts, train_online};
use crate::train::Observer;

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

    fn slug(self) -> &'static str {
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

/// One trained and evaluated policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    /// The loss.
    pub loss: LossKind,
    /// How the budget was spent.
    pub method: Method,
    /// Collection phases.
    pub phases: usize,
    /// Seed index.
    pub seed: usize,
    /// The run directory.
    pub dir: PathBuf,
    /// Annotated comparisons spent.
    pub budget: usize,
    /// Pairs trained on (after dropping identical pairs and ties).
    pub pairs: usize,
    /// Seconds of training (sampling included).
    pub train_seconds: f64,
    /// The evaluation of the final policy.
    pub report: EvalReport,
    /// Win rate on the curve prompts after each phase: `(pairs used, win rate)`.
    pub curve: Vec<(usize, f64)>,
    /// Per-phase metrics of the run.
    pub phase_metrics: Vec<MetricsRecord>,
}

/// One row of a results table: a cell of the grid, pooled over seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// The loss.
    pub loss: LossKind,
    /// Method (none for the initial policy).
    pub method: Option<Method>,
    /// Collection phases.
    pub phases: usize,
    /// Gold win rate against the references, pooled over seeds, with its interval.
    pub win_rate: Interval,
    /// Mean gold score.
    pub gold_score: f64,
    /// Held-out judge's win rate.
    pub heldout_win_rate: Option<Interval>,
    /// Mean response tokens.
    pub mean_tokens: f64,
    /// Distinct bigrams share.
    pub distinct_2: f64,
    /// KL to the initial model.
    pub kl_initial: Option<f64>,
    /// Annotated comparisons per run.
    pub budget: usize,
    /// Mean training seconds per run.
    pub train_seconds: f64,
    /// Seeds pooled.
    pub seeds: usize,
}

/// A paired comparison of two cells on the same (seed, prompt) outcomes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// The loss.
    pub loss: LossKind,
    /// F of the online methods compared.
    pub phases: usize,
    /// What is compared, e.g. "BPO vs offline DAP".
    pub label: String,
    /// Mean win-rate difference with its interval.
    pub difference: Interval,
    /// Two-sided paired-bootstrap p-value.
    pub p_value: f64,
}

/// Everything `bpo experiment` found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentResults {
    /// The configuration.
    pub config: ExperimentConfig,
    /// The gold annotator and held-out judge.
    pub gold: String,
    /// The held-out judge's name.
    pub heldout: Option<String>,
    /// The initial policy's evaluation.
    pub initial: EvalReport,
    /// Every run.
    pub runs: Vec<RunResult>,
    /// The tables' rows.
    pub rows: Vec<Row>,
    /// Paired comparisons: BPO against offline and online DAP.
    pub comparisons: Vec<Comparison>,
    /// Wall-clock seconds of the whole experiment.
    pub seconds: f64,
}

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
    let device = parse_device(&config.online.device)?;
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
        let pairs = outcome
            .phases
            .iter()
            .map(|p| p.get("pairs").copied().unwrap_or(0.0) as usize)
            .sum();
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

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    sum / n.max(1) as f64
}

/// Pools each cell's seeds into a row and compares BPO with the two baselines.
fn summarise(
    config: &ExperimentConfig,
    initial: &EvalReport,
    runs: &[RunResult],
) -> (Vec<Row>, Vec<Comparison>) {
    let settings = &config.eval.settings;
    let mut rows = Vec::new();
    let mut comparisons = Vec::new();
    for &loss in &config.losses {
        rows.push(Row {
            loss,
            method: None,
            phases: 0,
            win_rate: initial.win_rate,
            gold_score: initial.gold_score,
            heldout_win_rate: initial.heldout.as_ref().map(|h| h.1),
            mean_tokens: initial.mean_tokens,
            distinct_2: initial.distinct_2,
            kl_initial: initial.kl_initial,
            budget: 0,
            train_seconds: 0.0,
            seeds: 1,
        });
        let cell = |method: Method, phases: usize| -> Vec<&RunResult> {
            runs.iter()
                .filter(|r| r.loss == loss && r.method == method && r.phases == phases)
                .collect()
        };
        let pooled = |cell: &[&RunResult]| -> Vec<f64> {
            cell.iter()
                .flat_map(|r| r.report.wins.iter().copied())
                .collect()
        };
        let mut cells = vec![(Method::Offline, 1)];
        for &f in config.phases.iter().filter(|&&f| f > 1) {
            cells.push((Method::OnlineDap, f));
            cells.push((Method::Bpo, f));
        }
        for (method, phases) in cells {
            let c = cell(method, phases);
            if c.is_empty() {
                continue;
            }
            let heldout: Vec<f64> = c
                .iter()
                .flat_map(|r| r.report.heldout_wins.iter().copied())
                .collect();
            let heldout_win_rate = (!heldout.is_empty())
                .then(|| bootstrap_mean(&heldout, settings.bootstrap, settings.seed ^ 1));
            let kl: Vec<f64> = c.iter().filter_map(|r| r.report.kl_initial).collect();
            rows.push(Row {
                loss,
                method: Some(method),
                phases,
                win_rate: bootstrap_mean(&pooled(&c), settings.bootstrap, settings.seed),
                gold_score: mean(c.iter().map(|r| r.report.gold_score)),
                heldout_win_rate,
                mean_tokens: mean(c.iter().map(|r| r.report.mean_tokens)),
                distinct_2: mean(c.iter().map(|r| r.report.distinct_2)),
                kl_initial: (!kl.is_empty()).then(|| mean(kl.into_iter())),
                budget: c[0].budget,
                train_seconds: mean(c.iter().map(|r| r.train_seconds)),
                seeds: c.len(),
            });
        }
        for &f in config.phases.iter().filter(|&&f| f > 1) {
            let bpo = pooled(&cell(Method::Bpo, f));
            for (other, label) in [
                (cell(Method::Offline, 1), "offline DAP"),
                (cell(Method::OnlineDap, f), "online DAP"),
            ] {
                let other = pooled(&other);
                if other.len() == bpo.len() && !bpo.is_empty() {
                    let c = paired_bootstrap(&bpo, &other, settings.bootstrap, settings.seed);
                    comparisons.push(Comparison {
                        loss,
                        phases: f,
                        label: format!("BPO (F={f}) vs {label}"),
                        difference: c.difference,
                        p_value: c.p_value,
                    });
                }
            }
        }
    }
    (rows, comparisons)
}

fn plot_results(results: &ExperimentResults, out: &Path) -> Result<Vec<PathBuf>, AlgoError> {
    let mut written = Vec::new();
    let config = &results.config;
    for &loss in &config.losses {
        let name = loss.name();
        // Win rate against pairs used, per method and F (mean over seeds).
        let mut curves: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
        for row in results
            .rows
            .iter()
            .filter(|r| r.loss == loss && r.method.is_some())
        {
            let method = row.method.expect("filtered");
            let runs: Vec<&RunResult> = results
                .runs
                .iter()
                .filter(|r| r.loss == loss && r.method == method && r.phases == row.phases)
                .collect();
            let Some(first) = runs.first() else { continue };
            let points = first
                .curve
                .iter()
                .enumerate()
                .map(|(i, &(pairs, _))| {
                    let w = mean(runs.iter().filter_map(|r| r.curve.get(i).map(|p| p.1)));
                    (pairs as f64, w)
                })
                .collect();
            curves.push((format!("{} F={}", method.label(), row.phases), points));
        }
        let series: Vec<Series<'_>> = curves
            .iter()
            .map(|(label, points)| Series {
                label,
                points: points.clone(),
            })
            .collect();
        let path = out.join(format!("win_rate_vs_pairs_{name}.png"));
        line_plot(
            &path,
            &format!("{name}: win rate (curve prompts) vs pairs used"),
            "annotated pairs used",
            "win rate vs reference",
            &series,
        )?;
        written.push(path);
        // Win rate and gold score against F / KL, one line per method.
        let per_method =
            |method: Method, x: &dyn Fn(&Row) -> Option<f64>, y: &dyn Fn(&Row) -> f64| {
                let mut points: Vec<(f64, f64)> = results
                    .rows
                    .iter()
                    .filter(|r| r.loss == loss)
                    .filter(|r| r.method == Some(method) || (r.method == Some(Method::Offline)))
                    .filter_map(|r| Some((x(r)?, y(r))))
                    .collect();
                points.sort_by(|a, b| a.0.total_cmp(&b.0));
                points
            };
        let by_f = |r: &Row| Some(r.phases as f64);
        let win = |r: &Row| r.win_rate.value;
        let f_series = [
            Series {
                label: "online DAP",
                points: per_method(Method::OnlineDap, &by_f, &win),
            },
            Series {
                label: "BPO",
                points: per_method(Method::Bpo, &by_f, &win),
            },
        ];
        let path = out.join(format!("win_rate_vs_f_{name}.png"));
        line_plot(
            &path,
            &format!("{name}: win rate vs collection phases F (F=1: offline)"),
            "F",
            "win rate vs reference",
            &f_series,
        )?;
        written.push(path);
        let kl = |r: &Row| r.kl_initial;
        let gold = |r: &Row| r.gold_score;
        let kl_series = [
            Series {
                label: "online DAP",
                points: per_method(Method::OnlineDap, &kl, &gold),
            },
            Series {
                label: "BPO",
                points: per_method(Method::Bpo, &kl, &gold),
            },
        ];
        let path = out.join(format!("gold_vs_kl_{name}.png"));
        line_plot(
            &path,
            &format!("{name}: gold score vs KL to the initial model"),
            "KL(policy || initial), nats",
            "mean gold score",
            &kl_series,
        )?;
        written.push(path);
    }
    Ok(written.into_iter().filter(|p| p.exists()).collect())
}

fn interval(i: &Interval) -> String {
    format!(
        "{:.1}% [{:.1}, {:.1}]",
        100.0 * i.value,
        100.0 * i.low,
        100.0 * i.high
    )
}

/// The Markdown report.
pub fn results_markdown(results: &ExperimentResults, plots: &[PathBuf]) -> String {
    let config = &results.config;
    let mut md = String::new();
    md.push_str("# bpo experiment\n\n");
    md.push_str(&format!(
        "Model `{}`, prompts `{}`, gold annotator {}, held-out judge {}. Budget {} annotated pairs per run, {} seed(s), evaluated on {} prompts of `{}` (greedy, {} new tokens; ties lose). Wall time {:.0} s.\n\n",
        config.online.model,
        config.online.prompts,
        results.gold,
        results.heldout.as_deref().unwrap_or("none"),
        config.online.budget,
        config.seeds,
        results.initial.prompts,
        config.eval.prompts,
        config.eval.settings.max_new_tokens,
        results.seconds
    ));
    for &loss in &config.losses {
        md.push_str(&format!("## {}\n\n", loss.name()));
        md.push_str("| method | F | win rate vs reference (95% CI) | gold score | held-out judge win rate | mean length | distinct-2 | KL to initial | budget | train time (s) |\n");
        md.push_str("|---|---|---|---|---|---|---|---|---|---|\n");
        for row in results.rows.iter().filter(|r| r.loss == loss) {
            let (method, f) = match row.method {
                Some(m) => (m.label().to_owned(), row.phases.to_string()),
                None => ("initial policy".to_owned(), "-".to_owned()),
            };
            md.push_str(&format!(
                "| {method} | {f} | {} | {:.3} | {} | {:.1} | {:.3} | {} | {} | {:.0} |\n",
                interval(&row.win_rate),
                row.gold_score,
                row.heldout_win_rate
                    .as_ref()
                    .map(interval)
                    .unwrap_or_else(|| "-".into()),
                row.mean_tokens,
                row.distinct_2,
                row.kl_initial
                    .map(|k| format!("{k:.3}"))
                    .unwrap_or_else(|| "-".into()),
                row.budget,
                row.train_seconds
            ));
        }
        md.push('\n');
        for c in results.comparisons.iter().filter(|c| c.loss == loss) {
            md.push_str(&format!(
                "- {}: win-rate difference {:+.1} points [{:+.1}, {:+.1}], paired bootstrap p = {:.3}\n",
                c.label,
                100.0 * c.difference.value,
                100.0 * c.difference.low,
                100.0 * c.difference.high,
                c.p_value
            ));
        }
        md.push('\n');
    }
    if !plots.is_empty() {
        md.push_str("## Plots\n\n");
        for p in plots {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            md.push_str(&format!("![{name}]({name})\n\n"));
        }
    }
    md
}
