//! Online DAP and BPO on a tiny model: behavior log-probs, the ln 2 property of the behavior
//! reference, improvement against a toy annotator, ensemble merge maths, exact resume.

use std::path::{Path, PathBuf};

use bpo_algos::annotate::{AnnotatorConfig, Count};
use bpo_algos::config::{LoraConfig, ReferenceMode};
use bpo_algos::eval::{EvalSettings, evaluate};
use bpo_algos::online::{OnlineSampling, collect_pairs, tokenized_from_meta};
use bpo_algos::{AlgoError, LossKind, OnlineConfig, Silent, train_online};
use bpo_data::{Content, PromptRecord, Truncation, tokenize_prompt, write_all};
use bpo_model::burn::tensor::Device;
use bpo_model::{ModelType, Transformer, load, score};
use bpo_testkit::{bf16_products_run, probe_logits, tiny_model, tiny_model_dir, tokenizer};

fn prompt_file(dir: &Path, n: usize) -> PathBuf {
    let words = ["the cat", "a dog", "we went", "she said", "in the end"];
    let records: Vec<PromptRecord> = (0..n)
        .map(|i| PromptRecord {
            prompt: Content::text(format!("{} {i}", words[i % words.len()])),
            reference: Some(Content::text("the end")),
            meta: Default::default(),
        })
        .collect();
    let path = dir.join("prompts.jsonl");
    write_all(&path, &records).unwrap();
    path
}

fn config(model: &str, prompts: &Path, out: &Path) -> OnlineConfig {
    let mut c = OnlineConfig {
        model: model.into(),
        device: "flex".into(),
        prompts: prompts.to_str().unwrap().into(),
        annotator: AnnotatorConfig::Count {
            pattern: "e".into(),
        },
        budget: 16,
        phases: 2,
        ..OnlineConfig::default()
    };
    c.sampling = OnlineSampling {
        max_new_tokens: 8,
        batch_size: 8,
        ..OnlineSampling::default()
    };
    c.loss.kind = LossKind::Dpo;
    c.optim.lr = 1e-3;
    c.run.out = out.to_path_buf();
    c.run.batch_size = 4;
    c
}

fn metrics(out: &Path, file: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(out.join(file))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn behavior_logprobs_recorded_while_sampling_equal_a_fresh_scoring_pass() {
    let device = Device::flex();
    let model = tiny_model(ModelType::LLAMA, 3, &device);
    let tok = tokenizer();
    let records: Vec<PromptRecord> = ["the cat sat", "a", "we went to the sea and"]
        .iter()
        .map(|t| PromptRecord {
            prompt: Content::text(*t),
            reference: None,
            meta: Default::default(),
        })
        .collect();
    let prompts: Vec<_> = records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            (
                i,
                r,
                tokenize_prompt(r, &tok, &Truncation::default()).unwrap().0,
            )
        })
        .collect();
    let sampling = OnlineSampling {
        samples_per_prompt: 3,
        max_new_tokens: 12,
        batch_size: 2,
        ..OnlineSampling::default()
    };
    let mut annotator = Count::new("e").unwrap();
    let (pairs, stats) = collect_pairs(
        &model,
        &tok,
        &prompts,
        &sampling,
        &mut annotator,
        None,
        0,
        9,
    )
    .unwrap();
    assert_eq!(stats.samples, 9);
    assert_eq!(
        pairs.len() + stats.dropped_identical + stats.dropped_ties,
        3
    );
    assert!(!pairs.is_empty());
    for pair in &pairs {
        let t = tokenized_from_meta(pair).unwrap();
        assert!(pair.meta.chosen_score.unwrap() > pair.meta.rejected_score.unwrap());
        let fresh = score(
            &model,
            &[
                (t.prompt.clone(), t.chosen.clone()),
                (t.prompt.clone(), t.rejected.clone()),
            ],
            tok.pad_id(),
            2,
        )
        .unwrap();
        for (recorded, fresh) in [t.chosen_logps.unwrap(), t.rejected_logps.unwrap()]
            .iter()
            .zip(&fresh)
        {
            assert_eq!(recorded.len(), fresh.logprobs.len());
            for (a, b) in recorded.iter().zip(&fresh.logprobs) {
                assert!((a - b).abs() <= 1e-4, "{a} vs {b}");
            }
        }
    }
}

#[test]
fn behavior_reference_starts_every_phase_at_ln2_and_initial_does_not() {
    for mode in [ReferenceMode::Behavior, ReferenceMode::Initial] {
        let dir = tempfile::tempdir().unwrap();
        let model = tiny_model_dir(dir.path(), 5);
        let prompts = prompt_file(dir.path(), 48);
        let out = dir.path().join("run");
        let mut c = config(&model, &prompts, &out);
        c.reference.mode = mode;
        c.budget = 48; // enough comparisons that every phase keeps pairs
        let outcome = train_online(&c, None, &mut Silent).unwrap();
        assert_eq!(outcome.phases.len(), 2);
        let steps = metrics(&out, "metrics.jsonl");
        for phase in [1.0, 2.0] {
            let first = steps.iter().find(|r| r["phase"] == phase).unwrap();
            let loss = first["loss"].as_f64().unwrap();
            let at_ln2 = (loss - std::f64::consts::LN_2).abs() < 1e-4;
            match (mode, phase == 1.0) {
                (ReferenceMode::Behavior, _) | (_, true) => assert!(at_ln2, "{mode:?} {loss}"),
                _ => assert!(!at_ln2, "{mode:?} phase {phase}: {loss}"),
            }
        }
        // Every phase's pairs are on disk with their meta.
        for phase in 1..=2 {
            let text =
                std::fs::read_to_string(out.join(format!("pairs/phase-{phase:02}.jsonl"))).unwrap();
            let first: serde_json::Value =
                serde_json::from_str(text.lines().next().unwrap()).unwrap();
            assert_eq!(first["meta"]["behavior_version"], phase - 1);
            assert!(first["meta"]["chosen_logps"].is_array());
        }
        let phases = metrics(&out, "phases.jsonl");
        assert!(phases[1]["kl/behavior_initial"].as_f64().unwrap() != 0.0);
        assert!(phases[0]["kl/behavior_initial"].as_f64().unwrap().abs() < 1e-4);
    }
}

#[test]
fn bf16_products_start_at_ln2_and_measure_drift_in_f32() {
    if !bf16_products_run() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model_dir(dir.path(), 5);
    let prompts = prompt_file(dir.path(), 48);
    let out = dir.path().join("run");
    let mut c = config(&model, &prompts, &out);
    c.reference.mode = ReferenceMode::Initial;
    c.budget = 48;
    c.lora = Some(LoraConfig {
        rank: 4,
        ..LoraConfig::default()
    });
    c.run.bf16_products = true;
    train_online(&c, None, &mut Silent).unwrap();
    // The policy and the initial reference take the same products: the first loss is ln 2.
    let steps = metrics(&out, "metrics.jsonl");
    let loss = steps[0]["loss"].as_f64().unwrap();
    assert!((loss - std::f64::consts::LN_2).abs() < 1e-4, "{loss}");
    // The first phase samples from the initial model: no drift, measured in f32 as sampled.
    let phases = metrics(&out, "phases.jsonl");
    let kl = phases[0]["kl/behavior_initial"].as_f64().unwrap();
    assert!(kl.abs() < 1e-4, "{kl}");
}

/// Mean count of "e" in sampled responses of `model` to the prompts.
fn mean_gold(model: &Transformer, prompts: &[PromptRecord]) -> f64 {
    let tok = tokenizer();
    let ids: Vec<(usize, &PromptRecord, Vec<u32>)> = prompts
        .iter()
        .enumerate()
        .map(|(i, r)| {
            (
                i,
                r,
                tokenize_prompt(r, &tok, &Truncation::default()).unwrap().0,
            )
        })
        .collect();
    let sampling = OnlineSampling {
        max_new_tokens: 8,
        batch_size: 32,
        ..OnlineSampling::default()
    };
    let (_, stats) = collect_pairs(
        model,
        &tok,
        &ids,
        &sampling,
        &mut Count::new("e").unwrap(),
        None,
        0,
        1234,
    )
    .unwrap();
    stats.mean_score
}

#[test]
fn a_tiny_online_run_raises_the_gold_score() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model_dir(dir.path(), 6);
    let prompts = prompt_file(dir.path(), 160);
    let out = dir.path().join("run");
    let mut c = config(&model, &prompts, &out);
    c.budget = 96;
    c.optim.lr = 3e-3;
    c.run.kl_metrics = false;
    let outcome = train_online(&c, None, &mut Silent).unwrap();
    let held_out: Vec<PromptRecord> = bpo_algos::online::load_prompts(prompts.to_str().unwrap())
        .unwrap()
        .into_iter()
        .take(64)
        .collect();
    let (initial, _) = load(&model, &Device::flex()).unwrap();
    let before = mean_gold(&initial, &held_out);
    let after = mean_gold(&outcome.model, &held_out);
    assert!(after > before + 0.2, "gold score {before} -> {after}");
    let eval = evaluate(
        &outcome.model,
        Some(&initial),
        &tokenizer(),
        &held_out[..16],
        &mut Count::new("e").unwrap(),
        None,
        &EvalSettings {
            max_new_tokens: 8,
            ..EvalSettings::default()
        },
    )
    .unwrap();
    assert_eq!(eval.wins.len(), 16);
    assert!(eval.kl_initial.unwrap().is_finite());
}

#[test]
fn resume_mid_run_ends_like_an_uninterrupted_run() {
    for (lora, mode) in [(false, ReferenceMode::Ema), (true, ReferenceMode::Behavior)] {
        let dir = tempfile::tempdir().unwrap();
        let model = tiny_model_dir(dir.path(), 7);
        let prompts = prompt_file(dir.path(), 48);
        let out = dir.path().join("run");
        let mut c = config(&model, &prompts, &out);
        c.reference.mode = mode;
        c.budget = 48;
        c.sampling.samples_per_prompt = 4;
        c.run.save_every = 1;
        c.run.keep_checkpoints = 100;
        if lora {
            c.lora = Some(LoraConfig {
                rank: 2,
                ..LoraConfig::default()
            });
            c.ensemble.size = 2;
        }
        let full = train_online(&c, None, &mut Silent).unwrap();
        let expected = probe_logits(&full.model);
        let all_metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
        let steps = full.steps;
        assert!(steps >= 3, "{steps}");
        // Pretend the run died after step 1 (inside phase 1) of the run.
        for step in 2..=steps {
            let _ = std::fs::remove_dir_all(out.join(format!("checkpoints/step-{step:06}")));
        }
        std::fs::remove_dir_all(out.join("model")).unwrap();
        let resumed = train_online(&c, Some(&out), &mut Silent).unwrap();
        assert_eq!(probe_logits(&resumed.model), expected, "lora = {lora}");
        let strip = |s: &str| -> Vec<serde_json::Value> {
            s.lines()
                .map(|l| {
                    let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                    v.as_object_mut().unwrap().remove("tokens_per_s");
                    v
                })
                .collect()
        };
        let again = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
        assert_eq!(strip(&again), strip(&all_metrics));
        // A changed configuration is refused.
        let mut other = c.clone();
        other.optim.lr *= 2.0;
        assert!(matches!(
            train_online(&other, Some(&out), &mut Silent),
            Err(AlgoError::Checkpoint { .. })
        ));
        // So is a changed prompt file, by name.
        prompt_file(dir.path(), 52);
        let err = train_online(&c, Some(&out), &mut Silent)
            .err()
            .expect("resuming on other prompts must fail")
            .to_string();
        assert!(
            err.contains("prompts") && err.contains("prompts.jsonl") && err.contains("changed"),
            "{err}"
        );
    }
}

#[test]
fn every_loss_runs_online_in_every_reference_mode() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model_dir(dir.path(), 12);
    let prompts = prompt_file(dir.path(), 8);
    for kind in [
        LossKind::Dpo,
        LossKind::Ipo,
        LossKind::Slic,
        LossKind::Robust,
    ] {
        for mode in [
            ReferenceMode::Initial,
            ReferenceMode::Behavior,
            ReferenceMode::Ema,
            ReferenceMode::None,
        ] {
            let out = dir.path().join(format!("{kind:?}-{mode:?}"));
            let mut c = config(&model, &prompts, &out);
            c.budget = 8;
            c.sampling.samples_per_prompt = 4;
            c.loss.kind = kind;
            c.reference.mode = mode;
            c.run.kl_metrics = false;
            c.run.save_model = false;
            let outcome = train_online(&c, None, &mut Silent).unwrap();
            assert!(outcome.steps >= 1, "{kind:?} {mode:?}");
            for record in metrics(&out, "metrics.jsonl") {
                assert!(
                    record["loss"].as_f64().unwrap().is_finite(),
                    "{kind:?} {mode:?}"
                );
            }
        }
    }
}

#[test]
fn the_schedule_ends_after_the_kept_pairs() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model_dir(dir.path(), 13);
    let prompts = prompt_file(dir.path(), 40);
    let out = dir.path().join("run");
    let mut c = config(&model, &prompts, &out);
    c.budget = 40;
    c.run.batch_size = 2;
    c.run.kl_metrics = false;
    let outcome = train_online(&c, None, &mut Silent).unwrap();
    let dropped: usize = outcome
        .phases
        .iter()
        .map(|p| p.dropped_ties + p.dropped_identical)
        .sum();
    assert!(dropped > 0, "the test needs dropped comparisons");
    let steps = metrics(&out, "metrics.jsonl");
    let taken = steps.len();
    assert!(taken < 40usize.div_ceil(2), "{taken}");
    // Linear decay: the last step runs at lr / taken, the first of the last phase's plan.
    let last = steps.last().unwrap()["lr"].as_f64().unwrap();
    let expected = c.optim.lr_at(taken - 1, taken);
    assert!((last - expected).abs() < 1e-12, "{last} vs {expected}");
    let recorded: usize = outcome.phases.iter().map(|p| p.steps).sum();
    assert_eq!(recorded, taken);
}
