//! Generation throughput: batched, KV-cached decoding of fixed length (64 new tokens after
//! 16-token prompts): batch 1 greedy and batch 8 sampling (temperature 1, top-k 50), each with
//! the model prepared once ([`Generator`]: on the CPU its weights packed for decoding, like
//! loading it), and batch 1 greedy as a one-off call that packs them too.
//!
//! `cargo bench --bench generation` runs a small random Llama (4 layers, d 256) with the
//! fixture tokenizer, and SmolLM2-135M-Instruct when it is in the model cache
//! (`bpo fetch smollm2-135m`). Side-by-side with transformers: `benches/compare/generate.sh`.

use bpo::model::burn::tensor::Device;
use bpo::model::device::select_device;
use bpo::model::fetch::{default_cache_dir, known_model};
use bpo::model::{
    Generator, ModelConfig, ModelType, SamplingConfig, Transformer, generate_ids, load,
};
use bpo_testkit::tokenizer;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const PROMPT_TOKENS: usize = 16;
const NEW_TOKENS: usize = 64;

/// The prompts both sides use: `batch` rows of 16 ids (the same formula as generate_hf.py).
fn prompts(batch: usize, vocab: usize) -> Vec<Vec<u32>> {
    (0..batch)
        .map(|b| {
            (0..PROMPT_TOKENS)
                .map(|i| (3 + (i * 7919 + b * 104_729) % (vocab - 3)) as u32)
                .collect()
        })
        .collect()
}

fn bench_model(c: &mut Criterion, name: &str, model: &Transformer) {
    let mut group = c.benchmark_group("generate");
    group.sample_size(10);
    for (batch, sampling) in [(1, false), (8, true)] {
        let p = prompts(batch, model.config.vocab_size);
        let config = SamplingConfig {
            max_new_tokens: NEW_TOKENS,
            ignore_eos: true,
            ..if sampling {
                SamplingConfig::default()
            } else {
                SamplingConfig::greedy(NEW_TOKENS)
            }
        };
        let mode = if sampling { "sample" } else { "greedy" };
        group.throughput(Throughput::Elements((batch * NEW_TOKENS) as u64));
        // The model prepared once (its weights packed at the first call), as for loading it.
        let generator = Generator::new(model);
        group.bench_function(format!("{name}/batch{batch}-{mode}"), |b| {
            b.iter(|| generator.generate_ids(&p, &config, &[], 0, 0).unwrap())
        });
        if !sampling {
            // A one-off call: the weights packed within it.
            group.bench_function(format!("{name}/batch{batch}-{mode}-one-off"), |b| {
                b.iter(|| generate_ids(model, &p, &config, &[], 0, 0).unwrap())
            });
        }
    }
    group.finish();
}

fn generation(c: &mut Criterion) {
    // BPO_BENCH_DEVICE picks the device (`scripts/gpu-check.sh` sets it); default flex.
    let device = bench_device();
    let config = ModelConfig::preset(ModelType::LLAMA, "small", tokenizer().vocab_size()).unwrap();
    bench_model(c, "llama-small", &Transformer::init(&config, 0, &device));

    let smollm2 = known_model("smollm2-135m").unwrap();
    if default_cache_dir().join(smollm2.file_name()).exists() {
        let (model, _) = load("smollm2-135m", &device).unwrap();
        bench_model(c, "smollm2-135m", &model);
    } else {
        eprintln!("smollm2-135m not in the cache: run `bpo fetch smollm2-135m` to bench it");
    }
}

/// The device of `BPO_BENCH_DEVICE` (any `--device` value), flex when unset.
fn bench_device() -> Device {
    let spec = std::env::var("BPO_BENCH_DEVICE").unwrap_or_else(|_| "flex".into());
    let selected = select_device(&spec).expect("BPO_BENCH_DEVICE names a usable device");
    eprintln!("bench device: {}", selected.description);
    selected.device
}

criterion_group!(benches, generation);
criterion_main!(benches);
