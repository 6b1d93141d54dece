//! The backend-swapping experiment: the same model, batch and seed through a few DPO steps of
//! the library's trainer and a greedy generation on each device asked for, printing the time
//! per step and the largest logit and loss differences against the first device (flex by
//! default, the CPU reference).
//!
//!   cargo run --example backend_swap -- [--device flex,ndarray,wgpu] [--model smollm2-135m] [--steps 3]
//!
//! `--device` takes a comma-separated list of `auto | flex | ndarray | wgpu | vulkan | metal |
//! cuda[:N]`; a device this machine or build lacks prints why and is skipped.

use std::time::Instant;

use bpo::algos::LossConfig;
use bpo::algos::config::{OptimConfig, ScheduleKind};
use bpo::algos::dap::Dap;
use bpo::algos::reference::{Reference, ReferenceLogps};
use bpo::algos::trainer::{Policy, RunDir, Schedule, Silent, Trainer};
use bpo::data::TokenizedPair;
use bpo::model::burn::tensor::Device;
use bpo::model::device::select_device;
use bpo::model::host::to_f32_vec;
use bpo::model::spec::save_hf;
use bpo::model::{ModelType, PaddingSide, SamplingConfig, TokenBatch, generate, load};
use bpo_testkit::{tiny_model, tokenizer};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // SAFETY: the first statement of `main`, before any other thread exists.
    unsafe { bpo::model::device::prepare_environment() };
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let steps: usize = flag("--steps").map_or(Ok(3), |s| s.parse())?;
    // The same weights everywhere: a tiny random model written once, or a given model spec.
    let dir = std::env::temp_dir().join("bpo-backend-swap");
    let spec = match flag("--model") {
        Some(spec) => spec,
        None => {
            save_hf(
                &dir,
                &tiny_model(ModelType::LLAMA, 0, &Device::flex()),
                &tokenizer(),
            )?;
            dir.display().to_string()
        }
    };
    let pairs: Vec<TokenizedPair> = (0..4u32)
        .map(|i| TokenizedPair {
            prompt: (0..16).map(|t| 3 + (t * 7 + i * 13) % 200).collect(),
            chosen: (0..24).map(|t| 3 + (t * 11 + i * 5) % 200).collect(),
            rejected: (0..24).map(|t| 3 + (t * 17 + i * 3) % 200).collect(),
            chosen_logps: None,
            rejected_logps: None,
            truncated: false,
        })
        .collect();
    let probe = TokenBatch::padded(&[vec![5, 9, 40, 7, 100, 12]], 0, PaddingSide::Right);
    let _loss_config = LossConfig::default();
    let mut flex_result: Option<(Vec<f64>, Vec<f32>)> = None;
    let devices = flag("--device").unwrap_or_else(|| "flex,ndarray,wgpu".into());
    for name in devices.split(',').map(str::trim) {
        let device = match select_device(name) {
            Ok(selected) => {
                println!("{name:8} = {}", selected.description);
                selected.device
            }
            Err(e) => {
                println!("{name:8} skipped: {e}");
                continue;
            }
        };
        let (policy, tok) = load(&spec, &device.clone().autodiff())?;
        let n = pairs.len();
        let mut objective = Dap {
            pairs: pairs.clone(),
            reference: Reference::Fixed(ReferenceLogps {
                chosen: vec![-60.0; n],
                rejected: vec![-60.0; n],
                chosen_tokens: vec![24.0; n],
                rejected_tokens: vec![24.0; n],
            }),
            dev: None,
            loss: LossConfig::default(),
            pad_id: tok.pad_id(),
            eval_batch_size: n,
        };
        let optim = OptimConfig {
            lr: 1e-3,
            schedule: ScheduleKind::Constant,
            ..OptimConfig::default()
        };
        let out = std::env::temp_dir().join(format!("bpo-backend-swap-run-{name}"));
        let run_dir = RunDir::create(&out, &name, 1, &[])?;
        let (mut trainer, _) = Trainer::start::<()>(
            Policy::single(policy, &optim),
            Schedule {
                optim: optim.clone(),
                total_steps: steps,
                ..Schedule::default()
            },
            run_dir,
            None,
            None,
            &mut Silent,
        )?;
        let all: Vec<usize> = (0..n).collect();
        let mut losses = Vec::new();
        let started = Instant::now();
        for _ in 0..steps {
            let record = trainer.step(&mut objective, std::slice::from_ref(&all), &mut Silent)?;
            losses.push(record["loss"]);
        }
        let per_step = started.elapsed().as_secs_f64() / steps as f64;
        let trained = trainer.policy.merged();
        let logits = to_f32_vec(trained.forward(&probe));
        let started = Instant::now();
        let text = generate(
            &trained,
            &tok,
            &[pairs[0].prompt.clone()],
            1,
            1,
            &SamplingConfig::greedy(16),
            |_| {},
        )?[0]
            .text
            .clone();
        let generation = started.elapsed().as_secs_f64();
        let (loss_diff, logit_diff) = match &flex_result {
            Some((l, g)) => (
                l.iter()
                    .zip(&losses)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0, f64::max),
                g.iter()
                    .zip(&logits)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0, f32::max),
            ),
            None => (0.0, 0.0),
        };
        println!(
            "{name:8} {per_step:7.3} s/step ({} pairs)  generation {generation:6.3} s  max |loss - flex| {loss_diff:.2e}  max |logit - flex| {logit_diff:.2e}  {text:?}",
            pairs.len()
        );
        flex_result.get_or_insert((losses, logits));
    }
    Ok(())
}
