//! The backend-swapping experiment: the same model, batch and seed through a few DPO steps and a
//! greedy generation on every backend compiled in (flex and ndarray always; wgpu, vulkan,
//! metal, cuda with their cargo features), printing the time per step and the largest logit
//! and loss differences against flex.
//!
//!   cargo run --example backend_swap [--features wgpu] -- [--model smollm2-135m] [--steps 3]

use std::time::Instant;

use bpo::algos::logps::pair_logps;
use bpo::algos::optim::{adamw, clip_grad_norm};
use bpo::algos::{LossConfig, PairLogps, dap_loss};
use bpo::data::{PairBatch, TokenizedPair};
use bpo::model::burn::module::Module;
use bpo::model::burn::optim::GradientsParams;
use bpo::model::burn::tensor::Device;
use bpo::model::host::to_f32_vec;
use bpo::model::spec::save_hf;
use bpo::model::testing::{tiny_model, tokenizer};
use bpo::model::{
    ModelType, PaddingSide, SamplingConfig, TokenBatch, generate, load, parse_device,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
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
                &tiny_model(ModelType::Llama, 0, &Device::flex()),
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
    let loss_config = LossConfig::default();
    let mut flex_result: Option<(Vec<f64>, Vec<f32>)> = None;
    for name in ["flex", "ndarray", "wgpu", "vulkan", "metal", "cuda"] {
        let Ok(device) = parse_device(name) else {
            println!("{name:8} not compiled in");
            continue;
        };
        let (mut policy, tok) = load(&spec, &device.clone().autodiff())?;
        let mut optimizer = adamw(&Default::default());
        let batch = PairBatch::new(&pairs, tok.pad_id())?;
        let n = pairs.len();
        let reference = PairLogps::from_host(
            &[-60.0; 4],
            &[-60.0; 4],
            &[24.0; 4],
            &[24.0; 4],
            &policy.device(),
        );
        let mut losses = Vec::new();
        let started = Instant::now();
        for _ in 0..steps {
            let (loss, stats) =
                dap_loss(&loss_config, &pair_logps(&policy, &batch), Some(&reference));
            let mut grads = GradientsParams::from_grads(loss.backward(), &policy);
            clip_grad_norm(&policy, &mut grads, 1.0);
            policy = optimizer.step(1e-3, policy, grads);
            losses.push(stats.loss);
        }
        let per_step = started.elapsed().as_secs_f64() / steps as f64;
        let trained = policy.valid();
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
            "{name:8} {per_step:7.3} s/step ({n} pairs)  generation {generation:6.3} s  max |loss - flex| {loss_diff:.2e}  max |logit - flex| {logit_diff:.2e}  {text:?}"
        );
        flex_result.get_or_insert((losses, logits));
    }
    Ok(())
}
