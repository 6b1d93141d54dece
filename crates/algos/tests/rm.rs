//! A reward model learns a synthetic preference and serves as an annotator.

use std::path::Path;

use bpo_algos::annotate::{Annotator, AnnotatorConfig, RewardModelAnnotator};
use bpo_algos::config::{DataConfig, RunConfig};
use bpo_algos::rm::{RewardInput, RewardModel, RewardModelConfig, train_reward_model};
use bpo_algos::{AlgoError, OnlineConfig, ReferenceMode, Silent, train_online};
use bpo_data::{
    Content, PreferencePair, PromptRecord, ReadOptions, Truncation, read_all, tokenize_pair,
    write_all,
};
use bpo_model::burn::tensor::Device;
use bpo_model::host::to_f32_vec;
use bpo_model::spec::save_hf;
use bpo_model::weights::{HostTensor, hf_dir};
use bpo_model::{ChatMessage, ModelType, PaddingSide, TokenBatch};
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
        &tiny_model(ModelType::LLAMA, 11, &Device::flex()),
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
        input: Default::default(),
        label: None,
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
    scores_as_training_tokenised(&outcome.model_dir);
    written_as_transformers_writes_classifiers(&outcome.model_dir, &model);
    online_bpo_labels_with_it(&outcome.model_dir, &model);
    // A missing model directory is a clear error.
    let missing = AnnotatorConfig::RewardModel {
        path: dir.path().join("nothing"),
        input: Default::default(),
        label: None,
        device: "flex".into(),
        batch_size: 4,
    }
    .build();
    assert!(matches!(
        missing,
        Err(AlgoError::Model(_) | AlgoError::Io { .. })
    ));
}

/// The annotator scores a conversation through the chat template and a response past the
/// model's positions (truncated, no panic) exactly as the rewards of the token ids that
/// training would have built (`tokenize_pair`, then `data.max_length` = the positions).
fn scores_as_training_tokenised(model_dir: &Path) {
    let spec = model_dir.to_str().unwrap();
    let (model, tokenizer) = RewardModel::load(spec, &Device::flex()).unwrap();
    let chat = Content::Chat(vec![
        ChatMessage::new("system", "Be kind."),
        ChatMessage::new("user", "note 7:"),
    ]);
    let long = " green tree".repeat(200);
    let cases = [(chat.clone(), " green tree sleep"), (chat, long.as_str())];
    let mut annotator = RewardModelAnnotator::load(spec, "flex", 2, RewardInput::Auto).unwrap();
    // bpo rm train records that it read text pairs as text.
    assert_eq!(annotator.input(), RewardInput::Plain);
    let items: Vec<(&Content, &str)> = cases.iter().map(|(p, r)| (p, *r)).collect();
    let scores = annotator.score_prompts(&items).unwrap();
    let fit = Truncation {
        max_length: Some(model.backbone.config.max_position_embeddings),
        ..Truncation::default()
    };
    for ((prompt, response), score) in cases.iter().zip(&scores) {
        let turn = Content::Chat(vec![ChatMessage::new("assistant", *response)]);
        let pair = PreferencePair {
            prompt: prompt.clone(),
            chosen: turn.clone(),
            rejected: turn,
            meta: Default::default(),
        };
        let tokens = tokenize_pair(&pair, &tokenizer, &fit).unwrap();
        let ids = [tokens.prompt, tokens.chosen].concat();
        assert!(ids.len() <= model.backbone.config.max_position_embeddings);
        let batch = TokenBatch::padded(&[ids], tokenizer.pad_id(), PaddingSide::Right);
        let expected = to_f32_vec(model.forward(&batch))[0] as f64;
        // Alone or in a padded batch: equal up to the order of f32 sums.
        assert!(
            (score - expected).abs() <= 1e-5 * expected.abs().max(1.0),
            "{response:.20}"
        );
    }
    // The plain-text interface is the text prompt's case of the same.
    let text = annotator
        .score(&[("note 7:", " green tree sleep")])
        .unwrap();
    let same = annotator
        .score_prompts(&[(&Content::text("note 7:"), " green tree sleep")])
        .unwrap();
    assert_eq!(text, same);
    assert_ne!(text[0], scores[0], "the chat template made no difference");
}

#[test]
fn reward_model_training_resumes_bit_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("body");
    save_hf(
        &model,
        &tiny_model(ModelType::LLAMA, 12, &Device::flex()),
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
    let weights = std::fs::read(full.model_dir.join("model.safetensors")).unwrap();
    let steps = full.last["step"] as usize;
    assert_eq!(steps, 6);
    // Pretend the run was killed after step 2.
    for step in 3..=steps {
        std::fs::remove_dir_all(out.join(format!("checkpoints/step-{step:06}"))).unwrap();
    }
    std::fs::remove_dir_all(&full.model_dir).unwrap();
    let resumed = train_reward_model(&config, Some(&out), &mut Silent).unwrap();
    assert_eq!(resumed.last["step"], steps as f64);
    assert!(std::fs::read(resumed.model_dir.join("model.safetensors")).unwrap() == weights);

    // Resuming on a shortened pair file is refused, naming the file (it used to slice past the
    // end of the new, shorter plan and panic).
    pairs(&config.data.train, 8, 0);
    let err = train_reward_model(
        &config,
        Some(&out.join("checkpoints/step-000004")),
        &mut Silent,
    )
    .err()
    .expect("resuming on other data must fail")
    .to_string();
    assert!(
        err.contains("data.train") && err.contains("train.jsonl") && err.contains("changed"),
        "{err}"
    );
}

/// The trained model's directory is a transformers sequence classifier with one label; chat
/// input wraps a text prompt as a user turn; what is not a one-label classifier is refused
/// with a message that says why.
fn written_as_transformers_writes_classifiers(model_dir: &Path, body: &Path) {
    let text = std::fs::read_to_string(model_dir.join("config.json")).unwrap();
    let config: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(config["architectures"][0], "LlamaForSequenceClassification");
    assert_eq!(config["id2label"].as_object().unwrap().len(), 1);
    assert_eq!(config["pad_token_id"], tokenizer().pad_id());
    let spec = model_dir.to_str().unwrap();
    let mut chat = RewardModelAnnotator::load(spec, "flex", 2, RewardInput::Chat).unwrap();
    let as_text = chat.score(&[("note 7:", " green tree sleep")]).unwrap();
    let turn = Content::Chat(vec![ChatMessage::new("user", "note 7:")]);
    let as_turn = chat.score_prompts(&[(&turn, " green tree sleep")]).unwrap();
    assert_eq!(as_text, as_turn);

    let refused = |dir: &Path| {
        RewardModel::load(dir.to_str().unwrap(), &Device::flex())
            .map(|_| ())
            .expect_err("refused")
            .to_string()
    };
    let err = refused(body);
    assert!(err.contains("ForSequenceClassification"), "{err}");
    let copy = model_dir.with_file_name("two-labels");
    std::fs::create_dir_all(&copy).unwrap();
    for entry in std::fs::read_dir(model_dir).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), copy.join(entry.file_name())).unwrap();
    }
    let mut two = config.clone();
    two["num_labels"] = 2.into();
    std::fs::write(copy.join("config.json"), two.to_string()).unwrap();
    let err = refused(&copy);
    assert!(err.contains("2 labels") && err.contains("`label`"), "{err}");
    // A real two-label model: the trained score as label 1 ("helpfulness"), zeros as label 0.
    let mut tensors = hf_dir::read_tensors(model_dir).unwrap();
    let score = tensors.tensors.remove("score.weight").unwrap();
    let hidden = score.data.len();
    let rows = [vec![0.0; hidden], score.data].concat();
    tensors.insert("score.weight", HostTensor::new(vec![2, hidden], rows));
    bpo_model::weights::safetensors::write(&copy.join("model.safetensors"), &tensors).unwrap();
    two["id2label"] = serde_json::json!({"0": "style", "1": "helpfulness"});
    std::fs::write(copy.join("config.json"), two.to_string()).unwrap();
    let batch = TokenBatch::padded(&[vec![5, 6, 7], vec![9, 8]], 0, PaddingSide::Right);
    let rewards = |dir: &Path, label| {
        let (model, _) =
            RewardModel::load_label(dir.to_str().unwrap(), &Device::flex(), label).unwrap();
        to_f32_vec(model.forward(&batch))
    };
    let original = rewards(model_dir, None);
    assert_eq!(rewards(&copy, Some("helpfulness")), original);
    assert_eq!(rewards(&copy, Some("1")), original);
    assert_eq!(rewards(&copy, Some("style")), vec![0.0, 0.0]);
    let err = RewardModel::load_label(copy.to_str().unwrap(), &Device::flex(), Some("tone"))
        .map(|_| ())
        .expect_err("no such label")
        .to_string();
    assert!(err.contains("`tone`") && err.contains("style"), "{err}");
    let mut older = config;
    older["architectures"] = serde_json::json!(["LlamaForCausalLM"]);
    std::fs::write(copy.join("config.json"), older.to_string()).unwrap();
    std::fs::write(copy.join("head.json"), "{}").unwrap();
    let err = refused(&copy);
    assert!(
        err.contains("older bpo") && err.contains("bpo rm train"),
        "{err}"
    );
}

/// An online BPO run on the tiny body whose annotator is the trained reward model, reloaded
/// from its sequence-classification directory: every pair's scores are the model's rewards.
fn online_bpo_labels_with_it(model_dir: &Path, body: &Path) {
    let dir = model_dir.parent().unwrap().join("online");
    let prompts = dir.with_extension("jsonl");
    let records: Vec<PromptRecord> = (0..16)
        .map(|i| PromptRecord {
            prompt: Content::text(format!("note {i}:")),
            reference: None,
            meta: Default::default(),
        })
        .collect();
    write_all(&prompts, &records).unwrap();
    let annotator = AnnotatorConfig::RewardModel {
        path: model_dir.to_path_buf(),
        input: RewardInput::Auto,
        label: None,
        device: "flex".into(),
        batch_size: 4,
    };
    let mut config = OnlineConfig {
        model: body.to_str().unwrap().into(),
        device: "flex".into(),
        prompts: prompts.to_str().unwrap().into(),
        annotator: annotator.clone(),
        budget: 16,
        phases: 2,
        ..OnlineConfig::default()
    };
    config.reference.mode = ReferenceMode::Behavior;
    config.sampling.max_new_tokens = 6;
    config.run.out = dir.clone();
    config.run.batch_size = 4;
    train_online(&config, None, &mut Silent).unwrap();
    let mut judge = annotator.build().unwrap();
    let mut checked = 0;
    for phase in ["phase-01", "phase-02"] {
        let path = dir.join(format!("pairs/{phase}.jsonl"));
        let pairs = read_all::<PreferencePair>(&path, ReadOptions::default()).unwrap();
        for pair in &pairs.records {
            let (chosen, rejected) = (
                pair.chosen.render_response(),
                pair.rejected.render_response(),
            );
            let scores = judge
                .score_prompts(&[(&pair.prompt, &chosen), (&pair.prompt, &rejected)])
                .unwrap();
            let recorded = [
                pair.meta.chosen_score.unwrap(),
                pair.meta.rejected_score.unwrap(),
            ];
            for (score, recorded) in scores.iter().zip(recorded) {
                assert!((score - recorded).abs() <= 1e-5 * score.abs().max(1.0));
            }
            assert!(scores[0] > scores[1]);
            checked += 1;
        }
    }
    assert!(checked > 0, "no pairs");
}
