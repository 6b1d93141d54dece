//! The trainer on a tiny model: every loss learns, references agree, resume is exact, the
//! non-finite guard fires, LoRA adapters export, SFT learns.

use std::path::{Path, PathBuf};

use bpo_algos::config::{
    DataConfig, LoraConfig, OptimConfig, ReferenceConfig, RunConfig, SftConfig,
};
use bpo_algos::logps::pair_logps;
use bpo_algos::reference::compute_reference;
use bpo_algos::{
    AlgoError, LossConfig, LossKind, ReferenceMode, Silent, TrainConfig, dap_loss, train_dap,
    train_sft,
};
use bpo_data::{
    Content, PairBatch, PreferencePair, ReadOptions, Truncation, read_all, tokenize_pairs,
    write_all,
};
use bpo_model::burn::tensor::Device;
use bpo_model::host::to_f32_vec;
use bpo_model::spec::save_hf;
use bpo_model::{ModelType, Transformer, load};
use bpo_testkit::{probe_logits, tiny_model, tiny_model_dir, tokenizer};

/// Pairs where the chosen continuation says something good and the rejected one something bad.
fn pair_file(dir: &Path) -> PathBuf {
    let subjects = [
        "the food",
        "the film",
        "our trip",
        "the weather",
        "this book",
        "the game",
        "my day",
        "the song",
    ];
    let pairs: Vec<PreferencePair> = subjects
        .iter()
        .map(|s| PreferencePair {
            prompt: Content::text(format!("I think {s} was")),
            chosen: Content::text(" good and fine, good indeed"),
            rejected: Content::text(" awful, sad and dull"),
            meta: Default::default(),
        })
        .collect();
    let path = dir.join("pairs.jsonl");
    write_all(&path, &pairs).unwrap();
    path
}

fn config(model: &str, pairs: &Path, out: &Path, kind: LossKind) -> TrainConfig {
    TrainConfig {
        model: model.to_owned(),
        device: "flex".into(),
        dtype: Default::default(),
        lora: None,
        data: DataConfig {
            train: pairs.to_path_buf(),
            dev: Some(pairs.to_path_buf()),
            max_prompt_tokens: None,
            max_response_tokens: None,
            max_length: None,
            skip_invalid: false,
        },
        loss: LossConfig {
            kind,
            beta: 0.5,
            ..LossConfig::default()
        },
        reference: ReferenceConfig {
            cache_dir: Some(out.join("cache")),
            ..ReferenceConfig::default()
        },
        optim: OptimConfig {
            lr: 2e-3,
            schedule: bpo_algos::config::ScheduleKind::Constant,
            ..OptimConfig::default()
        },
        run: RunConfig {
            out: out.to_path_buf(),
            batch_size: 4,
            epochs: 12,
            eval_every: 4,
            ..RunConfig::default()
        },
    }
}

#[test]
fn every_loss_raises_margin_and_accuracy() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model_dir(dir.path(), 1);
    let pairs = pair_file(dir.path());
    for kind in [
        LossKind::Dpo,
        LossKind::Ipo,
        LossKind::Slic,
        LossKind::Robust,
    ] {
        let mut c = config(&model, &pairs, &dir.path().join(kind.name()), kind);
        if kind == LossKind::Robust {
            c.loss.label_smoothing = 0.1;
        }
        let outcome = train_dap(&c, None, &mut Silent).unwrap();
        assert_eq!(outcome.steps, 24);
        let metrics = std::fs::read_to_string(c.run.out.join("metrics.jsonl")).unwrap();
        let records: Vec<serde_json::Value> = metrics
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(records.len(), 24);
        let first = &records[0];
        let last = records.last().unwrap();
        let margin = |r: &serde_json::Value| r["dev/rewards/margins"].as_f64();
        let first_margin = records.iter().find_map(margin).unwrap();
        assert!(
            first["rewards/margins"].as_f64().unwrap().abs() < 1e-4,
            "step 1 starts at the reference"
        );
        // Step 1 is measured at the reference (margin 0); IPO aims at a margin of
        // beta / (2 beta) = 0.5 on averaged log-probs, the others grow without bound.
        let final_margin = margin(last).unwrap();
        assert!(
            final_margin > first_margin && final_margin > 0.25,
            "{kind:?}: {first_margin} -> {final_margin}"
        );
        assert_eq!(
            last["dev/rewards/accuracies"].as_f64().unwrap(),
            1.0,
            "{kind:?}"
        );
        for key in [
            "loss",
            "grad_norm",
            "lr",
            "tokens_per_s",
            "logps/chosen",
            "rewards/chosen",
        ] {
            assert!(last[key].is_number(), "{key} missing");
        }
        assert!(c.run.out.join("model/model.safetensors").exists());
        assert!(
            c.run.out.join("loss.png").exists() && c.run.out.join("reward_accuracy.png").exists()
        );
    }
}

#[test]
fn precomputed_and_on_the_fly_reference_give_the_same_loss() {
    let device = Device::flex();
    let model = tiny_model(ModelType::LLAMA, 2, &device);
    let tok = tokenizer();
    let dir = tempfile::tempdir().unwrap();
    let read = read_all::<PreferencePair>(&pair_file(dir.path()), ReadOptions::default()).unwrap();
    let (mut pairs, _) = tokenize_pairs(&read.records, &tok, &Truncation::default()).unwrap();
    pairs[3].chosen.truncate(3); // lengths differ, so batches pad differently
    let precomputed = compute_reference(&model, &pairs, 5, tok.pad_id(), |_| {}).unwrap();
    let policy = tiny_model(ModelType::LLAMA, 3, &device);
    let indices = [1usize, 3, 6];
    let chunk: Vec<_> = indices.iter().map(|&i| pairs[i].clone()).collect();
    let batch = PairBatch::new(&chunk, tok.pad_id()).unwrap();
    let on_the_fly = pair_logps(&model, &batch);
    let cfg = LossConfig::default();
    let (a, _) = dap_loss(
        &cfg,
        &pair_logps(&policy, &batch),
        Some(&precomputed.select(&indices, &device)),
    );
    let (b, _) = dap_loss(&cfg, &pair_logps(&policy, &batch), Some(&on_the_fly));
    let (a, b) = (to_f32_vec(a)[0], to_f32_vec(b)[0]);
    assert!((a - b).abs() < 1e-5, "{a} vs {b}");
}

#[test]
fn resume_ends_with_exactly_the_weights_of_an_uninterrupted_run() {
    for lora in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let model = tiny_model_dir(dir.path(), 4);
        let pairs = pair_file(dir.path());
        let out = dir.path().join("run");
        let mut c = config(&model, &pairs, &out, LossKind::Dpo);
        c.run.epochs = 3;
        c.run.save_every = 2;
        c.run.keep_checkpoints = 10;
        c.run.grad_accum = 2;
        c.run.batch_size = 2;
        c.optim.schedule = bpo_algos::config::ScheduleKind::Linear;
        c.optim.warmup_steps = 1;
        c.reference.mode = ReferenceMode::Ema;
        if lora {
            c.lora = Some(LoraConfig {
                rank: 4,
                ..LoraConfig::default()
            });
            c.optim.lr = 1e-2;
        }
        let full = train_dap(&c, None, &mut Silent).unwrap();
        assert_eq!(full.steps, 6);
        let uninterrupted = probe_logits(&full.model);
        let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
        // Pretend the run died after step 2.
        for step in [4, 6] {
            std::fs::remove_dir_all(out.join(format!("checkpoints/step-{step:06}"))).unwrap();
        }
        std::fs::remove_dir_all(out.join("model")).unwrap();
        let resumed = train_dap(&c, Some(&out), &mut Silent).unwrap();
        assert_eq!(probe_logits(&resumed.model), uninterrupted, "lora = {lora}");
        let again = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
        let strip = |s: &str| -> Vec<serde_json::Value> {
            s.lines()
                .map(|l| {
                    let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                    v.as_object_mut().unwrap().remove("tokens_per_s");
                    v
                })
                .collect()
        };
        assert_eq!(strip(&again), strip(&metrics), "metrics replay identically");
        let mut other = c.clone();
        other.loss.beta = 0.3;
        let err = train_dap(&other, Some(&out), &mut Silent)
            .unwrap_err()
            .to_string();
        assert!(err.contains("configuration differs"), "{err}");
    }
}

#[test]
fn non_finite_values_stop_the_run_and_keep_the_last_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model_dir(dir.path(), 5);
    let pairs = pair_file(dir.path());
    let out = dir.path().join("run");
    let mut c = config(&model, &pairs, &out, LossKind::Dpo);
    c.optim.lr = 1e30;
    c.optim.max_grad_norm = 0.0;
    c.run.save_every = 1;
    c.run.eval_every = 0;
    let err = train_dap(&c, None, &mut Silent).unwrap_err();
    let AlgoError::NonFinite { step, .. } = err else {
        panic!("expected a non-finite error, got {err}");
    };
    assert!(step >= 2, "step {step}");
    let last_good = out.join(format!("checkpoints/step-{:06}", step - 1));
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(last_good.join("state.json")).unwrap())
            .unwrap();
    assert_eq!(state["step"], step - 1);

    // A NaN weight from the start: nothing is written.
    let device = Device::flex();
    let (m, tok) = load(&model, &device).unwrap();
    let mut map = m.to_tensor_map();
    map.tensors.get_mut("model.norm.weight").unwrap().data[0] = f32::NAN;
    let poisoned = Transformer::from_tensor_map(&m.config, map, &device).unwrap();
    let poisoned_dir = dir.path().join("poisoned");
    save_hf(&poisoned_dir, &poisoned, &tok).unwrap();
    let mut c = config(
        poisoned_dir.to_str().unwrap(),
        &pairs,
        &dir.path().join("run2"),
        LossKind::Dpo,
    );
    c.reference.mode = ReferenceMode::None;
    let err = train_dap(&c, None, &mut Silent).unwrap_err().to_string();
    assert!(err.contains("step 1: non-finite loss"), "{err}");
    assert!(!dir.path().join("run2/checkpoints").exists());
}

#[test]
fn lora_trains_adapters_only_and_exports_peft_and_merged_models() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model_dir(dir.path(), 6);
    let pairs = pair_file(dir.path());
    let out = dir.path().join("lora");
    let mut c = config(&model, &pairs, &out, LossKind::Dpo);
    c.lora = Some(LoraConfig {
        rank: 4,
        alpha: 8.0,
        targets: vec!["q".into(), "v".into()],
        ..LoraConfig::default()
    });
    c.optim.lr = 1e-2;
    c.run.epochs = 4;
    let outcome = train_dap(&c, None, &mut Silent).unwrap();
    let adapter = std::fs::read_to_string(out.join("adapter/adapter_config.json")).unwrap();
    assert!(
        adapter.contains("\"r\": 4") && adapter.contains("q_proj") && adapter.contains("v_proj")
    );
    let bytes = std::fs::read(out.join("adapter/adapter_model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(
        st.names().len(),
        2 * 2 * 2,
        "q and v in 2 layers, A and B each"
    );
    let a = st
        .tensor("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight")
        .unwrap();
    assert_eq!(a.shape(), &[4, 64]);
    // Only q and v changed; the merged export reloads to the trained model.
    let device = Device::flex();
    let (base, _) = load(&model, &device).unwrap();
    let (trained, _) = load(out.join("model").to_str().unwrap(), &device).unwrap();
    let (b, t) = (
        base.to_tensor_map().tensors,
        trained.to_tensor_map().tensors,
    );
    for (name, tensor) in &b {
        let changed = t[name] != *tensor;
        let adapted = name.contains("q_proj") || name.contains("v_proj");
        assert_eq!(changed, adapted, "{name}");
    }
    assert_eq!(probe_logits(&trained), probe_logits(&outcome.model));
}

#[test]
fn sft_lowers_the_loss_on_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model_dir(dir.path(), 7);
    let prompts = dir.path().join("prompts.jsonl");
    let records: Vec<bpo_data::PromptRecord> = (0..8)
        .map(|i| bpo_data::PromptRecord {
            prompt: Content::text(format!("item {i}:")),
            reference: Some(Content::text(" the good one")),
            meta: Default::default(),
        })
        .collect();
    write_all(&prompts, &records).unwrap();
    let c = SftConfig {
        model,
        device: "flex".into(),
        dtype: Default::default(),
        lora: None,
        data: DataConfig {
            train: prompts.clone(),
            dev: Some(prompts),
            max_prompt_tokens: None,
            max_response_tokens: None,
            max_length: None,
            skip_invalid: false,
        },
        optim: OptimConfig {
            lr: 3e-3,
            ..OptimConfig::default()
        },
        run: RunConfig {
            out: dir.path().join("sft"),
            batch_size: 4,
            epochs: 10,
            eval_every: 1,
            ..RunConfig::default()
        },
    };
    let outcome = train_sft(&c, None, &mut Silent).unwrap();
    let metrics = std::fs::read_to_string(dir.path().join("sft/metrics.jsonl")).unwrap();
    let first: serde_json::Value = serde_json::from_str(metrics.lines().next().unwrap()).unwrap();
    let first_dev = first["dev/loss"].as_f64().unwrap();
    let last_dev = outcome.last["dev/loss"];
    assert!(last_dev < first_dev * 0.5, "{first_dev} -> {last_dev}");
}
