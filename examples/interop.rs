//! Writes what the Python tools must load back (CI checks them with
//! `scripts/check_interop.py`): a tiny Llama with an untied output head (`base/`), a LoRA
//! `bpo train` run on it, the head adapted too (`train/model/`, merged, Hugging Face layout;
//! `train/adapter/`, PEFT layout, `lm_head` among its modules), the merged
//! model's logits on a few token sequences (`logits.json`), and the pairs of a tiny online run
//! (`online/pairs/phase-01.jsonl`, TRL's prompt/chosen/rejected columns plus `meta`).
//!
//!   cargo run --example interop -- OUT_DIR

use std::path::PathBuf;

use bpo::algos::annotate::AnnotatorConfig;
use bpo::algos::config::{DataConfig, LoraConfig, ReferenceConfig, RunConfig};
use bpo::algos::{OnlineConfig, Silent, TrainConfig, train_dap, train_online};
use bpo::data::{Content, PreferencePair, PromptRecord, write_all};
use bpo::model::burn::tensor::Device;
use bpo::model::host::to_f32_vec;
use bpo::model::spec::save_hf;
use bpo::model::{ModelType, PaddingSide, TokenBatch, Transformer, load};
use bpo_testkit::{tiny_config, tokenizer};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(std::env::args().nth(1).ok_or("usage: interop OUT_DIR")?);
    std::fs::create_dir_all(&out)?;
    let base = out.join("base");
    let mut config = tiny_config(ModelType::LLAMA);
    config.tie_word_embeddings = false;
    save_hf(
        &base,
        &Transformer::init_with_std(&config, 0.2, 5, &Device::flex()),
        &tokenizer(),
    )?;
    let base_spec = base.display().to_string();

    // A LoRA DPO run on a few pairs.
    let pairs: Vec<PreferencePair> = (0..8)
        .map(|i| PreferencePair {
            prompt: Content::text(format!("Review {i}: the film was")),
            chosen: Content::text(" good and kind."),
            rejected: Content::text(" bad and dull."),
            meta: Default::default(),
        })
        .collect();
    let pair_file = out.join("pairs.jsonl");
    write_all(&pair_file, &pairs)?;
    let mut train = TrainConfig {
        model: base_spec.clone(),
        device: "flex".into(),
        dtype: Default::default(),
        lora: Some(LoraConfig {
            rank: 4,
            targets: ["q", "k", "v", "o", "gate", "up", "down", "lm_head"]
                .map(String::from)
                .to_vec(),
            ..LoraConfig::default()
        }),
        data: DataConfig {
            train: pair_file,
            dev: None,
            max_prompt_tokens: None,
            max_response_tokens: None,
            max_length: None,
            skip_invalid: false,
        },
        loss: Default::default(),
        reference: ReferenceConfig::default(),
        optim: Default::default(),
        run: RunConfig {
            out: out.join("train"),
            batch_size: 4,
            epochs: 2,
            ..RunConfig::default()
        },
    };
    train.optim.lr = 1e-2;
    let trained = train_dap(&train, None, &mut Silent)?;

    // The merged model's logits, for transformers to reproduce.
    let (merged, tok) = load(&trained.model_dir.display().to_string(), &Device::flex())?;
    let texts = ["Review 9: the film was good", "a b c", "The end."];
    let mut cases = Vec::new();
    for text in texts {
        let ids = tok.encode(text, false)?;
        let batch = TokenBatch::padded(std::slice::from_ref(&ids), 0, PaddingSide::Right);
        let values = to_f32_vec(merged.forward(&batch));
        let vocab = merged.config.vocab_size;
        let logits: Vec<&[f32]> = values.chunks(vocab).collect();
        cases.push(serde_json::json!({"text": text, "ids": ids, "logits": logits}));
    }
    let logits = out.join("logits.json");
    std::fs::write(&logits, serde_json::json!({ "cases": cases }).to_string())?;

    // A tiny online run: its pair file is what TRL must accept.
    let prompts: Vec<PromptRecord> = (0..8)
        .map(|i| PromptRecord {
            prompt: Content::text(format!("Note {i}:")),
            reference: None,
            meta: Default::default(),
        })
        .collect();
    let prompt_file = out.join("prompts.jsonl");
    write_all(&prompt_file, &prompts)?;
    let mut online = OnlineConfig {
        model: base_spec,
        device: "flex".into(),
        prompts: prompt_file.display().to_string(),
        annotator: AnnotatorConfig::Count {
            pattern: "e".into(),
        },
        budget: 8,
        phases: 1,
        ..OnlineConfig::default()
    };
    online.sampling.max_new_tokens = 8;
    online.sampling.samples_per_prompt = 4;
    online.run.out = out.join("online");
    online.run.save_model = false;
    train_online(&online, None, &mut Silent)?;

    println!(
        "base {}\nmerged {}\nadapter {}\nlogits {}\npairs {}",
        base.display(),
        trained.model_dir.display(),
        trained.out.join("adapter").display(),
        logits.display(),
        out.join("online/pairs/phase-01.jsonl").display()
    );
    Ok(())
}
