//! Equal tuning (`bpo experiment --tune`): every method runs the same grid of learning rate x
//! beta on a stratified sample of the dev prompts, with seeds of its own (apart from the test
//! seeds); each then runs on the test prompts at its best dev win rate. The test split is not
//! touched until the choice is made.

use std::time::Instant;

use bpo_data::PromptRecord;

use crate::error::AlgoError;
use crate::eval::cluster_bootstrap;
use crate::experiment::config::{ExperimentConfig, Method, MethodSettings, TuneConfig};
use crate::experiment::evaluator::Evaluator;
use crate::experiment::progress::Progress;
use crate::experiment::results::{TuneCell, Tuning};
use crate::experiment::runner::{ExperimentObserver, RunSpec, train_and_evaluate};
use crate::experiment::stats::mean;
use crate::online::prompts::{load_prompts, sample_prompts};

/// Seeds of tuning runs start here past `online.run.seed`, so that no tuning run shares a
/// random stream with a test run.
const TUNE_SEED_OFFSET: u64 = 1000;

/// Runs the dev grid of every method and returns it with each method's choice.
pub(crate) fn tune(
    config: &ExperimentConfig,
    tune: &TuneConfig,
    evaluator: &mut Evaluator,
    progress: &mut Progress,
    observer: &mut dyn ExperimentObserver,
) -> Result<Tuning, AlgoError> {
    let started = Instant::now();
    let dev: Vec<PromptRecord> = sample_prompts(
        load_prompts(&tune.prompts)?,
        tune.limit,
        config.eval.sample_seed,
    );
    let loss = config.losses[0];
    let methods: Vec<(Method, usize)> = config
        .runs()
        .into_iter()
        .filter(|r| r.loss == loss && r.seed == 0)
        .map(|r| (r.method, r.phases))
        .collect();
    let settings: Vec<MethodSettings> = tune
        .lrs
        .iter()
        .flat_map(|&lr| {
            tune.betas
                .iter()
                .map(move |&beta| MethodSettings { lr, beta })
        })
        .collect();
    let total = methods.len() * settings.len() * tune.seeds;
    let mut cells = Vec::new();
    let mut index = 0;
    for &(method, phases) in &methods {
        for &setting in &settings {
            let mut per_seed = Vec::new();
            let mut gold = Vec::new();
            let mut kl = Vec::new();
            for seed in 0..tune.seeds {
                let title = format!(
                    "tuning {} F={phases} lr {} beta {} seed {seed}",
                    method.label(),
                    setting.lr,
                    setting.beta
                );
                observer.run_start(index, total, &title);
                index += 1;
                let spec = RunSpec {
                    loss,
                    method,
                    phases,
                    seed,
                    run_seed: config.online.run.seed + TUNE_SEED_OFFSET + seed as u64,
                    settings: setting,
                    dir: config.out.join("tuning").join(format!(
                        "{}-F{phases}-lr{}-beta{}-seed{seed}",
                        method.slug(),
                        setting.lr,
                        setting.beta
                    )),
                    full_evaluation: false,
                };
                let run =
                    train_and_evaluate(config, spec, evaluator, &dev, &[], progress, observer)?;
                observer.message(&format!(
                    "{title}: dev win rate {:.3}",
                    run.report.win_rate.value
                ));
                per_seed.push(run.report.wins.clone());
                gold.push(run.report.gold_score);
                kl.extend(run.report.kl_initial);
            }
            cells.push(TuneCell {
                method,
                phases,
                settings: setting,
                win_rate: cluster_bootstrap(
                    &per_seed,
                    config.eval.settings.bootstrap,
                    config.eval.settings.seed,
                ),
                gold_score: mean(gold.into_iter()),
                kl_initial: (!kl.is_empty()).then(|| mean(kl.into_iter())),
            });
        }
    }
    let chosen = methods
        .iter()
        .map(|&(method, phases)| {
            let best = cells
                .iter()
                .filter(|c| c.method == method && c.phases == phases)
                .max_by(|a, b| {
                    a.win_rate
                        .value
                        .total_cmp(&b.win_rate.value)
                        .then(b.settings.lr.total_cmp(&a.settings.lr))
                        .then(b.settings.beta.total_cmp(&a.settings.beta))
                })
                .expect("every method has cells");
            observer.message(&format!(
                "tuning chose lr {} beta {} for {} (dev win rate {:.3})",
                best.settings.lr,
                best.settings.beta,
                method.label(),
                best.win_rate.value
            ));
            (method, best.settings)
        })
        .collect();
    Ok(Tuning {
        prompts: dev.len(),
        cells,
        chosen,
        seconds: started.elapsed().as_secs_f64(),
    })
}
