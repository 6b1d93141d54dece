//! One DPO optimizer step through the library's public trainer (`Trainer::step`: policy forward
//! and backward over chosen and rejected, reference log-probs carried by the pairs as in BPO,
//! DPO loss, global-norm clipping, AdamW, the metrics line): the code `bpo train` and
//! `bpo online` run.
//!
//! `cargo bench --bench dpo_step` runs a small random Llama (4 layers, d 256, 4 heads, ffn 1024,
//! vocab 8192; 8 pairs of 32 + 96 tokens, full fine-tuning) and, when SmolLM2-135M-Instruct is
//! in the model cache, SmolLM2 with LoRA r = 16 on all linear layers and with full fine-tuning
//! (4 pairs of 32 + 64 tokens). With `BPO_BENCH_LONG=1`, the long rows instead ([`LONG_ROWS`]:
//! up to one pair of 1024 + 1024 tokens); `BPO_BENCH_CHECKPOINTING=1` turns on per-block gradient
//! checkpointing, `BPO_BENCH_BF16=1` bf16 products with the frozen weights
//! (`Transformer::bf16_products`). Side-by-side with PyTorch:
//! `benches/compare/dpo_step.sh`.

use bpo::algos::LossConfig;
use bpo::algos::config::{LoraConfig, OptimConfig};
use bpo::algos::dap::Dap;
use bpo::algos::lora::apply_lora;
use bpo::algos::reference::{Reference, ReferenceLogps};
use bpo::algos::trainer::{Policy, RunDir, Schedule, Silent, Trainer};
use bpo::data::TokenizedPair;
use bpo::model::burn::tensor::Device;
use bpo::model::device::select_device;
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
    policy.gradient_checkpointing = std::env::var_os("BPO_BENCH_CHECKPOINTING").is_some();
    policy.bf16_products = std::env::var_os("BPO_BENCH_BF16").is_some();
    let n = pairs.len();
    // The reference log-probs BPO reads from the pairs (no reference forward pass).
    let reference = ReferenceLogps {
        chosen: vec![-100.0; n],
        rejected: vec![-100.0; n],
        chosen_tokens: vec![pairs[0].chosen.len() as f32; n],
        rejected_tokens: vec![pairs[0].rejected.len() as f32; n],
    };
    let mut objective = Dap {
        pairs: pairs.to_vec(),
        reference: Reference::Fixed(reference),
        dev: None,
        loss: LossConfig::default(),
        pad_id: 0,
        eval_batch_size: n,
    };
    let optim = OptimConfig::default();
    let out = tempfile::tempdir().expect("temp dir");
    let dir = RunDir::create(out.path(), &name, 1, &[]).expect("run dir");
    let (mut trainer, _) = Trainer::start::<()>(
        Policy::single(policy, &optim),
        Schedule {
            optim: optim.clone(),
            total_steps: usize::MAX,
            ..Schedule::default()
        },
        dir,
        None,
        None,
        &mut Silent,
    )
    .expect("trainer");
    let batch: Vec<usize> = (0..n).collect();
    let tokens: usize = pairs
        .iter()
        .map(|p| 2 * p.prompt.len() + p.chosen.len() + p.rejected.len())
        .sum();
    let mut group = c.benchmark_group("dpo_step");
    group.sample_size(10);
    group.throughput(Throughput::Elements(tokens as u64));
    group.bench_function(name, |b| {
        b.iter(|| {
            trainer
                .step(&mut objective, std::slice::from_ref(&batch), &mut Silent)
                .expect("step")
        })
    });
    group.finish();
}

/// The long rows (`BPO_BENCH_LONG=1`, SmolLM2 with LoRA r = 16): pairs x (prompt + response),
/// then single pairs of growing length for the scaling table; `benches/compare/dpo_step.py`
/// has the same list.
const LONG_ROWS: [(usize, usize, usize); 7] = [
    (2, 256, 256),
    (1, 768, 256),
    (1, 64, 64),
    (1, 128, 128),
    (1, 256, 256),
    (1, 512, 512),
    (1, 1024, 1024),
];

fn dpo_step(c: &mut Criterion) {
    // BPO_BENCH_DEVICE picks the device (`scripts/gpu-check.sh` sets it); default flex.
    let device = bench_device().autodiff();
    let long = std::env::var_os("BPO_BENCH_LONG").is_some();
    if !long {
        let config = ModelConfig::preset(ModelType::LLAMA, "small", 8192).expect("preset");
        let tiny = Transformer::init(&config, 0, &device);
        bench_step(
            c,
            "tiny-full/8x(32+96)",
            tiny,
            false,
            &pairs(8, 32, 96, 8192),
        );
    }

    let smollm2 = known_model("smollm2-135m").expect("known");
    if !default_cache_dir().join(smollm2.file_name()).exists() {
        eprintln!("smollm2-135m not in the cache: run `bpo fetch smollm2-135m` to bench it");
        return;
    }
    let (model, _) = load("smollm2-135m", &device).expect("smollm2");
    let vocab = model.config.vocab_size;
    if long {
        for (n, prompt, response) in LONG_ROWS {
            let name = format!("smollm2-lora16/{n}x({prompt}+{response})");
            let p = pairs(n, prompt, response, vocab);
            bench_step(c, &name, model.clone(), true, &p);
        }
    } else {
        let p = pairs(4, 32, 64, vocab);
        bench_step(c, "smollm2-lora16/4x(32+64)", model.clone(), true, &p);
        bench_step(c, "smollm2-full/4x(32+64)", model, false, &p);
    }
}

/// The device of `BPO_BENCH_DEVICE` (any `--device` value), flex when unset.
fn bench_device() -> Device {
    let spec = std::env::var("BPO_BENCH_DEVICE").unwrap_or_else(|_| "flex".into());
    let selected = select_device(&spec).expect("BPO_BENCH_DEVICE names a usable device");
    eprintln!("bench device: {}", selected.description);
    selected.device
}

criterion_group!(benches, dpo_step);
criterion_main!(benches);
