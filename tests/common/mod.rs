//! What the cross-backend tests share: deterministic token ids and one DPO step of the
//! library's trainer.

use std::path::Path;

use bpo::algos::LossConfig;
use bpo::algos::config::{OptimConfig, ScheduleKind};
use bpo::algos::dap::Dap;
use bpo::algos::reference::{Reference, ReferenceLogps};
use bpo::algos::trainer::{Policy, RunDir, Schedule, Silent, Trainer};
use bpo::data::TokenizedPair;
use bpo::model::Transformer;

/// `n` deterministic token ids in `[3, 253)`.
pub fn tokens(n: usize, salt: u32) -> Vec<u32> {
    (0..n as u32)
        .map(|i| 3 + (i * 37 + salt * 101) % 250)
        .collect()
}

/// One DPO step of the library's trainer on `model`'s device; returns the step's loss and
/// gradient norm and the updated policy.
pub fn dpo_step(model: Transformer, out: &Path) -> (f64, f64, Transformer) {
    let pairs: Vec<TokenizedPair> = (0..4u32)
        .map(|i| TokenizedPair {
            prompt: tokens(6, i),
            chosen: tokens(8, i + 10),
            rejected: tokens(7, i + 20),
            chosen_logps: None,
            rejected_logps: None,
            truncated: false,
        })
        .collect();
    let mut objective = Dap {
        pairs,
        reference: Reference::Fixed(ReferenceLogps {
            chosen: vec![-40.0; 4],
            rejected: vec![-35.0; 4],
            chosen_tokens: vec![8.0; 4],
            rejected_tokens: vec![7.0; 4],
        }),
        dev: None,
        loss: LossConfig::default(),
        pad_id: 0,
        eval_batch_size: 4,
    };
    let optim = OptimConfig {
        lr: 1e-3,
        schedule: ScheduleKind::Constant,
        ..OptimConfig::default()
    };
    let schedule = Schedule {
        optim: optim.clone(),
        total_steps: 1,
        ..Schedule::default()
    };
    let dir = RunDir::create(out, &"dpo-step", 1, &[]).unwrap();
    let policy = Policy::single(model, &optim);
    let (mut trainer, _) =
        Trainer::start::<()>(policy, schedule, dir, None, None, &mut Silent).unwrap();
    let record = trainer
        .step(&mut objective, &[vec![0, 1, 2, 3]], &mut Silent)
        .unwrap();
    let policy = trainer.policy.first().clone();
    (record["loss"], record["grad_norm"], policy)
}
