//! The forward pass: cached decoding equals the full forward, padding does not change results,
//! the CPU backends agree, prompts shared by several rows run once for the same numbers, and a
//! sliding window hides exactly the keys beyond it.

use bpo_model::burn::tensor::{Device, Tensor};
use bpo_model::config::MODEL_TYPES;
use bpo_model::host::to_f32_vec;
use bpo_model::{
    ModelType, PaddingSide, SequenceBatch, TokenBatch, Transformer, response_logprobs,
    shared_prompt_logprobs,
};
use bpo_testkit::{max_abs_diff, tiny_config, tiny_model};

const ARCHS: &[ModelType] = MODEL_TYPES;

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    to_f32_vec(t)
}

/// Deterministic pseudo-random token ids below `vocab`.
fn tokens(n: usize, salt: u32, vocab: u32) -> Vec<u32> {
    (0..n as u32)
        .map(|i| (i * 37 + salt * 101 + 7) % vocab)
        .collect()
}

/// Logits of row `row` at real positions only, `[real_len * vocab]`.
fn real_logits(model: &Transformer, batch: &TokenBatch, logits: Tensor<3>, row: usize) -> Vec<f32> {
    let vocab = model.config.vocab_size;
    let all = values(logits);
    let per_row = batch.seq_len * vocab;
    batch
        .row_mask(row)
        .iter()
        .enumerate()
        .filter(|(_, real)| **real)
        .flat_map(|(t, _)| all[row * per_row + t * vocab..row * per_row + (t + 1) * vocab].to_vec())
        .collect()
}

#[test]
fn cached_decoding_equals_full_forward_with_left_padding() {
    let device = Device::flex();
    for &arch in ARCHS {
        let model = tiny_model(arch, 1, &device);
        let vocab = model.config.vocab_size as u32;
        for prompt_lens in [[1, 1], [3, 7], [9, 2]] {
            let full_len = 6;
            let seqs: Vec<Vec<u32>> = prompt_lens
                .iter()
                .enumerate()
                .map(|(i, &p)| tokens(p + full_len, i as u32, vocab))
                .collect();
            // Reference: each sequence alone, full forward, no padding.
            let reference: Vec<Vec<f32>> = seqs
                .iter()
                .map(|s| {
                    let b = TokenBatch::padded(std::slice::from_ref(s), 0, PaddingSide::Left);
                    values(model.forward(&b))
                })
                .collect();
            // Cached: left-padded prompts, then one token per step.
            let prompts: Vec<Vec<u32>> = seqs
                .iter()
                .zip(prompt_lens)
                .map(|(s, p)| s[..p].to_vec())
                .collect();
            let mut cache = model.new_cache();
            let batch = TokenBatch::padded(&prompts, 0, PaddingSide::Left);
            let prefill = model.forward_cached(&batch, &mut cache);
            let v = vocab as usize;
            for row in 0..2 {
                let got = real_logits(&model, &batch, prefill.clone(), row);
                let want = &reference[row][..prompt_lens[row] * v];
                let diff = max_abs_diff(&got, want);
                assert!(
                    diff <= 1e-4,
                    "{arch:?} prefill row {row} lens {prompt_lens:?}: {diff}"
                );
            }
            for step in 0..full_len {
                let next: Vec<u32> = seqs
                    .iter()
                    .zip(prompt_lens)
                    .map(|(s, p)| s[p + step])
                    .collect();
                let logits =
                    values(model.forward_cached(&TokenBatch::single_step(&next), &mut cache));
                for row in 0..2 {
                    let pos = prompt_lens[row] + step;
                    let want = &reference[row][pos * v..(pos + 1) * v];
                    let diff = max_abs_diff(&logits[row * v..(row + 1) * v], want);
                    assert!(
                        diff <= 1e-4,
                        "{arch:?} step {step} row {row} lens {prompt_lens:?}: {diff}"
                    );
                }
            }
        }
    }
}

#[test]
fn right_padding_leaves_real_positions_unchanged() {
    let device = Device::flex();
    for &arch in ARCHS {
        let model = tiny_model(arch, 2, &device);
        let vocab = model.config.vocab_size as u32;
        let seqs = vec![tokens(10, 1, vocab), tokens(4, 2, vocab)];
        let batch = TokenBatch::padded(&seqs, 5, PaddingSide::Right);
        let logits = model.forward(&batch);
        let alone = TokenBatch::padded(&seqs[1..], 5, PaddingSide::Right);
        let want = values(model.forward(&alone));
        let got = real_logits(&model, &batch, logits, 1);
        assert!(max_abs_diff(&got, &want) <= 1e-4, "{arch:?}");
    }
}

#[test]
fn cache_rows_can_be_dropped_mid_generation() {
    let device = Device::flex();
    let model = tiny_model(ModelType::LLAMA, 3, &device);
    let vocab = model.config.vocab_size as u32;
    let seqs = vec![
        tokens(5, 1, vocab),
        tokens(3, 2, vocab),
        tokens(4, 3, vocab),
    ];
    let mut cache = model.new_cache();
    model.forward_cached(&TokenBatch::padded(&seqs, 0, PaddingSide::Left), &mut cache);
    cache.retain_rows(&[2, 0]);
    let got = values(model.forward_cached(&TokenBatch::single_step(&[11, 12]), &mut cache));
    let v = vocab as usize;
    for (row, (seq, next)) in [(&seqs[2], 11u32), (&seqs[0], 12u32)]
        .into_iter()
        .enumerate()
    {
        let mut full = seq.clone();
        full.push(next);
        let want =
            values(model.forward(&TokenBatch::padded(&[full.clone()], 0, PaddingSide::Left)));
        let last = &want[(full.len() - 1) * v..];
        assert!(max_abs_diff(&got[row * v..(row + 1) * v], last) <= 1e-4);
    }
}

#[allow(deprecated)]
#[test]
fn flex_and_ndarray_give_the_same_logits() {
    let flex = Device::flex();
    let ndarray = Device::ndarray();
    for &arch in ARCHS {
        let a = tiny_model(arch, 4, &flex);
        let b = Transformer::from_tensor_map(&a.config, a.to_tensor_map(), &ndarray).unwrap();
        let vocab = a.config.vocab_size as u32;
        let seqs = vec![tokens(12, 1, vocab), tokens(7, 2, vocab)];
        let batch = TokenBatch::padded(&seqs, 0, PaddingSide::Right);
        let diff = max_abs_diff(&values(a.forward(&batch)), &values(b.forward(&batch)));
        assert!(diff <= 1e-4, "{arch:?}: flex vs ndarray {diff}");
    }
}

#[test]
fn shared_prompt_logprobs_equal_the_full_sequences_and_their_gradients() {
    let device = Device::flex().autodiff();
    for &arch in ARCHS {
        let model = tiny_model(arch, 21, &device);
        let vocab = model.config.vocab_size as u32;
        // Two pairs (chosen rows, then rejected rows) with prompts of different lengths, and a
        // prompt of its own; responses of 1 to 6 tokens, one empty.
        let (p0, p1, p2) = (
            tokens(5, 1, vocab),
            tokens(2, 2, vocab),
            tokens(3, 3, vocab),
        );
        let rows = vec![
            (p0.clone(), tokens(4, 4, vocab)),
            (p1.clone(), tokens(1, 5, vocab)),
            (p0, tokens(6, 6, vocab)),
            (p1, Vec::new()),
            (p2, tokens(3, 7, vocab)),
        ];
        let batch = SequenceBatch::new(&rows, 0).unwrap();
        let (full, _) = response_logprobs(&model, &batch);
        let (shared, mask) = shared_prompt_logprobs(&model, &batch);
        assert_eq!(mask.dims(), [rows.len(), 6]);
        let (full_sums, shared_sums) = (full.clone().sum_dim(1), shared.clone().sum_dim(1));
        let diff = max_abs_diff(&values(shared_sums), &values(full_sums));
        assert!(diff <= 1e-4, "{arch:?}: sums differ by {diff}");
        let weight = model.embed_tokens.weight.val();
        let full_grad = weight.grad(&full.sum().backward()).map(to_f32_vec).unwrap();
        let shared_grad = weight
            .grad(&shared.sum().backward())
            .map(to_f32_vec)
            .unwrap();
        let diff = max_abs_diff(&shared_grad, &full_grad);
        assert!(
            diff <= 1e-4,
            "{arch:?}: embedding gradients differ by {diff}"
        );
    }
}

#[test]
fn a_sliding_window_hides_exactly_the_keys_beyond_it() {
    let device = Device::flex();
    let window = 4;
    let mut config = tiny_config(ModelType::MISTRAL);
    config.sliding_window = Some(window);
    let mut full_config = config.clone();
    (full_config.sliding_window, full_config.layer_types) = (None, Vec::new());
    let mut wide_config = config.clone();
    wide_config.sliding_window = Some(config.max_position_embeddings);
    // The same seed draws the same weights: the window is not a parameter.
    let logits = |config| {
        let model = Transformer::init_with_std(config, 0.2, 9, &device);
        let ids = tokens(12, 3, config.vocab_size as u32);
        let batch = TokenBatch::padded(&[ids], 0, PaddingSide::Left);
        values(model.forward(&batch))
    };
    let (narrow, wide, full) = (logits(&config), logits(&wide_config), logits(&full_config));
    let vocab = config.vocab_size;
    assert_eq!(wide, full);
    // A query at position p < window sees every key before it; later ones do not.
    let seen = window * vocab;
    assert_eq!(narrow[..seen], full[..seen]);
    for p in window..12 {
        let at = |l: &[f32]| l[p * vocab..(p + 1) * vocab].to_vec();
        assert!(
            max_abs_diff(&at(&narrow), &at(&full)) > 1e-3,
            "position {p}"
        );
    }
}
