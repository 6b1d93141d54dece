//! Which examples each optimizer step sees: per epoch, length-bucketed batches in a seeded
//! order, grouped `grad_accum` micro-batches to a step.

use bpo_data::bucketed_batches;

use crate::config::RunConfig;
use crate::error::AlgoError;

/// The micro-batches (example indices) of one optimizer step.
pub type StepBatches = Vec<Vec<usize>>;

/// The steps of a run over examples of `lengths`, as `run` asks (batch size, accumulation,
/// epochs, bucket pool, seed, `max_steps`).
pub fn plan_steps(lengths: &[usize], run: &RunConfig) -> Vec<StepBatches> {
    let mut steps = Vec::new();
    for epoch in 0..run.epochs {
        let batches = bucketed_batches(
            lengths,
            run.batch_size,
            run.bucket_pool,
            run.seed.wrapping_add(epoch as u64),
        );
        steps.extend(batches.chunks(run.grad_accum).map(<[Vec<usize>]>::to_vec));
    }
    if let Some(max) = run.max_steps {
        steps.truncate(max);
    }
    steps
}

/// The steps left after `done` of a resumed run; an error when the run had already made more
/// steps than these data plan (a guard: resuming checks the data files first).
pub fn remaining(steps: &[StepBatches], done: usize) -> Result<&[StepBatches], AlgoError> {
    steps.get(done..).ok_or_else(|| {
        AlgoError::Config(format!(
            "the checkpoint is at step {done} but these data plan {} steps: resume on the data \
             the run started on",
            steps.len()
        ))
    })
}
