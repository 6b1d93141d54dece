//! Parity with transformers, one table over the architectures: random tiny models built and
//! saved by transformers (`scripts/transformers_parity.py`, every parameter random, norms
//! included) are loaded by bpo; per-token log-probs must agree within 1e-4, cached greedy
//! decoding must give transformers' `generate` tokens, and bpo's export must load back in
//! transformers (its own class) with log-probs within 1e-4. Runs with `BPO_PYTHON` set to a
//! Python with torch and transformers (CI's venv); prints the README's parity table.

use std::path::Path;
use std::process::Command;

use bpo_model::burn::tensor::Device;
use bpo_model::weights::hf_dir;
use bpo_model::{SamplingConfig, Transformer, generate_ids, score};
use bpo_testkit::tokenizer;

const TOLERANCE: f64 = 1e-4;

fn python(python: &std::ffi::OsStr, args: &[&str]) -> String {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scripts/transformers_parity.py"
    );
    let out = Command::new(python)
        .arg(script)
        .args(args)
        .output()
        .expect("python runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "transformers_parity.py {args:?}: {stderr}"
    );
    String::from_utf8(out.stdout).unwrap()
}

fn load(dir: &Path, device: &Device) -> Transformer {
    let config = hf_dir::read_config(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let tensors = hf_dir::read_tensors(dir).unwrap();
    Transformer::from_tensor_map(&config, tensors, device).unwrap()
}

#[test]
fn architectures_match_transformers() {
    let Some(py) = std::env::var_os("BPO_PYTHON") else {
        eprintln!("skipped: set BPO_PYTHON to a Python with torch and transformers");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    python(&py, &["build", out]);
    let text = std::fs::read_to_string(dir.path().join("reference.json")).unwrap();
    let reference: serde_json::Value = serde_json::from_str(&text).unwrap();
    let ids: Vec<u32> = serde_json::from_value(reference["ids"].clone()).unwrap();
    let prompt: Vec<u32> = serde_json::from_value(reference["prompt"].clone()).unwrap();
    let device = Device::flex();
    let architectures = reference["architectures"].as_object().unwrap();
    let mut rows = Vec::new();
    for (arch, expected) in architectures {
        let directory = expected["directory"].as_str().unwrap();
        let model = load(&dir.path().join(directory), &device);
        assert_eq!(
            model.config.model_type.hf_name(),
            expected["model_type"].as_str().unwrap()
        );
        let theirs: Vec<f64> = serde_json::from_value(expected["logprobs"].clone()).unwrap();
        let scored = score(&model, &[(ids[..1].to_vec(), ids[1..].to_vec())], 0, 1).unwrap();
        let ours = &scored[0].logprobs;
        assert_eq!(ours.len(), theirs.len(), "{arch}");
        let diff = ours
            .iter()
            .zip(&theirs)
            .map(|(a, b)| (*a as f64 - b).abs())
            .fold(0.0, f64::max);

        let greedy: Vec<u32> = serde_json::from_value(expected["greedy"].clone()).unwrap();
        let config = SamplingConfig::greedy(greedy.len());
        let generated = generate_ids(&model, std::slice::from_ref(&prompt), &config, &[], 0, 0);
        let tokens = generated.unwrap().remove(0).token_ids;

        let export = dir.path().join("export").join(directory);
        hf_dir::write(&export, &model.config, &model.to_tensor_map(), &tokenizer()).unwrap();
        rows.push((arch.clone(), diff, tokens == greedy, tokens, greedy));
    }
    let reloaded: serde_json::Value = serde_json::from_str(&python(&py, &["check", out])).unwrap();
    println!(
        "| architecture | max abs log-prob difference | greedy tokens equal | export reloaded by transformers, max difference |"
    );
    println!("|---|---|---|---|");
    for (arch, diff, equal, _, _) in &rows {
        let back = reloaded[arch].as_f64().unwrap();
        println!(
            "| {arch} | {diff:.1e} | {} | {back:.1e} |",
            if *equal { "yes" } else { "no" }
        );
    }
    for (arch, diff, equal, ours, theirs) in &rows {
        assert!(*diff < TOLERANCE, "{arch}: log-probs differ by {diff}");
        assert!(*equal, "{arch}: greedy {ours:?}, transformers {theirs:?}");
        let back = reloaded[arch].as_f64().unwrap();
        assert!(
            back < TOLERANCE,
            "{arch}: export reloaded differs by {back}"
        );
    }
}
