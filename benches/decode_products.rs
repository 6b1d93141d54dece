//! The weight products of one decoding step of a SmolLM2-135M-shaped model (30 layers of
//! q, k, v, o, gate, up, down projections, then the 49152-token head; random weights, 538 MB,
//! far more than the L3 cache) for 1, 8, 32 and 64 activation rows (32: a sampling batch of the
//! experiment): `bpo_model::linear::matmul`, the kernels that decoding uses, against Burn's own
//! matmul on the same tensors.
//!
//! `cargo bench --bench decode_products`; set `RAYON_NUM_THREADS` to pin the thread count.

use bpo::model::burn::tensor::{Device, Distribution, Tensor};
use bpo::model::linear;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const HIDDEN: usize = 576;
const KV: usize = 192;
const FFN: usize = 1536;
const VOCAB: usize = 49152;
const LAYERS: usize = 30;

/// Every weight of the model as `[d_in, d_out]`, in the order a decoding step reads them.
fn weights(device: &Device) -> Vec<Tensor<2>> {
    let layer = [
        (HIDDEN, HIDDEN),
        (HIDDEN, KV),
        (HIDDEN, KV),
        (HIDDEN, HIDDEN),
        (HIDDEN, FFN),
        (HIDDEN, FFN),
        (FFN, HIDDEN),
    ];
    let shapes = (0..LAYERS).flat_map(|_| layer).chain([(HIDDEN, VOCAB)]);
    shapes
        .map(|(k, n)| Tensor::random([k, n], Distribution::Normal(0.0, 0.02), device))
        .collect()
}

fn decode_products(c: &mut Criterion) {
    let device = Device::flex();
    let weights = weights(&device);
    let bytes: usize = weights.iter().map(|w| w.dims()[0] * w.dims()[1] * 4).sum();
    let mut group = c.benchmark_group("decode_products");
    group.sample_size(20);
    group.throughput(Throughput::Bytes(bytes as u64));
    for rows in [1, 8, 32, 64] {
        let inputs: Vec<Tensor<2>> = [HIDDEN, FFN]
            .map(|d| Tensor::random([rows, d], Distribution::Normal(0.0, 1.0), &device))
            .into();
        let input = |w: &Tensor<2>| inputs[usize::from(w.dims()[0] == FFN)].clone();
        group.bench_function(format!("bpo/rows{rows}"), |b| {
            b.iter(|| {
                for w in &weights {
                    linear::matmul(input(w), w.clone());
                }
            })
        });
        group.bench_function(format!("burn/rows{rows}"), |b| {
            b.iter(|| {
                for w in &weights {
                    input(w).matmul(w.clone());
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, decode_products);
criterion_main!(benches);
