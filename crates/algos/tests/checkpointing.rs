//! Per-block gradient checkpointing (`Transformer::gradient_checkpointing`): the same
//! log-probs and the same gradient for every parameter as when blocks keep their activations,
//! through shared prompts (the responses attend to the prompt's cached keys), with a frozen
//! embedding (the first block's input then needs no gradient) and with LoRA adapters.

use std::sync::mpsc;
use std::time::Duration;

use bpo_algos::config::LoraConfig;
use bpo_algos::lora::apply_lora;
use bpo_model::burn::module::{Module, ModuleVisitor, Param};
use bpo_model::burn::tensor::{Device, Tensor};
use bpo_model::config::MODEL_TYPES;
use bpo_model::host::to_f32_vec;
use bpo_model::{SequenceBatch, Transformer, shared_prompt_logprobs};
use bpo_testkit::{max_abs_diff, tiny_model};

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
