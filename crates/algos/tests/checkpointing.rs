//! Per-block gradient checkpointing (`Transformer::gradient_checkpointing`): the same
//! log-probs and the same gradient for every parameter as when blocks keep their activations,
//! through shared prompts (the responses attend to the prompt's cached keys), with a frozen
//! embedding (the first block's input then needs no gradient) and with LoRA adapters. And bf16
//! products with the frozen weights (`Transformer::bf16_products`): log-probs near f32's, LoRA
//! gradients pointing the same way, and the same again with checkpointing.

use std::sync::mpsc;
use std::time::Duration;

use bpo_algos::config::LoraConfig;
use bpo_algos::lora::apply_lora;
use bpo_model::burn::module::{Module, ModuleVisitor, Param};
use bpo_model::burn::tensor::{Device, Tensor};
use bpo_model::config::MODEL_TYPES;
use bpo_model::host::to_f32_vec;
use bpo_model::{SequenceBatch, Transformer, shared_prompt_logprobs};
use bpo_testkit::{bf16_products_run, max_abs_diff, tiny_model, with_random_lora_b};

/// Every float parameter's gradient (`None` where it has none), in visiting order.
struct AllGrads<'a> {
    grads: &'a bpo_model::burn::tensor::Gradients,
    found: Vec<Option<Vec<f32>>>,
}

impl ModuleVisitor for AllGrads<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.found
            .push(param.val().grad(self.grads).map(to_f32_vec));
    }
}

/// The response log-probs of two pairs sharing prompts, and every parameter's gradient of a
/// weighted sum of them.
fn logprobs_and_grads(model: &Transformer) -> (Vec<f32>, Vec<Option<Vec<f32>>>) {
    let vocab = model.config.vocab_size as u32;
    let ids = |n: u32, salt: u32| (0..n).map(|i| (i * 37 + salt * 101 + 7) % vocab).collect();
    let (p0, p1): (Vec<u32>, Vec<u32>) = (ids(5, 1), ids(3, 2));
    let rows = vec![
        (p0.clone(), ids(4, 3)),
        (p1.clone(), ids(2, 4)),
        (p0, ids(6, 5)),
        (p1, ids(1, 6)),
    ];
    let batch = SequenceBatch::new(&rows, 0).unwrap();
    let (logprobs, _) = shared_prompt_logprobs(model, &batch);
    let weights = Tensor::<2>::from_floats([[1.0], [-0.5], [0.25], [2.0]], &model.device());
    let grads = (logprobs.clone() * weights).sum().backward();
    let mut all = AllGrads {
        grads: &grads,
        found: Vec::new(),
    };
    model.visit(&mut all);
    (to_f32_vec(logprobs.inner()), all.found)
}

#[test]
fn checkpointed_blocks_give_the_same_values_and_gradients() {
    // A deadlock in the nested backward pass would hang: run in a thread with a deadline.
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        let device = Device::flex().autodiff();
        for &arch in MODEL_TYPES {
            for variant in ["full", "frozen embedding", "lora"] {
                let mut model = tiny_model(arch, 31, &device);
                match variant {
                    "frozen embedding" => {
                        model.embed_tokens.weight =
                            model.embed_tokens.weight.set_require_grad(false)
                    }
                    "lora" => {
                        let config = LoraConfig {
                            rank: 4,
                            ..LoraConfig::default()
                        };
                        model = apply_lora(model, &config, 5).expect("lora");
                    }
                    _ => {}
                }
                let (plain, plain_grads) = logprobs_and_grads(&model);
                model.gradient_checkpointing = true;
                let (checkpointed, grads) = logprobs_and_grads(&model);
                assert_eq!(
                    checkpointed, plain,
                    "{arch:?} {variant}: the same log-probs"
                );
                assert_eq!(grads.len(), plain_grads.len());
                let mut compared = 0;
                for (i, (grad, plain)) in grads.iter().zip(&plain_grads).enumerate() {
                    let what = format!("{arch:?} {variant}: parameter {i}");
                    assert_eq!(grad.is_some(), plain.is_some(), "{what}");
                    if let (Some(grad), Some(plain)) = (grad, plain) {
                        // Within 1e-5 of the largest entry (at least 1): a block's input gets its
                        // gradient's terms in another order. (GPT-2's key bias has a gradient of
                        // 0 up to rounding, softmax ignoring what it adds to a query's scores.)
                        let scale = plain.iter().fold(1f32, |m, g| m.max(g.abs()));
                        let diff = max_abs_diff(grad, plain) / scale;
                        assert!(diff <= 1e-5, "{what} differs by {diff}");
                        compared += 1;
                    }
                }
                assert!(
                    compared > 4,
                    "{arch:?} {variant}: {compared} gradients compared"
                );
            }
        }
        done.send(()).unwrap();
    });
    finished
        .recv_timeout(Duration::from_secs(300))
        .expect("checkpointed backward passes finish");
}

/// The gradients that exist, end to end.
fn flat(grads: &[Option<Vec<f32>>]) -> Vec<f32> {
    grads.iter().flatten().flatten().copied().collect()
}

#[test]
fn bf16_products_stay_near_f32_and_checkpoint_alike() {
    if !bf16_products_run() {
        return;
    }
    let device = Device::flex().autodiff();
    for &arch in MODEL_TYPES {
        let config = LoraConfig {
            rank: 4,
            ..LoraConfig::default()
        };
        let model = apply_lora(tiny_model(arch, 31, &device), &config, 5).expect("lora");
        // B drawn too, so that both factors take gradients.
        let mut model = with_random_lora_b(model, 8);
        let (f32_logprobs, f32_grads) = logprobs_and_grads(&model);
        model.bf16_products = true;
        let (logprobs, grads) = logprobs_and_grads(&model);
        let diff = max_abs_diff(&logprobs, &f32_logprobs);
        assert!(
            diff > 0.0 && diff <= 0.15,
            "{arch:?}: bf16 log-probs {diff} nats from f32's"
        );
        let (g, e) = (flat(&grads), flat(&f32_grads));
        assert_eq!(g.len(), e.len(), "{arch:?}: the same gradients exist");
        let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x * y) as f64).sum::<f64>();
        let cosine = dot(&g, &e) / (dot(&g, &g) * dot(&e, &e)).sqrt();
        assert!(cosine >= 0.995, "{arch:?}: gradient cosine {cosine}");
        model.gradient_checkpointing = true;
        let (checkpointed, checkpointed_grads) = logprobs_and_grads(&model);
        assert_eq!(
            checkpointed, logprobs,
            "{arch:?}: checkpointed, the same log-probs"
        );
        let scale = g.iter().fold(1f32, |m, v| m.max(v.abs()));
        let diff = max_abs_diff(&flat(&checkpointed_grads), &g) / scale;
        // Not to the last bit: a value that the recomputation changes in its last bit may round
        // to the other bf16 neighbour. A tenth of bf16's own difference at most (measured: 1e-7
        // to 6e-4 of the largest gradient, bf16's 5e-3 to 0.1).
        let bf16_diff = max_abs_diff(&g, &e) / scale;
        assert!(
            diff <= 0.1 * bf16_diff,
            "{arch:?}: checkpointed gradients differ by {diff}, bf16's from f32's by {bf16_diff}"
        );
    }
}

#[test]
fn bf16_products_leave_weights_that_train_in_f32() {
    if !bf16_products_run() {
        return;
    }
    // Full fine-tuning: every projection trains, so every product stays f32, checkpointed or
    // not (the checkpointed forward pass holds the weights untracked, yet as trained).
    let device = Device::flex().autodiff();
    let mut model = tiny_model(MODEL_TYPES[0], 31, &device);
    let (f32_logprobs, f32_grads) = logprobs_and_grads(&model);
    model.bf16_products = true;
    assert_eq!(
        logprobs_and_grads(&model),
        (f32_logprobs.clone(), f32_grads)
    );
    model.gradient_checkpointing = true;
    assert_eq!(logprobs_and_grads(&model).0, f32_logprobs);
}
