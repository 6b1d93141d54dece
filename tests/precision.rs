//! Half precision on wgpu against f32 on the CPU: the same tiny model's forward logits and one
//! DPO step of the library's trainer. A separate test binary, because a device's float type is
//! set once per process (`bpo_model::device::set_precision`).
//!
//! Tolerances: f16 keeps 11 significant bits (relative rounding 4.9e-4 per operation); through
//! a 2-layer model the logits (magnitude up to ~10 here) drift by up to a few 1e-2, so 5% of the
//! largest logit bounds the difference; the loss is an average and agrees to 1%.

use std::path::Path;

mod common;

use bpo::model::burn::tensor::Device;
use bpo::model::device::{Precision, open_device};
use bpo::model::host::to_f32_vec;
use bpo::model::spec::save_hf;
use bpo::model::{ModelType, PaddingSide, TokenBatch, Transformer, load};
use bpo_testkit::{max_abs_diff, tiny_model, tokenizer};
use common::{dpo_step, tokens};

/// Logits on a probe batch and the loss of one DPO step.
fn forward_and_step(model: Transformer, out: &Path) -> (Vec<f32>, f64) {
    let probe = TokenBatch::padded(&[tokens(9, 1), tokens(5, 2)], 0, PaddingSide::Right);
    let logits = to_f32_vec(model.forward(&probe));
    let (loss, _, _) = dpo_step(model, out);
    (logits, loss)
}

#[test]
fn f16_on_wgpu_agrees_with_f32_within_its_precision() {
    let f16 = match open_device("wgpu", Precision::F16) {
        Ok(selected) => selected,
        Err(e) if std::env::var_os("BPO_REQUIRE_WGPU").is_some() => {
            panic!("BPO_REQUIRE_WGPU is set but wgpu f16 is unusable: {e}")
        }
        Err(e) => {
            eprintln!("skipped: {e}");
            return;
        }
    };
    eprintln!("f16 device: {}", f16.description);
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("llama");
    save_hf(
        &spec,
        &tiny_model(ModelType::LLAMA, 3, &Device::flex()),
        &tokenizer(),
    )
    .unwrap();
    let spec = spec.display().to_string();
    let reference = forward_and_step(
        load(&spec, &Device::flex().autodiff()).unwrap().0,
        &dir.path().join("f32"),
    );
    let half = forward_and_step(
        load(&spec, &f16.device.autodiff()).unwrap().0,
        &dir.path().join("f16"),
    );
    let scale = reference.0.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = max_abs_diff(&reference.0, &half.0);
    assert!(
        diff <= 0.05 * scale,
        "logits differ by {diff} (scale {scale})"
    );
    assert!(
        (reference.1 - half.1).abs() <= 0.01 * reference.1.abs(),
        "loss {} vs {}",
        reference.1,
        half.1
    );
}
