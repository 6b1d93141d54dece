//! Which examples each optimizer step sees: per epoch, length-bucketed batches in a seeded
//! order, grouped `grad_accum` micro-batches to a step.

use bpo_data::bucketed_batches;

use crate::config::RunConfig;

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
