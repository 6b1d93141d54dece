//! A reward model written by `bpo rm train`, as an annotator.

use std::path::{Path, PathBuf};

use bpo_data::tokenize::{tokenize_prompt_content, tokenize_response};
use bpo_data::{Content, Truncation};
use bpo_model::host::to_f32_vec;
use bpo_model::{ChatMessage, PaddingSide, TokenBatch, Tokenizer, parse_device};

use crate::annotate::annotator::Annotator;
use crate::error::AlgoError;
use crate::rm::RewardModel;

/// A reward model as an annotator: each (prompt, response) is tokenised exactly as
/// `bpo rm train` tokenised its pairs (text: the prompt with the tokenizer's special tokens and
/// the response ended with EOS; a conversation: through the chat template, the response as the
/// assistant's turn) and scored
/// `batch_size` at a time. A sequence longer than the model's positions is truncated as
/// `data.max_length` truncates training pairs: the response keeps its start (down to one token),
/// then the prompt keeps its end.
pub struct RewardModelAnnotator {
    model: RewardModel,
    tokenizer: Tokenizer,
    dir: PathBuf,
    batch_size: usize,
}

impl RewardModelAnnotator {
    /// Loads the reward model in `dir` on `device`.
    pub fn load(dir: &Path, device: &str, batch_size: usize) -> Result<Self, AlgoError> {
        let (model, tokenizer) = RewardModel::load(dir, &parse_device(device)?)?;
        Ok(RewardModelAnnotator {
            model,
            tokenizer,
            dir: dir.to_path_buf(),
            batch_size: batch_size.max(1),
        })
    }

    /// The token ids the model scores for `prompt` and `response`.
    fn tokenize(&self, prompt: &Content, response: &str) -> Result<Vec<u32>, AlgoError> {
        let fit = Truncation {
            max_length: Some(self.model.backbone.config.max_position_embeddings),
            ..Truncation::default()
        };
        let mut ids = tokenize_prompt_content(prompt, &self.tokenizer)?;
        // A reply to a conversation is the assistant's turn, as in conversational training pairs.
        let response = match prompt {
            Content::Chat(_) => Content::Chat(vec![ChatMessage::new("assistant", response)]),
            Content::Text(_) => Content::text(response),
        };
        let mut response = tokenize_response(prompt, &response, &self.tokenizer)?;
        fit.prompt(&mut ids);
        fit.response(ids.len(), &mut response, None);
        ids.extend(response);
        Ok(ids)
    }
}

impl Annotator for RewardModelAnnotator {
    fn name(&self) -> String {
        format!("reward model {}", self.dir.display())
    }

    fn score(&mut self, items: &[(&str, &str)]) -> Result<Vec<f64>, AlgoError> {
        let prompts: Vec<Content> = items.iter().map(|(p, _)| Content::text(*p)).collect();
        let items: Vec<(&Content, &str)> =
            prompts.iter().zip(items).map(|(p, i)| (p, i.1)).collect();
        self.score_prompts(&items)
    }

    fn score_prompts(&mut self, items: &[(&Content, &str)]) -> Result<Vec<f64>, AlgoError> {
        let mut scores = Vec::with_capacity(items.len());
        for chunk in items.chunks(self.batch_size) {
            let rows = chunk
                .iter()
                .map(|(prompt, response)| self.tokenize(prompt, response))
                .collect::<Result<Vec<_>, _>>()?;
            let batch = TokenBatch::padded(&rows, self.tokenizer.pad_id(), PaddingSide::Right);
            scores.extend(
                to_f32_vec(self.model.forward(&batch))
                    .into_iter()
                    .map(f64::from),
            );
        }
        Ok(scores)
    }
}
