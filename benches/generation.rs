//! Generation throughput: batched, KV-cached greedy decoding of fixed length.
//!
//! `cargo bench --bench generation` runs a small random Llama (4 layers, d 256) with the
//! fixture tokenizer, and SmolLM2-135M-Instruct when it is in the model cache
//! (`bpo fetch smollm2-135m`). Side-by-side with transformers: `benches/compare/generate.sh`.

use bpo::model::burn::tensor::Device;
use bpo::model::fetch::{default_cache_dir, known_model};
use bpo::model::testing::tokenizer;
use bpo::model::{ModelConfig, ModelType, SamplingConfig, Transformer, generate_ids, load};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const NEW_TOKENS: usize = 32;

fn prompts(batch: usize, len: usize, vocab: usize) -> Vec<Vec<u32>> {
    (0..batch)
        .map(|b| {
            (0..len)
                .map(|i| ((i * 31 + b * 7 + 3) % vocab) as u32)
                .collect()
        })
        .collect()
}

fn bench_model(
    c: &mut Criterion,
    name: &str,
    model: &Transformer,
    batch: usize,
    prompt_len: usize,
) {
    let p = prompts(batch, prompt_len, model.config.vocab_size);
    let config = SamplingConfig::greedy(NEW_TOKENS);
    let mut group = c.benchmark_group("generate");
    group.sample_size(10);
    group.throughput(Throughput::Elements((batch * NEW_TOKENS) as u64));
    group.bench_function(
        format!("{name}/batch{batch}/prompt{prompt_len}/new{NEW_TOKENS}"),
        |b| b.iter(|| generate_ids(model, &p, &config, &[], 0, 0).unwrap()),
    );
    group.finish();
}

fn generation(c: &mut Criterion) {
    let device = Device::flex();
    let config = ModelConfig::preset(ModelType::Llama, "small", tokenizer().vocab_size()).unwrap();
    let small = Transformer::init(&config, 0, &device);
    bench_model(c, "llama-small", &small, 8, 16);

    let smollm2 = known_model("smollm2-135m").unwrap();
    if default_cache_dir().join(smollm2.file_name()).exists() {
        let (model, _) = load("smollm2-135m", &device).unwrap();
        bench_model(c, "smollm2-135m", &model, 4, 32);
    } else {
        eprintln!("smollm2-135m not in the cache: run `bpo fetch smollm2-135m` to bench it");
    }
}

criterion_group!(benches, generation);
criterion_main!(benches);
