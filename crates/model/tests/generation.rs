//! Generation and scoring: seeded reproducibility, batch independence, behavior log-probs equal
//! a fresh scoring pass, greedy decoding equals step-by-step argmax, stop tokens, decoding
//! through packed weights equals the plain forward, a reused generator equals fresh calls.

use bpo_model::burn::tensor::Device;
use bpo_model::config::MODEL_TYPES;
use bpo_model::host::to_f32_vec;
use bpo_model::{
    FinishReason, Generation, Generator, ModelType, PaddingSide, SamplingConfig, TokenBatch,
    Transformer, generate, generate_ids, score,
};
use bpo_testkit::{tiny_model, tokenizer};

fn prompts(model: &Transformer) -> Vec<Vec<u32>> {
    let vocab = model.config.vocab_size as u32;
    (0..4u32)
        .map(|r| {
            (0..3 + 2 * r)
                .map(|i| (i * 17 + r * 29 + 5) % vocab)
                .collect()
        })
        .collect()
}

fn sampling(seed: u64) -> SamplingConfig {
    SamplingConfig {
        temperature: 1.0,
        top_k: Some(50),
        top_p: Some(0.95),
        max_new_tokens: 12,
        seed,
        ignore_eos: false,
    }
}

/// Each prompt generated in a batch of its own, with the RNG stream it has in the full batch.
fn one_by_one(
    model: &Transformer,
    prompts: &[Vec<u32>],
    config: &SamplingConfig,
    stop: &[u32],
) -> Vec<Generation> {
    prompts
        .iter()
        .enumerate()
        .flat_map(|(i, prompt)| {
            generate_ids(model, std::slice::from_ref(prompt), config, stop, 0, i).unwrap()
        })
        .collect()
}

#[test]
fn same_seed_same_samples_whatever_the_batching() {
    let device = Device::flex();
    let model = tiny_model(ModelType::LLAMA, 11, &device);
    let p = prompts(&model);
    let together = generate_ids(&model, &p, &sampling(3), &[], 0, 0).unwrap();
    let again = generate_ids(&model, &p, &sampling(3), &[], 0, 0).unwrap();
    assert_eq!(together, again);
    let one_by_one = one_by_one(&model, &p, &sampling(3), &[]);
    for (a, b) in together.iter().zip(&one_by_one) {
        assert_eq!(a.token_ids, b.token_ids);
        for (x, y) in a.logprobs.iter().zip(&b.logprobs) {
            assert!((x - y).abs() <= 1e-4);
        }
    }
    let other = generate_ids(&model, &p, &sampling(4), &[], 0, 0).unwrap();
    assert_ne!(
        together.iter().map(|g| &g.token_ids).collect::<Vec<_>>(),
        other.iter().map(|g| &g.token_ids).collect::<Vec<_>>()
    );
}

#[test]
fn rows_that_stop_early_leave_the_other_rows_samples_unchanged() {
    let device = Device::flex();
    let model = tiny_model(ModelType::LLAMA, 11, &device);
    let p = prompts(&model);
    let free = generate_ids(&model, &p, &sampling(5), &[], 0, 0).unwrap();
    // A token that ends some rows early and not others.
    let stop = free[0].token_ids[1];
    let together = generate_ids(&model, &p, &sampling(5), &[stop], 0, 0).unwrap();
    assert!(together.iter().any(|g| g.finish == FinishReason::Stop));
    assert!(together.iter().any(|g| g.finish == FinishReason::Length));
    let alone = one_by_one(&model, &p, &sampling(5), &[stop]);
    for (i, (a, b)) in together.iter().zip(&alone).enumerate() {
        assert_eq!(a.token_ids, b.token_ids, "prompt {i}");
    }
}

#[test]
fn behavior_logprobs_equal_a_fresh_scoring_pass() {
    let device = Device::flex();
    for arch in [ModelType::LLAMA, ModelType::GPT2] {
        let model = tiny_model(arch, 12, &device);
        let p = prompts(&model);
        let mut config = sampling(5);
        config.temperature = 1.7;
        let gens = generate_ids(&model, &p, &config, &[], 0, 0).unwrap();
        let pairs: Vec<_> = gens
            .iter()
            .map(|g| (g.prompt_ids.clone(), g.token_ids.clone()))
            .collect();
        let scored = score(&model, &pairs, 0, 3).unwrap();
        for (g, s) in gens.iter().zip(&scored) {
            assert_eq!(g.logprobs.len(), s.logprobs.len());
            for (a, b) in g.logprobs.iter().zip(&s.logprobs) {
                assert!((a - b).abs() <= 1e-4, "{arch:?}: {a} vs {b}");
            }
            assert!((g.logprob_sum() - s.sum).abs() <= 1e-3);
        }
    }
}

#[test]
fn greedy_equals_step_by_step_argmax_of_the_full_forward() {
    let device = Device::flex();
    let model = tiny_model(ModelType::QWEN2, 13, &device);
    let prompt = prompts(&model)[2].clone();
    let greedy = &generate_ids(
        &model,
        std::slice::from_ref(&prompt),
        &SamplingConfig::greedy(8),
        &[],
        0,
        0,
    )
    .unwrap()[0];
    let vocab = model.config.vocab_size;
    let mut seq = prompt;
    for &token in &greedy.token_ids {
        let logits =
            to_f32_vec(model.forward(&TokenBatch::padded(&[seq.clone()], 0, PaddingSide::Right)));
        let last = &logits[(seq.len() - 1) * vocab..];
        let best = (0..vocab).fold(0, |b, i| if last[i] > last[b] { i } else { b });
        assert_eq!(token as usize, best);
        seq.push(token);
    }
}

#[test]
fn generation_stops_at_stop_tokens_per_sequence() {
    let device = Device::flex();
    let model = tiny_model(ModelType::LLAMA, 14, &device);
    let p = prompts(&model);
    let greedy = SamplingConfig::greedy(6);
    let free = generate_ids(&model, &p, &greedy, &[], 0, 0).unwrap();
    // Stop on the third token of the first sequence: it ends there, the others go on unless
    // they meet that token too.
    let stop = free[0].token_ids[2];
    let stopped = generate_ids(&model, &p, &greedy, &[stop], 0, 0).unwrap();
    for (f, s) in free.iter().zip(&stopped) {
        match f.token_ids.iter().position(|&t| t == stop) {
            Some(at) => {
                assert_eq!(s.token_ids, f.token_ids[..=at]);
                assert_eq!(s.finish, FinishReason::Stop);
            }
            None => {
                assert_eq!(s.token_ids, f.token_ids);
                assert_eq!(s.finish, FinishReason::Length);
            }
        }
    }
}

#[test]
fn generate_decodes_text_and_orders_samples_by_prompt() {
    let device = Device::flex();
    let model = tiny_model(ModelType::LLAMA, 15, &device);
    let tok = tokenizer();
    let prompts: Vec<Vec<u32>> = ["the good", "in the"]
        .iter()
        .map(|p| tok.encode_prompt(p, true).unwrap())
        .collect();
    let mut calls = Vec::new();
    let gens = generate(&model, &tok, &prompts, 3, 4, &sampling(1), |n| {
        calls.push(n)
    })
    .unwrap();
    assert_eq!(gens.len(), 6);
    assert_eq!(calls, vec![4, 6]);
    assert_eq!(
        gens.iter().map(|g| g.prompt_index).collect::<Vec<_>>(),
        vec![0, 0, 0, 1, 1, 1]
    );
    for g in &gens {
        assert_eq!(g.text, tok.decode(&g.token_ids, true).unwrap());
    }
}

#[test]
fn invalid_generation_inputs_are_errors() {
    let device = Device::flex();
    let model = tiny_model(ModelType::LLAMA, 16, &device);
    let err = generate_ids(&model, &[vec![]], &sampling(0), &[], 0, 0).unwrap_err();
    assert!(err.to_string().contains("prompt 0 is empty"), "{err}");
    let mut long = sampling(0);
    long.max_new_tokens = 500;
    let err = generate_ids(&model, &[vec![1]], &long, &[], 0, 0).unwrap_err();
    assert!(err.to_string().contains("exceeds"), "{err}");
    let mut bad = sampling(0);
    bad.top_p = Some(1.5);
    assert!(generate_ids(&model, &[vec![1]], &bad, &[], 0, 0).is_err());
    let err = generate_ids(&model, &[vec![100_000]], &sampling(0), &[], 0, 0).unwrap_err();
    assert!(
        err.to_string().contains("outside the model's vocabulary"),
        "{err}"
    );
}

#[test]
fn decoding_through_packed_weights_equals_the_plain_forward() {
    for device in [Device::flex(), Device::flex().autodiff()] {
        for &arch in MODEL_TYPES {
            let model = tiny_model(arch, 14, &device);
            // Qwen2's tiny model has its own head; without it, the head is the tied embedding.
            let mut variants = vec![model.clone()];
            if model.lm_head.is_some() {
                variants.push(Transformer {
                    lm_head: None,
                    ..model
                });
            }
            for model in variants {
                let tied = model.lm_head.is_none();
                let weights = model.decode_weights().expect("flex f32 weights pack");
                let batch = TokenBatch::padded(&prompts(&model), 0, PaddingSide::Left);
                let step = TokenBatch::single_step(&[3, 5, 7, 11]);
                let (mut plain, mut packed) = (model.new_cache(), model.new_cache());
                for chunk in [&batch, &step, &step] {
                    let expected = model.logits(model.forward_hidden(chunk, &mut plain));
                    let ours = model.logits(model.decode_hidden(chunk, &mut packed, &weights));
                    let diff = bpo_testkit::max_abs_diff(&to_f32_vec(ours), &to_f32_vec(expected));
                    assert!(diff <= 1e-4, "{arch:?}, tied {tied}: {diff}");
                }
                let hidden = to_f32_vec(model.forward_hidden(&step, &mut model.new_cache()));
                let width = model.config.hidden_size;
                let logits = weights.head.product(&hidden, hidden.len() / width);
                let expected =
                    to_f32_vec(model.logits(model.forward_hidden(&step, &mut model.new_cache())));
                let diff = bpo_testkit::max_abs_diff(&logits, &expected);
                assert!(diff <= 1e-4, "{arch:?} head, tied {tied}: {diff}");
            }
        }
    }
}

#[test]
fn generate_runs_prompts_shortest_first_and_keeps_each_samples_stream() {
    let device = Device::flex();
    let model = tiny_model(ModelType::LLAMA, 16, &device);
    let tok = tokenizer();
    // Longest first, so that running shortest first reorders the batches.
    let prompts: Vec<Vec<u32>> = prompts(&model).into_iter().rev().collect();
    let config = SamplingConfig {
        ignore_eos: true,
        ..sampling(6)
    };
    let gens = generate(&model, &tok, &prompts, 2, 3, &config, |_| {}).unwrap();
    assert_eq!(gens.len(), 2 * prompts.len());
    for (i, g) in gens.iter().enumerate() {
        let (p, s) = (i / 2, i % 2);
        assert_eq!((g.prompt_index, &g.prompt_ids), (p, &prompts[p]));
        let alone = &generate_ids(&model, &prompts[p..=p], &config, &[], 0, 2 * p + s).unwrap()[0];
        assert_eq!(g.token_ids, alone.token_ids, "prompt {p}, sample {s}");
        for (x, y) in g.logprobs.iter().zip(&alone.logprobs) {
            assert!((x - y).abs() <= 1e-4, "prompt {p}, sample {s}: {x} vs {y}");
        }
    }
}

#[test]
fn a_generator_reused_across_calls_equals_fresh_calls() {
    let device = Device::flex();
    let model = tiny_model(ModelType::LLAMA, 17, &device);
    let generator = Generator::new(&model);
    let p = prompts(&model);
    // More sequences than a packed product takes, then few: the row-major head, then the
    // packed weights, both kept by the generator; then the small call again.
    let many: Vec<Vec<u32>> = (0..65).map(|i| p[i % p.len()].clone()).collect();
    for (prompts, seed) in [(&many, 7), (&p, 8), (&p, 9), (&many, 10)] {
        let config = sampling(seed);
        let reused = generator.generate_ids(prompts, &config, &[], 0, 3).unwrap();
        let fresh = generate_ids(&model, prompts, &config, &[], 0, 3).unwrap();
        assert_eq!(reused, fresh, "{} prompts, seed {seed}", prompts.len());
    }
}

/// `generate` stops on each of the tokenizer's stop ids (declared end-of-sequence ids, the
/// template's end of turn), not only on EOS; `ignore_eos` ignores them all.
#[test]
fn generate_stops_on_every_stop_id_of_the_tokenizer() {
    let device = Device::flex();
    let model = tiny_model(ModelType::LLAMA, 16, &device);
    let prompt = vec![tokenizer().encode_prompt("the good", true).unwrap()];
    let greedy = SamplingConfig::greedy(6);
    let free = generate(&model, &tokenizer(), &prompt, 1, 1, &greedy, |_| {}).unwrap();
    let first = free[0].token_ids[0];
    assert!(!tokenizer().stop_ids().contains(&first));
    let tok = tokenizer().with_stop_ids([first]);
    let stopped = generate(&model, &tok, &prompt, 1, 1, &greedy, |_| {}).unwrap();
    assert_eq!(stopped[0].token_ids, vec![first]);
    assert_eq!(stopped[0].finish, FinishReason::Stop);
    let ignoring = SamplingConfig {
        ignore_eos: true,
        ..greedy
    };
    let all = generate(&model, &tok, &prompt, 1, 1, &ignoring, |_| {}).unwrap();
    assert_eq!(all[0].token_ids.len(), 6);
}
