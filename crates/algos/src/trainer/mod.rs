//! The one training loop. Offline DAP (`bpo train`), SFT (`bpo sft`), each phase of online DAP
//! and BPO (`bpo online`) and reward models (`bpo rm train`) all step through
//! [`Trainer::run`]: the learning-rate schedule, gradient accumulation, global-norm clipping,
//! the guard against non-finite values, the objective's after-step hook (EMA), metrics,
//! dev evaluation and checkpoints live here and only here.
//!
//! - [`Objective`] computes a micro-batch's loss and metrics;
//! - [`Policy`] is one model and its AdamW, or an ensemble of K;
//! - [`RunDir`] owns `config.json`, `metrics.jsonl` and checkpoints for any model type;
//! - [`plan_steps`] decides which examples each step sees.

mod objective;
mod observer;
mod plan;
mod policy;
mod run_dir;

use std::path::Path;
use std::time::Instant;

use bpo_model::burn::optim::{GradientsAccumulator, GradientsParams};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use objective::{Objective, mean_record, weighted_mean};
pub use observer::{Observer, Silent, load_for_training, open_device};
pub use plan::{StepBatches, plan_steps, remaining};
pub use policy::{Member, Merge, MergeRule, Policy};
pub use run_dir::{DataFile, RunDir, RunState};

use crate::config::OptimConfig;
use crate::error::AlgoError;
use crate::metrics::{MetricsLog, MetricsRecord};
use crate::optim::clip_grad_norm;

/// The schedule of a run: the learning rate over its steps, and when the loop evaluates and
/// checkpoints.
#[derive(Debug, Clone, Default)]
pub struct Schedule {
    /// AdamW settings and the learning-rate schedule.
    pub optim: OptimConfig,
    /// Steps of the learning-rate schedule (may be updated between calls of [`Trainer::run`],
    /// e.g. when an online phase's kept pairs are known).
    pub total_steps: usize,
    /// Evaluate every this many steps (and at the end of each [`Trainer::run`]); 0 = only at
    /// the end.
    pub eval_every: usize,
    /// Checkpoint every this many steps; 0 = never in between.
    pub save_every: usize,
    /// Checkpoint after the last step of each [`Trainer::run`].
    pub save_at_end: bool,
}

/// What one call of [`Trainer::run`] did.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// Optimizer steps taken.
    pub steps: usize,
    /// Tokens processed (summed over ensemble members).
    pub tokens: usize,
    /// Seconds spent in the steps (evaluation excluded).
    pub seconds: f64,
    /// Metrics of the last step.
    pub last: MetricsRecord,
}

/// A policy being trained, with its run directory and step counter.
pub struct Trainer<M> {
    /// The policy.
    pub policy: Policy<M>,
    /// Learning rate, evaluation and checkpoint schedule.
    pub schedule: Schedule,
    /// Where metrics and checkpoints go.
    pub dir: RunDir,
    /// `metrics.jsonl`.
    pub metrics: MetricsLog,
    /// Optimizer steps done.
    pub step: usize,
}

impl<M: Merge> Trainer<M> {
    /// Starts a run in `dir`, or continues it from the checkpoint `resume` names (loading the
    /// policy and the objective's `state_model`); returns the trainer and, when resuming, the
    /// caller's position saved with the checkpoint. Tells the allocator to keep freed memory
    /// for the next steps ([`bpo_model::memory::keep_freed_memory`]).
    pub fn start<P: DeserializeOwned>(
        mut policy: Policy<M>,
        schedule: Schedule,
        mut dir: RunDir,
        resume: Option<&Path>,
        state_model: Option<&mut M>,
        observer: &mut dyn Observer,
    ) -> Result<(Self, Option<P>), AlgoError> {
        bpo_model::memory::keep_freed_memory();
        let metrics_path = dir.path("metrics.jsonl");
        let (step, metrics, position) = match resume {
            Some(path) => {
                let (checkpoint, state) = dir.read_checkpoint::<P>(path)?;
                if state.model.is_none() {
                    // Started before bpo recorded the model: what it started from is unknown,
                    // so later checkpoints do not claim today's commit either.
                    dir.model = None;
                }
                RunDir::load(&checkpoint, &mut policy, state_model)?;
                observer.message(&format!(
                    "resuming from {} (step {})",
                    checkpoint.display(),
                    state.step
                ));
                let metrics = MetricsLog::resume(&metrics_path, state.step)?;
                (state.step, metrics, Some(state.position))
            }
            None => {
                dir.write_config()?;
                (0, MetricsLog::create(&metrics_path)?, None)
            }
        };
        let trainer = Trainer {
            policy,
            schedule,
            dir,
            metrics,
            step,
        };
        Ok((trainer, position))
    }

    /// Takes one optimizer step per entry of `steps` on `objective`. `tags` adds metrics to
    /// the record of step n (1-based: epoch, phase); `position` says where the caller stands
    /// after a given progress, for checkpoints.
    pub fn run<O: Objective<M>, P: Serialize>(
        &mut self,
        objective: &mut O,
        steps: &[StepBatches],
        tags: &dyn Fn(usize) -> MetricsRecord,
        position: &dyn Fn(&Progress) -> P,
        observer: &mut dyn Observer,
    ) -> Result<Progress, AlgoError> {
        let mut progress = Progress::default();
        for (i, micro_batches) in steps.iter().enumerate() {
            let started = Instant::now();
            let lr = self
                .schedule
                .optim
                .lr_at(self.step, self.schedule.total_steps);
            let mut members = Vec::with_capacity(self.policy.members.len());
            let mut parts = Vec::with_capacity(members.capacity());
            let mut tokens = 0;
            for member in std::mem::take(&mut self.policy.members) {
                let (member, record, n) = self.step_member(objective, member, micro_batches, lr)?;
                members.push(member);
                parts.push(record);
                tokens += n;
            }
            self.policy.members = members;
            objective.after_step(&self.policy);
            let seconds = started.elapsed().as_secs_f64();
            self.step += 1;
            let mut record = mean_record(&parts);
            record.insert("step".into(), self.step as f64);
            record.extend(tags(self.step));
            record.insert("tokens_per_s".into(), tokens as f64 / seconds.max(1e-9));
            let is_last = i + 1 == steps.len();
            let every = |n: usize| n > 0 && self.step.is_multiple_of(n);
            if (every(self.schedule.eval_every) || is_last)
                && let Some(dev) = objective.evaluate(&self.policy)?
            {
                record.extend(dev);
            }
            self.metrics.append(record.clone())?;
            observer.step(self.step, self.schedule.total_steps, &record);
            progress.steps += 1;
            progress.tokens += tokens;
            progress.seconds += seconds;
            progress.last = record;
            if every(self.schedule.save_every) || (is_last && self.schedule.save_at_end) {
                self.save(&position(&progress), objective.state_model().map(|m| &*m))?;
            }
        }
        Ok(progress)
    }

    /// One optimizer step over `micro_batches` (no tags, no checkpoint position): what the
    /// benches and examples time.
    pub fn step<O: Objective<M>>(
        &mut self,
        objective: &mut O,
        micro_batches: &[Vec<usize>],
        observer: &mut dyn Observer,
    ) -> Result<MetricsRecord, AlgoError> {
        let steps = [micro_batches.to_vec()];
        let progress = self.run(
            objective,
            &steps,
            &|_| MetricsRecord::new(),
            &|_| (),
            observer,
        )?;
        Ok(progress.last)
    }

    /// Checkpoints the policy (and `state_model`) at the current step with `position`.
    pub fn save<P: Serialize>(
        &self,
        position: &P,
        state_model: Option<&M>,
    ) -> Result<(), AlgoError> {
        let state = RunState {
            step: self.step,
            total_steps: self.schedule.total_steps,
            config: self.dir.config.clone(),
            position,
            data: self.dir.data.clone(),
            model: self.dir.model.clone(),
        };
        self.dir.save(&state, &self.policy, state_model)?;
        Ok(())
    }

    /// One optimizer step of `member` over `micro_batches` (gradients accumulated, weighted by
    /// each micro-batch's share), with global-norm clipping and the non-finite guard. Returns
    /// the updated member, the step's metrics (weighted means over micro-batches, plus
    /// `grad_norm` and `lr`) and the number of tokens processed.
    fn step_member<O: Objective<M>>(
        &self,
        objective: &mut O,
        member: Member<M>,
        micro_batches: &[Vec<usize>],
        lr: f64,
    ) -> Result<(Member<M>, MetricsRecord, usize), AlgoError> {
        let step = self.step + 1;
        let Member {
            model,
            mut optimizer,
        } = member;
        let total_weight: f64 = micro_batches.iter().map(|m| objective.weight(m)).sum();
        let mut accumulator = GradientsAccumulator::<M>::new();
        let mut parts = Vec::with_capacity(micro_batches.len());
        let mut tokens = 0;
        for indices in micro_batches {
            let (loss, record, n) = objective.loss(&model, indices)?;
            if !record.get("loss").is_some_and(|l| l.is_finite()) {
                return Err(AlgoError::NonFinite {
                    step,
                    what: "loss".into(),
                });
            }
            let weight = objective.weight(indices);
            let grads = (loss * (weight / total_weight)).backward();
            accumulator.accumulate(&model, GradientsParams::from_grads(grads, &model));
            parts.push((record, weight));
            tokens += n;
        }
        let mut grads = accumulator.grads();
        let grad_norm = clip_grad_norm(&model, &mut grads, self.schedule.optim.max_grad_norm);
        if !grad_norm.is_finite() {
            return Err(AlgoError::NonFinite {
                step,
                what: "gradient norm".into(),
            });
        }
        let model = optimizer.step(lr, model, grads);
        let mut record = weighted_mean(&parts);
        record.insert("grad_norm".into(), grad_norm);
        record.insert("lr".into(), lr);
        Ok((Member { model, optimizer }, record, tokens))
    }
}
