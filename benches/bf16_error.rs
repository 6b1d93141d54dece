//! What bf16 products (`run.bf16_products`, `Transformer::bf16_products`) do to a LoRA DPO step
//! on SmolLM2-135M, measured with bpo's kernels (`benches/compare/bf16_error.py` emulates the
//! same in PyTorch): each response's summed log-prob, the DPO loss (beta 0.1) against the f32
//! log-probs as its reference (what a BPO run whose behavior log-probs were sampled in f32
//! sees), and the LoRA gradient, bf16 against f32. LoRA r = 16 at a run's start (`B` = 0: only
//! `B` takes a gradient); pairs cut from the text of `data/sentiment/dev.jsonl`, as the Python
//! script cuts them.
//!
//! `cargo bench --bench bf16_error` (needs `bpo fetch smollm2-135m` and a CPU with
//! AVX512-BF16).

use bpo::algos::LossConfig;
use bpo::algos::config::LoraConfig;
use bpo::algos::logps::pair_logps;
use bpo::algos::lora::apply_lora;
use bpo::algos::loss::dap_loss;
use bpo::data::{PairBatch, TokenizedPair};
use bpo::model::burn::module::{Module, ModuleVisitor, Param};
use bpo::model::burn::tensor::{Device, Gradients, Tensor};
use bpo::model::host::to_f32_vec;
use bpo::model::{Transformer, load};

/// The gradients of the parameters that take one, end to end.
struct TrainedGrads<'a> {
    grads: &'a Gradients,
    found: Vec<f64>,
}

impl ModuleVisitor for TrainedGrads<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(grad) = param.val().grad(self.grads) {
            self.found
                .extend(to_f32_vec(grad).into_iter().map(f64::from));
        }
    }
}

/// Response log-probs, the loss against `reference` (these log-probs when `None`) and the
/// gradient of the loss.
fn step(
    model: &Transformer,
    batch: &PairBatch,
    reference: Option<&bpo::algos::loss::PairLogps>,
) -> (Vec<f32>, bpo::algos::loss::PairLogps, f32, Vec<f64>) {
    let logps = pair_logps(model, batch);
    let detached = logps.detach();
    let loss_config = LossConfig::default();
    let (loss, _) = dap_loss(&loss_config, &logps, Some(reference.unwrap_or(&detached)));
    let grads = loss.clone().backward();
    let mut visitor = TrainedGrads {
        grads: &grads,
        found: Vec::new(),
    };
    model.visit(&mut visitor);
    let mut values = to_f32_vec(detached.chosen.clone());
    values.extend(to_f32_vec(detached.rejected.clone()));
    (values, detached, loss.into_scalar(), visitor.found)
}

fn main() {
    if !bpo::model::flex::bf16_supported() {
        eprintln!("this CPU has no AVX512-BF16: nothing to measure");
        return;
    }
    let device = Device::flex().autodiff();
    let (model, tokenizer) = load("smollm2-135m", &device).expect("`bpo fetch smollm2-135m` first");
    let lora = LoraConfig {
        rank: 16,
        alpha: 32.0,
        ..LoraConfig::default()
    };
    let mut model = apply_lora(model, &lora, 0).expect("lora");
    let root = env!("CARGO_MANIFEST_DIR");
    let text = std::fs::read_to_string(format!("{root}/data/sentiment/dev.jsonl")).expect("data");
    let joined: Vec<String> = text
        .lines()
        .map(|line| {
            let row: serde_json::Value = serde_json::from_str(line).expect("a JSON row");
            format!(
                "{}{}",
                row["prompt"].as_str().unwrap(),
                row["reference"].as_str().unwrap()
            )
        })
        .collect();
    let ids = tokenizer.encode(&joined.join(" "), false).expect("tokens");
    for (n, prompt, response) in [(4, 64, 64), (2, 256, 256), (1, 1024, 1024)] {
        let mut at = 0;
        let pairs: Vec<TokenizedPair> = (0..n)
            .map(|_| {
                let cut = |from: usize, len: usize| ids[at + from..at + from + len].to_vec();
                let pair = TokenizedPair {
                    prompt: cut(0, prompt),
                    chosen: cut(prompt, response),
                    rejected: cut(prompt + response, response),
                    chosen_logps: None,
                    rejected_logps: None,
                    truncated: false,
                };
                at += prompt + 2 * response;
                pair
            })
            .collect();
        let batch = PairBatch::new(&pairs, tokenizer.pad_id()).expect("a batch");
        model.bf16_products = false;
        let (f32_values, reference, f32_loss, f32_grad) = step(&model, &batch, None);
        model.bf16_products = true;
        let (values, _, loss, grad) = step(&model, &batch, Some(&reference));
        let diffs: Vec<f32> = values
            .iter()
            .zip(&f32_values)
            .map(|(a, b)| (a - b).abs())
            .collect();
        let mean_diff = diffs.iter().sum::<f32>() / diffs.len() as f32;
        let max_diff = diffs.iter().fold(0.0f32, |a, &d| a.max(d));
        let mean_logp = f32_values.iter().sum::<f32>() / f32_values.len() as f32;
        let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
        let cosine = dot(&grad, &f32_grad) / (dot(&grad, &grad) * dot(&f32_grad, &f32_grad)).sqrt();
        let error: Vec<f64> = grad.iter().zip(&f32_grad).map(|(a, b)| a - b).collect();
        let relative = (dot(&error, &error) / dot(&f32_grad, &f32_grad)).sqrt();
        println!(
            "{n}x({prompt}+{response}) response log-prob {mean_logp:9.2}: |bf16 - f32| mean \
             {mean_diff:.4} max {max_diff:.4} (per response token at most {:.1e}); loss \
             {f32_loss:.6} -> {loss:.6}; LoRA gradient cosine {cosine:.5}, relative error \
             {relative:.1e}",
            max_diff / response as f32
        );
    }
}
