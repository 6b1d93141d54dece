//! The same tiny model, batch and seed on `flex` (the CPU reference) and on `wgpu` (a GPU, or
//! Mesa's lavapipe Vulkan driver on a machine without one): forward logits, cached decoding with
//! left padding, per-token log-probs, one DPO step of the library's trainer, a LoRA merge, and
//! generation. Without a wgpu adapter the tests print why and pass; with `BPO_REQUIRE_WGPU=1`
//! (set in CI, which installs lavapipe) they fail instead.
//!
//! Tolerances: f32 sums are reduced in a different order on the GPU (tiled matmuls, tree
//! reductions), so values agree to a few ulps of their magnitude, not bitwise. The tiny model's
//! logits are O(1-10); 2e-4 absolute is ~10x the differences seen on lavapipe (2.6e-5), and
//! more than 100x below the gap between the two best tokens that greedy decoding relies on.
//! Sampling draws its uniforms from the same host RNG on both devices, so the sampled tokens
//! are equal unless a draw falls within ~1e-5 of a cumulative-probability boundary; the fixed
//! seed here does not, and the test asserts equality.

use std::io::Write;
use std::path::Path;

mod common;

use bpo::algos::config::LoraConfig;
use bpo::algos::lora::{apply_lora, load_adapters, merged, save_adapters};
use bpo::model::burn::tensor::Device;
use bpo::model::device::select_device;
use bpo::model::host::to_f32_vec;
use bpo::model::spec::save_hf;
use bpo::model::{
    ModelType, PaddingSide, SamplingConfig, TokenBatch, Transformer, generate_ids, load, score,
};
use bpo_testkit::{max_abs_diff, tiny_model, tokenizer};
use common::{dpo_step, tokens};

/// The largest difference of logits and log-probs the tests accept (see the module doc).
const TOLERANCE: f32 = 2e-4;

/// The wgpu device, or `None` (with the reason printed) when this machine has no adapter.
/// `--device wgpu` takes a Vulkan, Metal or DX12 adapter (lavapipe included), never OpenGL:
/// on a machine with only Mesa's GL software renderer these tests would take minutes, so they
/// run there only when asked, with `BPO_WGPU_DEVICE=gl`. The adapter is printed once, past
/// the test harness's capture.
fn wgpu() -> Option<Device> {
    static ANNOUNCED: std::sync::Once = std::sync::Once::new();
    let spec = std::env::var("BPO_WGPU_DEVICE").unwrap_or_else(|_| "wgpu".into());
    let announce = |line: String| {
        ANNOUNCED.call_once(|| {
            let _ = writeln!(std::io::stderr(), "tests/backends.rs: {line}");
        })
    };
    match select_device(&spec) {
        Ok(selected) => {
            announce(format!("--device {spec} is {}", selected.description));
            Some(selected.device)
        }
        Err(e) if std::env::var_os("BPO_REQUIRE_WGPU").is_some() => {
            panic!("BPO_REQUIRE_WGPU is set but wgpu is unusable: {e}")
        }
        Err(e) => {
            announce(format!("skipped: {e}"));
            None
        }
    }
}

/// A tiny model of `arch` written once to `dir`, loaded on `device`.
fn model_on(dir: &Path, arch: ModelType, device: &Device) -> Transformer {
    if !dir.join("config.json").exists() {
        save_hf(dir, &tiny_model(arch, 3, &Device::flex()), &tokenizer()).unwrap();
    }
    load(&dir.display().to_string(), device).unwrap().0
}

#[test]
fn forward_cached_decoding_and_logprobs_agree() {
    let Some(gpu) = wgpu() else { return };
    let dir = tempfile::tempdir().unwrap();
    // Gemma 3 brings sliding-window masks, its own RoPE base, q/k and post norms, GeGLU.
    for arch in [
        ModelType::LLAMA,
        ModelType::QWEN2,
        ModelType::GEMMA3,
        ModelType::GPT2,
    ] {
        let path = dir.path().join(format!("{arch:?}"));
        let (cpu_model, gpu_model) = (
            model_on(&path, arch, &Device::flex()),
            model_on(&path, arch, &gpu),
        );
        // Full forward of a right-padded batch.
        let seqs = [tokens(9, 1), tokens(5, 2)];
        let batch = TokenBatch::padded(&seqs, 0, PaddingSide::Right);
        let (a, b) = (
            to_f32_vec(cpu_model.forward(&batch)),
            to_f32_vec(gpu_model.forward(&batch)),
        );
        assert!(max_abs_diff(&a, &b) <= TOLERANCE, "{arch:?} forward");
        // Cached decoding: left-padded prompts, then one token per step.
        let prompts = [tokens(2, 3), tokens(6, 4)];
        let prompt_batch = TokenBatch::padded(&prompts, 0, PaddingSide::Left);
        let (mut cpu_cache, mut gpu_cache) = (cpu_model.new_cache(), gpu_model.new_cache());
        let (a, b) = (
            to_f32_vec(cpu_model.forward_cached(&prompt_batch, &mut cpu_cache)),
            to_f32_vec(gpu_model.forward_cached(&prompt_batch, &mut gpu_cache)),
        );
        assert!(max_abs_diff(&a, &b) <= TOLERANCE, "{arch:?} prefill");
        for step in 0..4 {
            let next = TokenBatch::single_step(&[5 + step, 9 + step]);
            let (a, b) = (
                to_f32_vec(cpu_model.forward_cached(&next, &mut cpu_cache)),
                to_f32_vec(gpu_model.forward_cached(&next, &mut gpu_cache)),
            );
            assert!(max_abs_diff(&a, &b) <= TOLERANCE, "{arch:?} step {step}");
        }
        // Per-token log-probs of responses.
        let pairs = vec![(tokens(4, 5), tokens(7, 6)), (tokens(8, 7), tokens(3, 8))];
        let (a, b) = (
            score(&cpu_model, &pairs, 0, 2).unwrap(),
            score(&gpu_model, &pairs, 0, 2).unwrap(),
        );
        for (x, y) in a.iter().zip(&b) {
            assert!(
                max_abs_diff(&x.logprobs, &y.logprobs) <= TOLERANCE,
                "{arch:?} logprobs"
            );
        }
    }
}

fn probe_logits(model: &Transformer) -> Vec<f32> {
    let probe = TokenBatch::padded(&[tokens(10, 30)], 0, PaddingSide::Right);
    to_f32_vec(merged(model).forward(&probe))
}

#[test]
fn a_dpo_step_and_a_lora_merge_agree() {
    let Some(gpu) = wgpu() else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("llama");
    let cpu = dpo_step(
        model_on(&path, ModelType::LLAMA, &Device::flex().autodiff()),
        &dir.path().join("cpu"),
    );
    let on_gpu = dpo_step(
        model_on(&path, ModelType::LLAMA, &gpu.clone().autodiff()),
        &dir.path().join("gpu"),
    );
    assert!(
        (cpu.0 - on_gpu.0).abs() <= 1e-5 * cpu.0.abs().max(1.0),
        "loss"
    );
    assert!(
        (cpu.1 - on_gpu.1).abs() <= 1e-4 * cpu.1.max(1.0),
        "grad norm"
    );
    let diff = max_abs_diff(&probe_logits(&cpu.2), &probe_logits(&on_gpu.2));
    assert!(diff <= TOLERANCE, "logits after the step: {diff}");

    // LoRA: adapters drawn on the CPU (seeded draws differ between backends) and trained one
    // step there (B is zero until then), carried over in PEFT's layout, merged on each device.
    let lora = LoraConfig {
        rank: 4,
        ..LoraConfig::default()
    };
    let cpu_base = model_on(&path, ModelType::LLAMA, &Device::flex().autodiff());
    let (_, _, adapted) = dpo_step(
        apply_lora(cpu_base, &lora, 1).unwrap(),
        &dir.path().join("lora"),
    );
    let adapter_dir = dir.path().join("adapter");
    save_adapters(&adapted, &lora, "tiny", &adapter_dir).unwrap();
    let gpu_base = model_on(&path, ModelType::LLAMA, &gpu.clone().autodiff());
    let on_gpu =
        load_adapters(apply_lora(gpu_base, &lora, 2).unwrap(), &lora, &adapter_dir).unwrap();
    assert!(
        max_abs_diff(
            &probe_logits(&adapted),
            &probe_logits(&model_on(&path, ModelType::LLAMA, &Device::flex()))
        ) > 1e-3,
        "the adapter changes the model"
    );
    let diff = max_abs_diff(&probe_logits(&adapted), &probe_logits(&on_gpu));
    assert!(diff <= TOLERANCE, "merged LoRA logits: {diff}");
}

#[test]
fn greedy_and_seeded_generation_give_the_same_tokens() {
    let Some(gpu) = wgpu() else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("llama");
    let (cpu_model, gpu_model) = (
        model_on(&path, ModelType::LLAMA, &Device::flex()),
        model_on(&path, ModelType::LLAMA, &gpu),
    );
    let prompts = [tokens(3, 40), tokens(7, 41)];
    for config in [
        SamplingConfig::greedy(12),
        SamplingConfig {
            temperature: 1.0,
            top_k: Some(20),
            top_p: Some(0.9),
            max_new_tokens: 12,
            seed: 7,
            ignore_eos: true,
        },
    ] {
        let run = |model: &Transformer| -> Vec<Vec<u32>> {
            generate_ids(model, &prompts, &config, &[2], 0, 0)
                .unwrap()
                .into_iter()
                .map(|g| g.token_ids)
                .collect()
        };
        assert_eq!(run(&cpu_model), run(&gpu_model), "{config:?}");
    }
}
