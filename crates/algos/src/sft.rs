//! Completion-only SFT (`bpo sft`): prompts with a `reference` response, or pairs' chosen
//! responses; the loss is the mean NLL per response token.

use std::path::Path;

use bpo_data::stats::AnyRecord;
use bpo_data::tokenize::{tokenize_prompt_content, tokenize_response};
use bpo_data::{ReadOptions, read_all};
use bpo_model::burn::tensor::Tensor;
use bpo_model::host::to_f32_vec;
use bpo_model::{ModelConfig, SequenceBatch, Tokenizer, Transformer, response_logprobs};

use crate::config::SftConfig;
use crate::error::AlgoError;
use crate::metrics::MetricsRecord;
use crate::offline::{Setup, TrainOutcome, train_offline};
use crate::trainer::{Objective, Observer, Policy, RunDir, load_for_training, weighted_mean};

/// Prompt and response token ids of one SFT example.
type Completion = (Vec<u32>, Vec<u32>);

/// The SFT objective.
struct Sft {
    examples: Vec<Completion>,
    dev: Option<Vec<Completion>>,
    pad_id: u32,
    eval_batch_size: usize,
}

/// Mean NLL per response token of `examples` and the number of response tokens.
fn nll(
    policy: &Transformer,
    examples: &[Completion],
    pad_id: u32,
) -> Result<(Tensor<1>, usize), AlgoError> {
    let batch = SequenceBatch::new(examples, pad_id).map_err(AlgoError::Model)?;
    let tokens: usize = batch.response_lens.iter().sum();
    let (logps, _) = response_logprobs(policy, &batch);
    Ok((-(logps.sum()) / tokens.max(1) as f64, tokens))
}

impl Objective<Transformer> for Sft {
    fn lengths(&self) -> Vec<usize> {
        self.examples
            .iter()
            .map(|(p, r)| p.len() + r.len())
            .collect()
    }

    fn weight(&self, indices: &[usize]) -> f64 {
        indices
            .iter()
            .map(|&i| self.examples[i].1.len() as f64)
            .sum()
    }

    fn loss(
        &mut self,
        policy: &Transformer,
        indices: &[usize],
    ) -> Result<(Tensor<1>, MetricsRecord, usize), AlgoError> {
        let chunk: Vec<Completion> = indices.iter().map(|&i| self.examples[i].clone()).collect();
        let all_tokens: usize = chunk.iter().map(|(p, r)| p.len() + r.len()).sum();
        let (loss, tokens) = nll(policy, &chunk, self.pad_id)?;
        let value = to_f32_vec(loss.clone().detach())[0] as f64;
        let record = MetricsRecord::from([
            ("loss".into(), value),
            ("response_tokens".into(), tokens as f64),
        ]);
        Ok((loss, record, all_tokens))
    }

    fn evaluate(
        &mut self,
        policy: &Policy<Transformer>,
    ) -> Result<Option<MetricsRecord>, AlgoError> {
        let Some(dev) = &self.dev else {
            return Ok(None);
        };
        let policy = policy.merged();
        let mut parts = Vec::new();
        for chunk in dev.chunks(self.eval_batch_size) {
            let (loss, tokens) = nll(&policy, chunk, self.pad_id)?;
            parts.push((
                MetricsRecord::from([("dev/loss".into(), to_f32_vec(loss)[0] as f64)]),
                tokens as f64,
            ));
        }
        Ok(Some(weighted_mean(&parts)))
    }
}

/// Reads SFT examples from `path`: prompt records with a `reference`, or pairs (their chosen
/// response), tokenised and truncated as `config.data` says.
fn read_examples(
    path: &Path,
    config: &SftConfig,
    tokenizer: &Tokenizer,
    model: &ModelConfig,
) -> Result<Vec<Completion>, AlgoError> {
    let options = ReadOptions {
        skip_invalid: config.data.skip_invalid,
        ..ReadOptions::default()
    };
    let truncation = config.data.truncation();
    let records = read_all::<AnyRecord>(path, options)?.records;
    let mut out = Vec::with_capacity(records.len());
    for (i, record) in records.iter().enumerate() {
        let (prompt, response) = match record {
            AnyRecord::Prompt(p) => match &p.reference {
                Some(r) => (&p.prompt, r),
                None => {
                    return Err(AlgoError::Config(format!(
                        "{}: record {i} has no `reference` to train on",
                        path.display()
                    )));
                }
            },
            AnyRecord::Pair(p) => (&p.prompt, &p.chosen),
        };
        let mut p = tokenize_prompt_content(prompt, tokenizer)?;
        let mut r = tokenize_response(prompt, response, tokenizer)?;
        truncation.prompt(&mut p);
        truncation.response(p.len(), &mut r, None);
        model.check_length(
            p.len() + r.len(),
            &format_args!("{} record {}", path.display(), i + 1),
        )?;
        out.push((p, r));
    }
    if out.is_empty() {
        return Err(AlgoError::Config(format!(
            "{}: no examples",
            path.display()
        )));
    }
    Ok(out)
}

/// Completion-only SFT (`bpo sft`).
pub fn train_sft(
    config: &SftConfig,
    resume: Option<&Path>,
    observer: &mut dyn Observer,
) -> Result<TrainOutcome, AlgoError> {
    config.validate()?;
    let mut dir = RunDir::create(
        &config.run.out,
        config,
        config.run.keep_checkpoints,
        &config.data.files(),
    )?;
    let (model, tokenizer) = load_for_training(
        &config.model,
        &config.device,
        config.dtype,
        config.lora.as_ref(),
        &mut dir,
        observer,
    )?;
    let examples = read_examples(&config.data.train, config, &tokenizer, &model.config)?;
    observer.message(&format!("{} training examples", examples.len()));
    let dev = config
        .data
        .dev
        .as_deref()
        .map(|path| read_examples(path, config, &tokenizer, &model.config))
        .transpose()?;
    let mut objective = Sft {
        examples,
        dev,
        pad_id: tokenizer.pad_id(),
        eval_batch_size: config.run.eval_batch_size,
    };
    let setup = Setup {
        model: &config.model,
        lora: config.lora.as_ref(),
        optim: &config.optim,
        run: &config.run,
        dir,
        tokenizer,
    };
    train_offline(&mut objective, model, setup, resume, observer)
}
