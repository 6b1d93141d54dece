//! The LoRA ensemble: merge rules against hand-computed matrices, members starting from saved
//! adapters.

use bpo_algos::config::LoraConfig;
use bpo_algos::ensemble::{MergeRule, merge};
use bpo_algos::lora::{adapters, apply_lora};
use bpo_model::burn::tensor::Device;
use bpo_model::host::to_f32_vec;
use bpo_model::{ModelType, PaddingSide, TokenBatch, Transformer, load};
use bpo_testkit::{probe_logits, tiny_model, tiny_model_dir, with_random_lora_b};

/// Host `[n, r] x [r, m]`.
fn matmul(a: &[f32], b: &[f32], n: usize, r: usize, m: usize) -> Vec<f32> {
    let mut out = vec![0.0; n * m];
    for i in 0..n {
        for k in 0..r {
            for j in 0..m {
                out[i * m + j] += a[i * r + k] * b[k * m + j];
            }
        }
    }
    out
}

#[test]
fn ensemble_merge_rules_match_hand_computed_matrices() {
    let device = Device::flex();
    let base = tiny_model(ModelType::LLAMA, 8, &device);
    let lora = LoraConfig {
        rank: 2,
        alpha: 4.0,
        targets: vec!["q".into()],
        ..LoraConfig::default()
    };
    let members: Vec<Transformer> = (0..3)
        .map(|i| {
            let m = apply_lora(base.clone(), &lora, i).unwrap();
            with_random_lora_b(m, 100 + i)
        })
        .collect();
    let refs: Vec<&Transformer> = members.iter().collect();
    let scale = 4.0 / 2.0;
    let w0 = to_f32_vec(base.layers[0].attn.q.weight.val());
    let [d_in, d_out] = base.layers[0].attn.q.weight.val().dims();
    let factors: Vec<(Vec<f32>, Vec<f32>)> = members
        .iter()
        .map(|m| {
            let a = &adapters(m)[0];
            assert_eq!(a.path, "layers.0.attn.q.weight");
            (a.a.data.clone(), a.b.data.clone())
        })
        .collect();
    for rule in [MergeRule::DeltaAverage, MergeRule::FactorWise] {
        let merged = merge(&refs, rule);
        let got = to_f32_vec(merged.layers[0].attn.q.weight.val());
        let delta: Vec<f32> = match rule {
            MergeRule::DeltaAverage => {
                let mut sum = vec![0.0; d_in * d_out];
                for (a, b) in &factors {
                    for (s, v) in sum.iter_mut().zip(matmul(a, b, d_in, 2, d_out)) {
                        *s += v * scale / 3.0;
                    }
                }
                sum
            }
            MergeRule::FactorWise => {
                let mut a_sum = vec![0.0; d_in * 2];
                let mut b_sum = vec![0.0; 2 * d_out];
                for (a, b) in &factors {
                    a_sum.iter_mut().zip(a).for_each(|(s, v)| *s += v);
                    b_sum.iter_mut().zip(b).for_each(|(s, v)| *s += v);
                }
                matmul(&a_sum, &b_sum, d_in, 2, d_out)
                    .into_iter()
                    .map(|v| v * scale / 3.0)
                    .collect()
            }
        };
        let mut worst = 0f32;
        for i in 0..got.len() {
            worst = worst.max((got[i] - (w0[i] + delta[i])).abs());
        }
        assert!(worst < 1e-5, "{rule:?}: {worst}");
        // Untargeted weights are the base's.
        let k_merged = to_f32_vec(merged.layers[0].attn.k.weight.val());
        let k_base = to_f32_vec(base.layers[0].attn.k.weight.val());
        assert!(
            k_merged
                .iter()
                .zip(&k_base)
                .all(|(a, b)| (a - b).abs() < 1e-6)
        );
    }
    // The two rules differ when the members differ.
    let a = to_f32_vec(
        merge(&refs, MergeRule::DeltaAverage).layers[0]
            .attn
            .q
            .weight
            .val(),
    );
    let b = to_f32_vec(
        merge(&refs, MergeRule::FactorWise).layers[0]
            .attn
            .q
            .weight
            .val(),
    );
    assert!(a.iter().zip(&b).any(|(x, y)| (x - y).abs() > 1e-4));
}

#[test]
fn members_start_from_saved_adapters() {
    let dir = tempfile::tempdir().unwrap();
    let spec = tiny_model_dir(dir.path(), 9);
    let (base, _) = load(&spec, &Device::flex().autodiff()).unwrap();
    let lora = LoraConfig {
        rank: 2,
        ..LoraConfig::default()
    };
    let trained = with_random_lora_b(apply_lora(base.clone(), &lora, 1).unwrap(), 5);
    let adapter_dir = dir.path().join("adapter");
    bpo_algos::lora::save_adapters(&trained, &lora, "tiny", &adapter_dir).unwrap();
    let fresh = apply_lora(base, &lora, 2).unwrap();
    let loaded = bpo_algos::lora::load_adapters(fresh, &lora, &adapter_dir).unwrap();
    assert_eq!(adapters(&loaded), adapters(&trained));
    assert_eq!(
        probe_logits(&bpo_algos::lora::merged(&loaded)),
        probe_logits(&bpo_algos::lora::merged(&trained))
    );
    // The loaded factors still train.
    let batch = TokenBatch::padded(&[vec![5, 9, 40]], 0, PaddingSide::Right);
    let grads = loaded.forward(&batch).sum().backward();
    let params = bpo_model::burn::optim::GradientsParams::from_grads(grads, &loaded);
    assert!(
        params.len() >= 2 * adapters(&loaded).len(),
        "{}",
        params.len()
    );
}
