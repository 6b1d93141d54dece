//! The weight products of one decoding step of a SmolLM2-135M-shaped model (30 layers of
//! q, k, v, o, gate, up, down projections, then the 49152-token head; random weights, 538 MB,
//! far more than the L3 cache) for 1, 8, 32 and 64 activation rows (32: a sampling batch of the
//! experiment): the packed products that decoding uses (q|k|v and gate|up as one product each,
//! `bpo_model::linear::PackedWeight`) against the `gemm` crate's product
//! (`bpo_model::flex::matmul`) on the same weights.
//!
//! Also the time to pack all of them, which a model pays once for generation (per
//! `Generator`, or per one-off `generate` call).
//!
//! `cargo bench --bench decode_products`; set `RAYON_NUM_THREADS` to pin the thread count.

use bpo::model::burn::tensor::{Device, Distribution, Tensor};
use bpo::model::flex;
use bpo::model::host::to_f32_vec;
use bpo::model::linear::{PackedWeight, Unpacked};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const HIDDEN: usize = 576;
const KV: usize = 192;
const FFN: usize = 1536;
const VOCAB: usize = 49152;
const LAYERS: usize = 30;

/// The products of a decoding step in order, each as the weights `[d_in, d_out_i]` that read
/// the same input.
fn products(device: &Device) -> Vec<Vec<Tensor<2>>> {
    let layer: [&[(usize, usize)]; 4] = [
        &[(HIDDEN, HIDDEN), (HIDDEN, KV), (HIDDEN, KV)],
        &[(HIDDEN, HIDDEN)],
        &[(HIDDEN, FFN), (HIDDEN, FFN)],
        &[(FFN, HIDDEN)],
    ];
    let head: &[(usize, usize)] = &[(HIDDEN, VOCAB)];
    let random =
        |&(k, n): &(usize, usize)| Tensor::random([k, n], Distribution::Normal(0.0, 0.02), device);
    (0..LAYERS)
        .flat_map(|_| layer)
        .chain([head])
        .map(|shapes| shapes.iter().map(random).collect())
        .collect()
}

/// Every product's weights as host values; the head as its transpose, the token embedding
/// that SmolLM2's tied head is.
fn host(products: &[Vec<Tensor<2>>]) -> Vec<Vec<(Vec<f32>, usize)>> {
    products
        .iter()
        .map(|p| {
            p.iter()
                .map(|w| {
                    let n = w.dims()[1];
                    let w = if n == VOCAB {
                        w.clone().transpose()
                    } else {
                        w.clone()
                    };
                    (to_f32_vec(w), n)
                })
                .collect()
        })
        .collect()
}

/// The weights of every product packed as decoding packs them: side by side, the head from
/// its transpose, all in one allocation.
fn pack(host: &[Vec<(Vec<f32>, usize)>]) -> Vec<PackedWeight> {
    let unpacked: Vec<Unpacked> = host
        .iter()
        .map(|values| {
            let (first, n) = (&values[0].0, values[0].1);
            let k = first.len() / n;
            if n == VOCAB {
                return Unpacked::Transposed {
                    values: first,
                    k,
                    n,
                };
            }
            let parts = values.iter().map(|(v, n)| (v.as_slice(), *n)).collect();
            Unpacked::SideBySide { parts, k }
        })
        .collect();
    PackedWeight::pack_all(&unpacked)
}

fn decode_products(c: &mut Criterion) {
    let device = Device::flex();
    let products = products(&device);
    let host = host(&products);
    let packed = pack(&host);
    let bytes: usize = products
        .iter()
        .flatten()
        .map(|w| w.dims()[0] * w.dims()[1] * 4)
        .sum();
    let mut group = c.benchmark_group("decode_products");
    group.sample_size(20);
    group.throughput(Throughput::Bytes(bytes as u64));
    // What a model pays once for generation: packing every weight.
    group.bench_function("pack", |b| b.iter(|| pack(&host)));
    for rows in [1, 8, 32, 64] {
        let inputs: Vec<Tensor<2>> = [HIDDEN, FFN]
            .map(|d| Tensor::random([rows, d], Distribution::Normal(0.0, 1.0), &device))
            .into();
        let input = |k: usize| inputs[usize::from(k == FFN)].clone();
        group.bench_function(format!("packed/rows{rows}"), |b| {
            b.iter(|| {
                for w in &packed {
                    w.product(&to_f32_vec(input(w.k())), rows);
                }
            })
        });
        group.bench_function(format!("gemm/rows{rows}"), |b| {
            b.iter(|| {
                for w in products.iter().flatten() {
                    flex::matmul(input(w.dims()[0]), w.clone());
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, decode_products);
criterion_main!(benches);
