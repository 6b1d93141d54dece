//! What the experiment will do and how long it should take: before starting, one sampling batch
//! and one training step are timed on the initial model and every run's cost is estimated from
//! them; after each phase, the estimate of what is left is rescaled by how fast the work done so
//! far went.

use std::collections::VecDeque;
use std::time::Instant;

use bpo_data::{TokenizedPair, Truncation, tokenize_prompt};
use bpo_model::{SamplingConfig, generate, load};

use crate::dap::Dap;
use crate::error::AlgoError;
use crate::experiment::config::{ExperimentConfig, Method};
use crate::experiment::evaluator::Evaluator;
use crate::lora::apply_lora;
use crate::online::prompts::load_prompts;
use crate::reference::{Reference, behavior_reference};
use crate::trainer::{Policy, RunDir, Schedule, Silent, Trainer};

/// Timings of one unit of each kind of work, in seconds.
#[derive(Debug, Clone, Copy)]
struct Unit {
    /// Sampling k responses for each of `sampling.batch_size` prompts (in calls of
    /// `sampling.batch_size` sequences).
    sampling_batch: f64,
    /// One optimizer step of `run.batch_size` pairs.
    step: f64,
    /// One greedy evaluation batch.
    eval_batch: f64,
}

/// The experiment's estimated cost, consumed phase by phase.
pub(crate) struct Progress {
    started: Instant,
    total: f64,
    done: f64,
    /// Estimated seconds of every phase still to come (its training, curve evaluation and, for
    /// a run's last phase, the run's final evaluation), in order.
    phases: VecDeque<f64>,
    unit: Unit,
    runs: usize,
}

fn fmt_duration(seconds: f64) -> String {
    let minutes = (seconds / 60.0).round() as u64;
    if minutes >= 60 {
        format!("{}h{:02}", minutes / 60, minutes % 60)
    } else if seconds >= 60.0 {
        format!("{minutes} min")
    } else {
        format!("{seconds:.0} s")
    }
}

impl Progress {
    /// Times one sampling batch and one training step on the initial model, then estimates
    /// every run of `config` (tuning runs first, when asked for).
    pub(crate) fn calibrate(
        config: &ExperimentConfig,
        evaluator: &Evaluator,
        test_prompts: usize,
        curve_prompts: usize,
    ) -> Result<Self, AlgoError> {
        let unit = time_units(config, evaluator)?;
        let eval = &config.eval.settings;
        let eval_batches = |prompts: usize| prompts.div_ceil(eval.batch_size.max(1)) as f64;
        let kl_share = match eval.kl_samples {
            0 => 0.0,
            k => {
                eval.kl_prompts.map_or(1.0, |n| {
                    n.min(test_prompts) as f64 / test_prompts.max(1) as f64
                }) * k as f64
            }
        };
        let run_cost =
            |method: Method, phases: usize, eval_prompts: usize, full_eval: bool| -> Vec<f64> {
                let budget = config.online.budget;
                let per_phase = budget.div_ceil(phases);
                let sampling = per_phase.div_ceil(config.online.sampling.batch_size) as f64
                    * unit.sampling_batch;
                let steps = per_phase.div_ceil(config.online.run.batch_size) as f64;
                // The initial model's pass over the pairs costs about a third of a step.
                let reference = if method == Method::Bpo {
                    0.0
                } else {
                    steps * unit.step / 3.0
                };
                let curve = eval_batches(curve_prompts) * unit.eval_batch;
                let mut costs = vec![sampling + steps * unit.step + reference + curve; phases];
                let factor = if full_eval { 1.0 + kl_share } else { 1.0 };
                *costs.last_mut().expect("phases >= 1") +=
                    eval_batches(eval_prompts) * unit.eval_batch * factor;
                costs
            };
        let mut phases = VecDeque::new();
        let mut runs = 0;
        if let Some(tune) = &config.tune {
            let dev = tune.limit.unwrap_or(test_prompts);
            for run in config.runs().iter().filter(|r| r.seed == 0) {
                for _ in 0..tune.lrs.len() * tune.betas.len() * tune.seeds {
                    phases.extend(run_cost(run.method, run.phases, dev, false));
                    runs += 1;
                }
            }
        }
        for run in config.runs() {
            phases.extend(run_cost(run.method, run.phases, test_prompts, true));
            runs += 1;
        }
        let initial = eval_batches(test_prompts) * unit.eval_batch * (1.0 + kl_share);
        if let Some(first) = phases.front_mut() {
            *first += initial;
        }
        Ok(Progress {
            started: Instant::now(),
            total: phases.iter().sum(),
            done: 0.0,
            phases,
            unit,
            runs,
        })
    }

    /// What will run, and the estimated duration.
    pub(crate) fn plan_message(&self, test_prompts: usize, curve_prompts: usize) -> String {
        format!(
            "plan: {} runs, evaluated on {test_prompts} prompts (learning curves on \
             {curve_prompts}); measured here: {:.1} s per sampling batch, {:.1} s per training \
             step; estimated duration {}",
            self.runs,
            self.unit.sampling_batch,
            self.unit.step,
            fmt_duration(self.total)
        )
    }

    /// Marks the next phase done.
    pub(crate) fn phase_done(&mut self) {
        self.done += self.phases.pop_front().unwrap_or(0.0);
    }

    /// Drops the estimates of a run of `phases` phases that needs no work (its result was
    /// stored), so that the time left counts only what will run.
    pub(crate) fn skip_run(&mut self, phases: usize) {
        for _ in 0..phases {
            self.total -= self.phases.pop_front().unwrap_or(0.0);
        }
    }

    /// How much is done and the time left, rescaled by the pace so far.
    pub(crate) fn eta_message(&self) -> String {
        let elapsed = self.started.elapsed().as_secs_f64();
        let pace = elapsed / self.done.max(1e-9);
        let left = (self.total - self.done).max(0.0) * pace;
        format!(
            "experiment {:.0}% done after {}, about {} left",
            100.0 * self.done / self.total.max(1e-9),
            fmt_duration(elapsed),
            fmt_duration(left)
        )
    }
}

/// Times one sampling batch (which is also the generation speed of evaluation) and one training
/// step of the configured policy, on the initial model.
fn time_units(config: &ExperimentConfig, evaluator: &Evaluator) -> Result<Unit, AlgoError> {
    let online = &config.online;
    let sampling = &online.sampling;
    let truncation = Truncation {
        max_prompt_tokens: online.max_prompt_tokens,
        ..Truncation::default()
    };
    let prompts = load_prompts(&online.prompts)?;
    let ids = prompts
        .iter()
        .take(sampling.batch_size)
        .map(|p| Ok(tokenize_prompt(p, &evaluator.tokenizer, &truncation)?.0))
        .collect::<Result<Vec<_>, AlgoError>>()?;
    let config_sampling = SamplingConfig {
        temperature: sampling.temperature,
        top_k: sampling.top_k,
        top_p: sampling.top_p,
        max_new_tokens: sampling.max_new_tokens,
        seed: 0,
        ignore_eos: false,
    };
    let started = Instant::now();
    let samples = generate(
        &evaluator.initial,
        &evaluator.tokenizer,
        &ids,
        sampling.samples_per_prompt,
        sampling.batch_size,
        &config_sampling,
        |_| {},
    )?;
    let sampling_batch = started.elapsed().as_secs_f64();
    // One step on pairs of those samples (labels do not matter for timing).
    let pairs: Vec<TokenizedPair> = samples
        .chunks_exact(2)
        .take(online.run.batch_size)
        .map(|two| TokenizedPair {
            prompt: two[0].prompt_ids.clone(),
            chosen: two[0].token_ids.clone(),
            rejected: two[1].token_ids.clone(),
            chosen_logps: Some(two[0].logprobs.clone()),
            rejected_logps: Some(two[1].logprobs.clone()),
            truncated: false,
        })
        .collect();
    let device = evaluator.initial.device().autodiff();
    let (model, _) = load(&online.model, &device)?;
    let model = match &online.lora {
        Some(lora) => apply_lora(model, lora, 0)?,
        None => model,
    };
    let mut objective = Dap {
        reference: Reference::Fixed(behavior_reference(&pairs)?),
        pairs,
        dev: None,
        loss: online.loss.clone(),
        pad_id: evaluator.tokenizer.pad_id(),
        eval_batch_size: online.run.eval_batch_size,
    };
    let scratch = config.out.join(".calibration");
    let dir = RunDir::create(&scratch, &"calibration", 1, &[])?;
    let schedule = Schedule {
        optim: online.optim.clone(),
        total_steps: 1,
        ..Schedule::default()
    };
    let (mut trainer, _) = Trainer::start::<()>(
        Policy::single(model, &online.optim),
        schedule,
        dir,
        None,
        None,
        &mut Silent,
    )?;
    let all: Vec<usize> = (0..objective.pairs.len()).collect();
    let started = Instant::now();
    trainer.step(&mut objective, std::slice::from_ref(&all), &mut Silent)?;
    let step = started.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&scratch);
    // An evaluation batch generates eval.batch_size x max_new_tokens greedy tokens.
    let sampled = (ids.len() * sampling.samples_per_prompt * sampling.max_new_tokens).max(1) as f64;
    let eval = &config.eval.settings;
    let eval_batch = sampling_batch * (eval.batch_size * eval.max_new_tokens) as f64 / sampled;
    Ok(Unit {
        sampling_batch,
        step,
        eval_batch,
    })
}
