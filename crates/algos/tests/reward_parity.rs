//! Reward models against transformers, one table over the architectures: random tiny
//! `*ForSequenceClassification` models built and saved by transformers
//! (`scripts/reward_parity.py`, every parameter random) are loaded by bpo, whose rewards of
//! sequences of four lengths must agree within 1e-4 with transformers' in right- and
//! left-padded batches (and bpo's own left- and right-padded rewards must agree); a model
//! trained by `bpo rm train` must load in transformers as its own sequence classifier with the
//! rewards bpo gives. Runs with `BPO_PYTHON` set to a Python with torch and transformers (CI's
//! venv); prints the README's table.

use std::path::Path;
use std::process::Command;

use bpo_algos::Silent;
use bpo_algos::config::{DataConfig, RunConfig};
use bpo_algos::rm::{RewardModel, RewardModelConfig, train_reward_model};
use bpo_data::{Content, PreferencePair, write_all};
use bpo_model::burn::tensor::Device;
use bpo_model::host::to_f32_vec;
use bpo_model::spec::save_hf;
use bpo_model::{ModelType, PaddingSide, TokenBatch};
use bpo_testkit::{tiny_model, tokenizer};

const TOLERANCE: f64 = 1e-4;

fn python(python: &std::ffi::OsStr, args: &[&str]) -> String {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scripts/reward_parity.py"
    );
    let out = Command::new(python)
        .arg(script)
        .args(args)
        .output()
        .expect("python runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "reward_parity.py {args:?}: {stderr}");
    String::from_utf8(out.stdout).unwrap()
}

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

/// bpo's rewards of `sequences` in one batch padded with `pad` on `side`.
fn rewards(model: &RewardModel, sequences: &[Vec<u32>], pad: u32, side: PaddingSide) -> Vec<f64> {
    let batch = TokenBatch::padded(sequences, pad, side);
    to_f32_vec(model.forward(&batch))
        .into_iter()
        .map(f64::from)
        .collect()
}

#[test]
fn reward_models_match_transformers() {
    let Some(py) = std::env::var_os("BPO_PYTHON") else {
        eprintln!("skipped: set BPO_PYTHON to a Python with torch and transformers");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    python(&py, &["build", dir.path().to_str().unwrap()]);
    let text = std::fs::read_to_string(dir.path().join("reference.json")).unwrap();
    let reference: serde_json::Value = serde_json::from_str(&text).unwrap();
    let sequences: Vec<Vec<u32>> = serde_json::from_value(reference["sequences"].clone()).unwrap();
    let device = Device::flex();
    println!(
        "| architecture | transformers class | max abs reward difference (right padding) | (left padding) | bpo left vs right |"
    );
    println!("|---|---|---|---|---|");
    let mut failures = Vec::new();
    for (arch, expected) in reference["architectures"].as_object().unwrap() {
        // transformers saved no tokenizer with these random models: bpo's fixture stands in.
        let model_dir = dir.path().join(arch);
        tokenizer().save(&model_dir).unwrap();
        let (model, _) = RewardModel::load(model_dir.to_str().unwrap(), &device)
            .unwrap_or_else(|e| panic!("{arch}: {e}"));
        let pad = model.pad_token_id.expect("the models declare a pad id");
        let right = rewards(&model, &sequences, pad, PaddingSide::Right);
        let left = rewards(&model, &sequences, pad, PaddingSide::Left);
        let theirs: Vec<f64> = serde_json::from_value(expected["right"].clone()).unwrap();
        let theirs_left: Vec<f64> = serde_json::from_value(expected["left"].clone()).unwrap();
        let (d_right, d_sides) = (max_diff(&right, &theirs), max_diff(&left, &right));
        // transformers' GPT-2 counts positions over the padding on the left: only its
        // right-padded rewards are the model's.
        let d_left = match arch.as_str() {
            "gpt2" => None,
            _ => Some(max_diff(&left, &theirs_left)),
        };
        let shown = d_left.map_or("n/a (GPT-2's positions)".into(), |d| format!("{d:.1e}"));
        println!(
            "| {arch} | {} | {d_right:.1e} | {shown} | {d_sides:.1e} |",
            expected["class"].as_str().unwrap()
        );
        if d_right >= TOLERANCE || d_left.is_some_and(|d| d >= TOLERANCE) || d_sides >= TOLERANCE {
            failures.push(arch.clone());
        }
    }
    assert!(failures.is_empty(), "rewards differ: {failures:?}");
    trained_model_loads_in_transformers(&py, dir.path(), &sequences);
}

/// `bpo rm train` on a few pairs, then transformers scores with the written model.
fn trained_model_loads_in_transformers(py: &std::ffi::OsStr, dir: &Path, sequences: &[Vec<u32>]) {
    let body = dir.join("body");
    save_hf(
        &body,
        &tiny_model(ModelType::QWEN3, 3, &Device::flex()),
        &tokenizer(),
    )
    .unwrap();
    let train = dir.join("pairs.jsonl");
    let records: Vec<PreferencePair> = (0..8)
        .map(|i| PreferencePair {
            prompt: Content::text(format!("note {i}:")),
            chosen: Content::text(" green tree"),
            rejected: Content::text(" big dog"),
            meta: Default::default(),
        })
        .collect();
    write_all(&train, &records).unwrap();
    let config = RewardModelConfig {
        model: body.display().to_string(),
        device: "flex".into(),
        dtype: Default::default(),
        data: DataConfig {
            train,
            dev: None,
            max_prompt_tokens: None,
            max_response_tokens: None,
            max_length: None,
            skip_invalid: false,
        },
        lora: None,
        optim: Default::default(),
        run: RunConfig {
            out: dir.join("rm"),
            batch_size: 4,
            ..RunConfig::default()
        },
    };
    let outcome = train_reward_model(&config, None, &mut Silent).unwrap();
    let (model, _) =
        RewardModel::load(outcome.model_dir.to_str().unwrap(), &Device::flex()).unwrap();
    let vocab = model.backbone.config.vocab_size as u32;
    let sequences: Vec<Vec<u32>> = sequences
        .iter()
        .map(|s| s.iter().map(|id| 3 + id % (vocab - 3)).collect())
        .collect();
    let ids = dir.join("ids.json");
    std::fs::write(&ids, serde_json::to_string(&sequences).unwrap()).unwrap();
    let pad = model.pad_token_id.unwrap();
    let ours = rewards(&model, &sequences, pad, PaddingSide::Right);
    let scored = python(
        py,
        &[
            "score",
            outcome.model_dir.to_str().unwrap(),
            ids.to_str().unwrap(),
        ],
    );
    let scored: serde_json::Value = serde_json::from_str(&scored).unwrap();
    assert_eq!(scored["class"], "Qwen3ForSequenceClassification");
    let theirs: Vec<f64> = serde_json::from_value(scored["rewards"].clone()).unwrap();
    let diff = max_diff(&ours, &theirs);
    println!("bpo rm train's model in transformers: max abs reward difference {diff:.1e}");
    assert!(diff < TOLERANCE, "trained model: {ours:?} vs {theirs:?}");
}
