//! A reward model learns a synthetic preference and serves as an annotator.

use std::path::Path;

use bpo_algos::annotate::AnnotatorConfig;
use bpo_algos::config::{DataConfig, RunConfig};
use bpo_algos::rm::{RewardModelConfig, train_reward_model};
use bpo_algos::{AlgoError, Silent};
use bpo_data::{Content, PreferencePair, write_all};
use bpo_model::ModelType;
use bpo_model::burn::tensor::Device;
use bpo_model::spec::save_hf;
use bpo_testkit::{tiny_model, tokenizer};

const LIKED: [&str; 6] = ["see", "tree", "green", "free", "three", "sleep"];
const DISLIKED: [&str; 6] = ["cat", "run", "dog", "big", "fun", "hat"];

/// Pairs whose chosen response uses the liked words and the rejected one the disliked words.
fn pairs(path: &Path, n: usize, salt: usize) {
    let pick = |words: &[&str; 6], i: usize| -> String {
        (0..3)
            .map(|k| words[(i * 5 + k * 3 + salt) % 6])
            .collect::<Vec<_>>()
            .join(" ")
    };
    let records: Vec<PreferencePair> = (0..n)
        .map(|i| PreferencePair {
            prompt: Content::text(format!("note {i}:")),
            chosen: Content::text(format!(" {}", pick(&LIKED, i + salt))),
            rejected: Content::text(format!(" {}", pick(&DISLIKED, i * 7 + salt))),
            meta: Default::default(),
        })
        .collect();
    write_all(path, &records).unwrap();
}

#[test]
fn a_reward_model_learns_a_preference_and_annotates() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("body");
    save_hf(
        &model,
        &tiny_model(ModelType::Llama, 11, &Device::flex()),
        &tokenizer(),
    )
    .unwrap();
    let (train, dev) = (dir.path().join("train.jsonl"), dir.path().join("dev.jsonl"));
    pairs(&train, 64, 0);
    pairs(&dev, 32, 1);
    let mut config = RewardModelConfig {
        model: model.display().to_string(),
        device: "flex".into(),
        dtype: Default::default(),
        data: DataConfig {
            train,
            dev: Some(dev),
            max_prompt_tokens: None,
            max_response_tokens: None,
            max_length: None,
            skip_invalid: false,
        },
        lora: None,
        optim: Default::default(),
        run: RunConfig {
            out: dir.path().join("rm"),
            batch_size: 8,
            epochs: 3,
            seed: 0,
            ..RunConfig::default()
        },
    };
    config.optim.lr = 1e-3;
    let outcome = train_reward_model(&config, None, &mut Silent).unwrap();
    let accuracy = outcome.last["dev/accuracy"];
    assert!(accuracy >= 0.9, "dev accuracy {accuracy}");
    let mut annotator = AnnotatorConfig::RewardModel {
        path: outcome.model_dir.clone(),
        device: "flex".into(),
        batch_size: 4,
    }
    .build()
    .unwrap();
    let scores = annotator
        .score(&[
            ("note 99:", " green tree sleep"),
            ("note 99:", " big dog hat"),
        ])
        .unwrap();
    assert!(scores[0] > scores[1], "{scores:?}");
    assert!(annotator.name().contains("reward model"));
    // A missing model directory is a clear error.
    let missing = AnnotatorConfig::RewardModel {
        path: dir.path().join("nothing"),
        device: "flex".into(),
        batch_size: 4,
    }
    .build();
    assert!(matches!(
        missing,
        Err(AlgoError::Model(_) | AlgoError::Io { .. })
    ));
}

#[test]
fn reward_model_training_resumes_bit_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("body");
    save_hf(
        &model,
        &tiny_model(ModelType::Llama, 12, &Device::flex()),
        &tokenizer(),
    )
    .unwrap();
    let train = dir.path().join("train.jsonl");
    pairs(&train, 24, 0);
    let out = dir.path().join("rm");
    let config = RewardModelConfig {
        model: model.display().to_string(),
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
            out: out.clone(),
            batch_size: 4,
            grad_accum: 2,
            epochs: 2,
            save_every: 1,
            keep_checkpoints: 100,
            ..RunConfig::default()
        },
    };
    let full = train_reward_model(&config, None, &mut Silent).unwrap();
    let head = std::fs::read(full.model_dir.join("head.json")).unwrap();
    let body = std::fs::read(full.model_dir.join("model/model.safetensors")).unwrap();
    let steps = full.last["step"] as usize;
    assert_eq!(steps, 6);
    // Pretend the run was killed after step 2.
    for step in 3..=steps {
        std::fs::remove_dir_all(out.join(format!("checkpoints/step-{step:06}"))).unwrap();
    }
    std::fs::remove_dir_all(&full.model_dir).unwrap();
    let resumed = train_reward_model(&config, Some(&out), &mut Silent).unwrap();
    assert_eq!(resumed.last["step"], steps as f64);
    assert!(std::fs::read(resumed.model_dir.join("head.json")).unwrap() == head);
    assert!(std::fs::read(resumed.model_dir.join("model/model.safetensors")).unwrap() == body);
}
