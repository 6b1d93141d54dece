//! What a run checks before it does any work, and what it refuses when resumed: LoRA targets
//! (every matched weight must have a PEFT name; `lm_head` has one), and the data files of a
//! resumed run (a changed pair file is refused by name instead of a panic past the end of
//! the new plan).

use std::path::{Path, PathBuf};

use bpo_algos::config::{DataConfig, LoraConfig, ReferenceConfig, RunConfig};
use bpo_algos::lora::{adapters, load_adapters};
use bpo_algos::{LossConfig, Observer, Silent, TrainConfig, train_dap};
use bpo_data::{Content, PreferencePair, write_all};
use bpo_model::burn::tensor::Device;
use bpo_model::spec::save_hf;
use bpo_model::{ModelType, load};
use bpo_testkit::{probe_logits, tiny_model, tiny_model_dir, tokenizer};

fn pair_file(path: &Path, n: usize) -> PathBuf {
    let pairs: Vec<PreferencePair> = (0..n)
        .map(|i| PreferencePair {
            prompt: Content::text(format!("Note {i}: the day was")),
            chosen: Content::text(" good and fine"),
            rejected: Content::text(" sad and dull"),
            meta: Default::default(),
        })
        .collect();
    write_all(path, &pairs).unwrap();
    path.to_path_buf()
}

fn config(model: &str, pairs: &Path, out: &Path, targets: &[&str]) -> TrainConfig {
    TrainConfig {
        model: model.to_owned(),
        device: "flex".into(),
        dtype: Default::default(),
        lora: Some(LoraConfig {
            rank: 4,
            targets: targets.iter().map(|t| t.to_string()).collect(),
            ..LoraConfig::default()
        }),
        data: DataConfig {
            train: pairs.to_path_buf(),
            dev: None,
            max_prompt_tokens: None,
            max_response_tokens: None,
            max_length: None,
            skip_invalid: false,
        },
        loss: LossConfig::default(),
        reference: ReferenceConfig {
            cache_dir: Some(out.join("cache")),
            ..ReferenceConfig::default()
        },
        optim: Default::default(),
        run: RunConfig {
            out: out.to_path_buf(),
            batch_size: 2,
            ..RunConfig::default()
        },
    }
}

/// A tiny Qwen2 (untied output head) saved under `dir`.
fn untied_model(dir: &Path) -> String {
    let path = dir.join("qwen2");
    let model = tiny_model(ModelType::QWEN2, 3, &Device::flex());
    assert!(!model.config.tie_word_embeddings);
    save_hf(&path, &model, &tokenizer()).unwrap();
    path.display().to_string()
}

#[test]
fn lora_on_the_output_head_writes_peft_adapters_that_load_back() {
    let dir = tempfile::tempdir().unwrap();
    let model = untied_model(dir.path());
    let pairs = pair_file(&dir.path().join("pairs.jsonl"), 4);
    let out = dir.path().join("run");
    let mut c = config(&model, &pairs, &out, &["q", "lm_head"]);
    c.optim.lr = 1e-2;
    let trained = train_dap(&c, None, &mut Silent).unwrap();
    let adapter_dir = out.join("adapter");
    let peft: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(adapter_dir.join("adapter_config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        peft["target_modules"],
        serde_json::json!(["lm_head", "q_proj"])
    );
    let bytes = std::fs::read(adapter_dir.join("adapter_model.safetensors")).unwrap();
    let names: Vec<String> = safetensors::SafeTensors::deserialize(&bytes)
        .unwrap()
        .names()
        .into_iter()
        .map(str::to_owned)
        .collect();
    assert!(
        names.contains(&"base_model.model.lm_head.lora_A.weight".to_owned()),
        "{names:?}"
    );
    // The adapters load back onto a freshly adapted base and give the merged model's logits.
    let (base, _) = load(&model, &Device::flex()).unwrap();
    let adapted = bpo_algos::lora::apply_lora(base, c.lora.as_ref().unwrap(), 99).unwrap();
    let reloaded = load_adapters(adapted, c.lora.as_ref().unwrap(), &adapter_dir).unwrap();
    assert!(
        adapters(&reloaded)
            .iter()
            .any(|a| a.path == "lm_head.weight")
    );
    let merged = bpo_algos::lora::merged(&reloaded);
    let (a, b) = (probe_logits(&merged), probe_logits(&trained.model));
    assert!(bpo_testkit::max_abs_diff(&a, &b) < 1e-5);
}

#[test]
fn lora_targets_are_checked_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let untied = untied_model(dir.path());
    let tied = tiny_model_dir(dir.path(), 1);
    let pairs = pair_file(&dir.path().join("pairs.jsonl"), 4);
    for (model, targets, expected) in [
        (
            &untied,
            &["embed_tokens\\.weight"][..],
            "no PEFT LoRA layer",
        ),
        (
            &untied,
            &["^layers\\.9\\.attn\\.q\\.weight$"][..],
            "matched no weight",
        ),
        (&tied, &["lm_head"][..], "ties its output head"),
    ] {
        let out = dir.path().join("run");
        let c = config(model, &pairs, &out, targets);
        let err = train_dap(&c, None, &mut Silent).unwrap_err().to_string();
        assert!(err.contains(expected), "{targets:?}: {err}");
        assert!(err.contains("lora.targets"), "{err}");
        // Refused before the reference log-probs were computed and cached.
        assert!(
            !out.join("cache").exists(),
            "{targets:?}: work was done first"
        );
        assert!(!out.join("metrics.jsonl").exists());
    }
}

#[test]
fn resuming_on_a_changed_pair_file_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model_dir(dir.path(), 2);
    let pairs = pair_file(&dir.path().join("pairs.jsonl"), 8);
    let out = dir.path().join("run");
    let mut c = config(&model, &pairs, &out, &["q"]);
    c.run.save_every = 1;
    c.run.keep_checkpoints = 10;
    train_dap(&c, None, &mut Silent).unwrap();
    // A shorter file: the old code sliced its 2-step plan from step 4 and panicked.
    pair_file(&pairs, 4);
    let err = train_dap(&c, Some(&out), &mut Silent)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("data.train") && err.contains("pairs.jsonl") && err.contains("changed"),
        "{err}"
    );
    // The same content again resumes (here: nothing left to do but the final export).
    pair_file(&pairs, 8);
    let resumed = train_dap(&c, Some(&out), &mut Silent).unwrap();
    assert_eq!(resumed.steps, 4);
    // A checkpoint written before bpo recorded its data files still resumes; on a shorter
    // file the step count guards the plan.
    let state = out.join("checkpoints/step-000004/state.json");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    json.as_object_mut().unwrap().remove("data");
    std::fs::write(&state, json.to_string()).unwrap();
    train_dap(&c, Some(&out), &mut Silent).unwrap();
    pair_file(&pairs, 4);
    let err = train_dap(&c, Some(&out), &mut Silent)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("at step 4") && err.contains("plan 2 steps"),
        "{err}"
    );
}

/// Collects the observer's messages.
#[derive(Default)]
struct Messages(Vec<String>);

impl Observer for Messages {
    fn message(&mut self, text: &str) {
        self.0.push(text.to_owned());
    }
}

#[test]
fn a_target_that_selects_nothing_beside_others_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gpt2");
    save_hf(
        &path,
        &tiny_model(ModelType::GPT2, 4, &Device::flex()),
        &tokenizer(),
    )
    .unwrap();
    let pairs = pair_file(&dir.path().join("pairs.jsonl"), 2);
    // The default targets name `gate`, which GPT-2's MLP lacks.
    let mut c = config(
        &path.display().to_string(),
        &pairs,
        &dir.path().join("run"),
        &[],
    );
    c.lora = Some(LoraConfig {
        rank: 2,
        ..LoraConfig::default()
    });
    let mut messages = Messages::default();
    train_dap(&c, None, &mut messages).unwrap();
    let reported: Vec<&String> = messages
        .0
        .iter()
        .filter(|m| m.contains("lora.targets"))
        .collect();
    assert_eq!(reported.len(), 1, "{:?}", messages.0);
    assert!(
        reported[0].contains("`gate` selects no weight"),
        "{reported:?}"
    );
}
