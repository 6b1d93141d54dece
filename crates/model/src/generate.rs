//! Batched generation with the KV cache. Every sampled token comes with its log-probability
//! under the untempered model: the behavior log-probs that BPO uses as its reference.

use std::sync::OnceLock;

use burn::tensor::Tensor;
use rayon::prelude::*;

use crate::batch::{PaddingSide, TokenBatch, distinct_rows};
use crate::cache::KvCache;
use crate::decoding::DecodeWeights;
use crate::error::ModelError;
use crate::host::to_f32_vec;
use crate::linear::{MAX_ROWS, Products};
use crate::sampling::{SamplingConfig, choose};
use crate::tokenizer::Tokenizer;
use crate::transformer::Transformer;

/// Why a sequence stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FinishReason {
    /// It produced a stop token (kept as its last token).
    Stop,
    /// It reached `max_new_tokens`.
    Length,
}

/// One generated continuation.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Generation {
    /// Index of the prompt it continues.
    pub prompt_index: usize,
    /// The prompt's token ids.
    pub prompt_ids: Vec<u32>,
    /// Generated token ids, the stop token included when there was one.
    pub token_ids: Vec<u32>,
    /// `log_softmax(raw logits)[token]` of every generated token (temperature not applied).
    pub logprobs: Vec<f32>,
    /// Decoded text of the generated tokens, special tokens removed.
    pub text: String,
    /// Why generation ended.
    pub finish: FinishReason,
}

impl Generation {
    /// Sum of the token log-probabilities: the log-probability of the whole response.
    pub fn logprob_sum(&self) -> f32 {
        self.logprobs.iter().sum()
    }
}

/// A model prepared for generation, for any number of calls: on the CPU its weights are packed
/// for decoding once, at the first step of the first call whose batches hold at most
/// [`MAX_ROWS`] sequences (about 0.1 s and a second copy of the weights for SmolLM2-135M: worth
/// keeping when a model generates more than once); for larger batches, or off the CPU, its
/// output head is laid out row-major once. [`generate`] and [`generate_ids`] make one per call.
///
/// The model must not change while a generator holds it (it borrows it).
#[derive(Debug)]
pub struct Generator<'a> {
    model: &'a Transformer,
    packed: OnceLock<Option<DecodeWeights>>,
    head: OnceLock<Tensor<2>>,
}

impl<'a> Generator<'a> {
    /// A generator of `model`; nothing is prepared before the first call needs it.
    pub fn new(model: &'a Transformer) -> Self {
        Generator {
            model,
            packed: OnceLock::new(),
            head: OnceLock::new(),
        }
    }

    /// [`generate_ids`] with this generator's prepared weights.
    pub fn generate_ids(
        &self,
        prompts: &[Vec<u32>],
        config: &SamplingConfig,
        stop_tokens: &[u32],
        pad_id: u32,
        first_index: usize,
    ) -> Result<Vec<Generation>, ModelError> {
        check_prompts(self.model, prompts, config, first_index)?;
        let streams: Vec<usize> = (first_index..first_index + prompts.len()).collect();
        let pack = prompts.len() <= MAX_ROWS;
        self.generate_rows(prompts, &streams, config, stop_tokens, pad_id, pack)
    }

    /// [`generate`] with this generator's prepared weights.
    pub fn generate(
        &self,
        tokenizer: &Tokenizer,
        prompts: &[Vec<u32>],
        num_samples: usize,
        batch_size: usize,
        config: &SamplingConfig,
        mut on_batch: impl FnMut(usize),
    ) -> Result<Vec<Generation>, ModelError> {
        let samples = num_samples.max(1);
        let batch_size = batch_size.max(1);
        let stop: Vec<u32> = match config.ignore_eos {
            true => Vec::new(),
            false => tokenizer.stop_ids(),
        };
        // Batches of prompts of similar length pad less: the rows run shortest prompt first (a
        // prompt's samples stay together), and each keeps its RNG stream, so the samples are
        // those of any other batching (up to rounding). Row `i` is sample `i % samples` of
        // prompt `i / samples`.
        let total = prompts.len() * samples;
        let mut order: Vec<usize> = (0..total).collect();
        order.sort_by_key(|&i| prompts[i / samples].len());
        check_prompts(self.model, prompts, config, 0)?;
        let mut out: Vec<Option<Generation>> = vec![None; total];
        let mut done = 0;
        for streams in order.chunks(batch_size) {
            let chunk: Vec<Vec<u32>> = streams
                .iter()
                .map(|&i| prompts[i / samples].clone())
                .collect();
            let pack = batch_size.min(total) <= MAX_ROWS;
            let gens =
                self.generate_rows(&chunk, streams, config, &stop, tokenizer.pad_id(), pack)?;
            for (mut g, &i) in gens.into_iter().zip(streams) {
                g.text = tokenizer.decode(&g.token_ids, true)?;
                g.prompt_index /= samples;
                out[i] = Some(g);
            }
            done += streams.len();
            on_batch(done);
        }
        Ok(out
            .into_iter()
            .map(|g| g.expect("every row generated"))
            .collect())
    }

    /// [`generate_ids`] of prompts that passed [`check_prompts`], row `i` with RNG stream (and
    /// `prompt_index`) `streams[i]`; through packed weights when `pack` (see
    /// [`Generator::last_logits`]).
    fn generate_rows(
        &self,
        prompts: &[Vec<u32>],
        streams: &[usize],
        config: &SamplingConfig,
        stop_tokens: &[u32],
        pad_id: u32,
        pack: bool,
    ) -> Result<Vec<Generation>, ModelError> {
        assert_eq!(streams.len(), prompts.len(), "one stream per prompt");
        let model = self.model;
        let mut out: Vec<Generation> = prompts
            .iter()
            .enumerate()
            .map(|(i, p)| Generation {
                prompt_index: streams[i],
                prompt_ids: p.clone(),
                token_ids: Vec::new(),
                logprobs: Vec::new(),
                text: String::new(),
                finish: FinishReason::Length,
            })
            .collect();
        if prompts.is_empty() || config.max_new_tokens == 0 {
            return Ok(out);
        }
        // One RNG per cache row, kept aligned with `active` when rows finish.
        let mut rngs: Vec<_> = (0..prompts.len()).map(|i| config.rng(streams[i])).collect();
        let mut cache = model.new_cache();
        // The samples of one prompt share its prompt pass: each distinct prompt runs once, then its
        // cache row and logits are copied to every row that holds it (the same numbers up to
        // rounding: a row's products do not depend on the other rows, but the row count can choose
        // another product kernel).
        let (distinct, source) = distinct_rows(prompts);
        let batch = TokenBatch::padded(&distinct, pad_id, PaddingSide::Left);
        let mut logits = self.last_logits(&batch, &mut cache, pack);
        if distinct.len() < prompts.len() {
            cache.retain_rows(&source);
            logits = source.iter().map(|&d| logits[d].clone()).collect();
        }
        // `active[r]` is the prompt index held by cache row `r`.
        let mut active: Vec<usize> = (0..prompts.len()).collect();
        loop {
            let mut next = Vec::with_capacity(active.len());
            let mut still = Vec::with_capacity(active.len());
            // Rows sample in parallel: each draws from its own RNG stream, so the result does not
            // depend on the thread count.
            let picks: Vec<(u32, f32)> = logits
                .par_iter()
                .zip(rngs.par_iter_mut())
                .map(|(row_logits, rng)| choose(row_logits, config, rng))
                .collect();
            for (row, (&i, (token, logprob))) in active.iter().zip(picks).enumerate() {
                let g = &mut out[i];
                g.token_ids.push(token);
                g.logprobs.push(logprob);
                if stop_tokens.contains(&token) {
                    g.finish = FinishReason::Stop;
                } else if g.token_ids.len() < config.max_new_tokens {
                    still.push(row);
                    next.push(token);
                }
            }
            if still.is_empty() {
                break;
            }
            if still.len() < active.len() {
                cache.retain_rows(&still);
                active = still.iter().map(|&r| active[r]).collect();
                rngs = still.iter().map(|&r| rngs[r].clone()).collect();
            }
            let step = TokenBatch::single_step(&next);
            logits = self.last_logits(&step, &mut cache, pack);
        }
        Ok(out)
    }

    /// Runs a chunk (appending it to `cache`) and returns its last-position logits, one `Vec`
    /// of `vocab` values per row; through the packed weights when `pack` (the call's batches
    /// hold at most [`MAX_ROWS`] sequences).
    fn last_logits(&self, batch: &TokenBatch, cache: &mut KvCache, pack: bool) -> Vec<Vec<f32>> {
        let model = self.model;
        let packed = if pack {
            self.packed.get_or_init(|| model.decode_weights()).as_ref()
        } else {
            None
        };
        let hidden = match packed {
            Some(weights) => model.decode_hidden(batch, cache, weights),
            // Sampling stays f32 whatever `bf16_products` says.
            None => model.forward_hidden_with(batch, cache, Products::F32),
        };
        let [rows, len, width] = hidden.dims();
        let vocab = model.config.vocab_size;
        let last = hidden.narrow(1, len - 1, 1);
        let data = match packed {
            Some(weights) if rows <= MAX_ROWS => weights.head.product(&to_f32_vec(last), rows),
            _ => {
                let head = self.head.get_or_init(|| model.decode_head_weight());
                to_f32_vec(Transformer::project(last, head.clone()))
            }
        };
        assert_eq!(
            data.len(),
            rows * vocab,
            "{rows} rows of {vocab} logits of width {width}"
        );
        data.chunks(vocab).map(<[f32]>::to_vec).collect()
    }
}

/// Generates one continuation per prompt (all prompts in one batch), stopping a row at any of
/// `stop_tokens` or after `config.max_new_tokens`. Row `i` samples with RNG stream
/// `first_index + i`, so splitting a prompt list into batches does not change the results.
/// Returned in prompt order; `text` is left empty (see [`generate`]). Packs the model's weights
/// for this call; [`Generator`] keeps them for many.
pub fn generate_ids(
    model: &Transformer,
    prompts: &[Vec<u32>],
    config: &SamplingConfig,
    stop_tokens: &[u32],
    pad_id: u32,
    first_index: usize,
) -> Result<Vec<Generation>, ModelError> {
    Generator::new(model).generate_ids(prompts, config, stop_tokens, pad_id, first_index)
}

/// Rejects sampling settings, empty prompts (named `first_index + i`), prompts too long for
/// the model and token ids outside its vocabulary.
fn check_prompts(
    model: &Transformer,
    prompts: &[Vec<u32>],
    config: &SamplingConfig,
    first_index: usize,
) -> Result<(), ModelError> {
    config.validate()?;
    if let Some(i) = prompts.iter().position(Vec::is_empty) {
        return Err(ModelError::Input(format!(
            "prompt {} is empty",
            first_index + i
        )));
    }
    let max_positions = model.config.max_position_embeddings;
    if let Some(p) = prompts
        .iter()
        .find(|p| p.len() + config.max_new_tokens > max_positions)
    {
        return Err(ModelError::Input(format!(
            "a prompt of {} tokens plus {} new tokens exceeds the model's {max_positions} positions",
            p.len(),
            config.max_new_tokens
        )));
    }
    let vocab = model.config.vocab_size as u32;
    if let Some(&bad) = prompts.iter().flatten().find(|&&id| id >= vocab) {
        return Err(ModelError::Input(format!(
            "token id {bad} is outside the model's vocabulary of {vocab}"
        )));
    }
    Ok(())
}

/// Generates `num_samples` continuations of each tokenised prompt in batches of at most
/// `batch_size` sequences (shortest prompts first), stopping at the tokenizer's EOS, and
/// decodes them. Results are ordered by prompt, then sample; sample `s` of prompt `p` uses RNG
/// stream `p * num_samples + s`. `on_batch` is told how many samples are done after each batch.
/// Packs the model's weights for this call; [`Generator`] keeps them for many.
pub fn generate(
    model: &Transformer,
    tokenizer: &Tokenizer,
    prompts: &[Vec<u32>],
    num_samples: usize,
    batch_size: usize,
    config: &SamplingConfig,
    on_batch: impl FnMut(usize),
) -> Result<Vec<Generation>, ModelError> {
    Generator::new(model).generate(
        tokenizer,
        prompts,
        num_samples,
        batch_size,
        config,
        on_batch,
    )
}
