//! One DPO optimizer step (policy forward and backward over chosen and rejected, reference
//! log-probs precomputed, DPO loss, global-norm clipping, AdamW), as `bpo train` runs it.
//!
//! `cargo bench --bench dpo_step` runs a small random Llama (4 layers, d 256, 4 heads, ffn 1024,
//! vocab 8192; 8 pairs of 32 + 96 tokens, full fine-tuning) and, when SmolLM2-135M-Instruct is
//! in the model cache, SmolLM2 with LoRA r = 16 on all linear layers and with full fine-tuning
//! (4 pairs of 32 + 64 tokens). Side-by-side with PyTorch: `benches/compare/dpo_step.sh`.

use bpo::algos::config::{LoraConfig, OptimConfig};
use bpo::algos::logps::pair_logps;
use bpo::algos::lora::apply_lora;
use bpo::algos::optim::{adamw, clip_grad_norm};
use bpo::algos::{LossConfig, PairLogps, dap_loss};
use bpo::data::{PairBatch, TokenizedPair};
use bpo::model::burn::optim::GradientsParams;
use bpo::model::burn::tensor::Device;
use bpo::model::fetch::{default_cache_dir, known_model};
use bpo::model::{ModelConfig, ModelType, Transformer, load};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// Deterministic pairs: `prompt` + `response` tokens each, ids in `[3, vocab)`.
fn pairs(n: usize, prompt: usize, response: usize, vocab: usize) -> Vec<TokenizedPair> {
    let ids = |seed: usize, len: usize| -> Vec<u32> {
        (0..len)
            .map(|i| (3 + (i * 7919 + seed * 104_729) % (vocab - 3)) as u32)
            .collect()
    };
    (0..n)
        .map(|i| TokenizedPair {
            prompt: ids(3 * i, prompt),
            chosen: ids(3 * i + 1, response),
            rejected: ids(3 * i + 2, response),
            chosen_logps: None,
            rejected_logps: None,
            truncated: false,
        })
        .collect()
}

fn bench_step(
    c: &mut Criterion,
    name: &str,
    model: Transformer,
    lora: bool,
    pairs: &[TokenizedPair],
) {
    let device = model.device();
    let mut policy = if lora {
        let config = LoraConfig {
            rank: 16,
            alpha: 32.0,
            ..LoraConfig::default()
        };
        apply_lora(model, &config, 0).expect("lora")
    } else {
        model
    };
    let optim = OptimConfig::default();
    let mut optimizer = adamw(&optim);
    let batch = PairBatch::new(pairs, 0).expect("batch");
    let n = pairs.len();
    let reference = PairLogps::from_host(
        &vec![-100.0; n],
        &vec![-100.0; n],
        &vec![pairs[0].chosen.len() as f32; n],
        &vec![pairs[0].rejected.len() as f32; n],
        &device,
    );
    let loss_config = LossConfig::default();
    let tokens: usize = pairs
        .iter()
        .map(|p| 2 * p.prompt.len() + p.chosen.len() + p.rejected.len())
        .sum();
    let mut group = c.benchmark_group("dpo_step");
    group.sample_size(10);
    group.throughput(Throughput::Elements(tokens as u64));
    group.bench_function(name, |b| {
        b.iter(|| {
            let logps = pair_logps(&policy, &batch);
            let (loss, _) = dap_loss(&loss_config, &logps, Some(&reference));
            let mut grads = GradientsParams::from_grads(loss.backward(), &policy);
            clip_grad_norm(&policy, &mut grads, optim.max_grad_norm);
            policy = optimizer.step(optim.lr, policy.clone(), grads);
        })
    });
    group.finish();
}

fn dpo_step(c: &mut Criterion) {
    let device = Device::flex().autodiff();
    let config = ModelConfig::preset(ModelType::Llama, "small", 8192).expect("preset");
    let tiny = Transformer::init(&config, 0, &device);
    bench_step(
        c,
        "tiny-full/8x(32+96)",
        tiny,
        false,
        &pairs(8, 32, 96, 8192),
    );

    let smollm2 = known_model("smollm2-135m").expect("known");
    if default_cache_dir().join(smollm2.file_name()).exists() {
        let (model, _) = load("smollm2-135m", &device).expect("smollm2");
        let p = pairs(4, 32, 64, model.config.vocab_size);
        bench_step(c, "smollm2-lora16/4x(32+64)", model.clone(), true, &p);
        bench_step(c, "smollm2-full/4x(32+64)", model, false, &p);
    } else {
        eprintln!("smollm2-135m not in the cache: run `bpo fetch smollm2-135m` to bench it");
    }
}

criterion_group!(benches, dpo_step);
criterion_main!(benches);
