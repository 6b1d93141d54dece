//! A reward model written by `bpo rm train`, as an annotator.

use std::path::{Path, PathBuf};

use bpo_data::Content;
use bpo_data::tokenize::{tokenize_prompt_content, tokenize_response};
use bpo_model::host::to_f32_vec;
use bpo_model::{PaddingSide, TokenBatch, Tokenizer, parse_device};

use crate::annotate::annotator::Annotator;
use crate::error::AlgoError;
use crate::rm::RewardModel;

/// A reward model as an annotator: the prompt text and response are tokenised as in training
/// (the response ends with EOS) and scored `batch_size` at a time.
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
}

impl Annotator for RewardModelAnnotator {
    fn name(&self) -> String {
        format!("reward model {}", self.dir.display())
    }

    fn score(&mut self, items: &[(&str, &str)]) -> Result<Vec<f64>, AlgoError> {
        let mut scores = Vec::with_capacity(items.len());
        for chunk in items.chunks(self.batch_size) {
            let mut rows = Vec::with_capacity(chunk.len());
            for (prompt, response) in chunk {
                let mut ids = tokenize_prompt_content(&Content::text(*prompt), &self.tokenizer)?;
                ids.extend(tokenize_response(
                    &Content::text(*response),
                    &self.tokenizer,
                )?);
                rows.push(ids);
            }
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
