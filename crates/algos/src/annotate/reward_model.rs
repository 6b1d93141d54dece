//! A sequence-classification reward model (`bpo rm train`'s, transformers', TRL's, the Hub's)
//! as an annotator.

use bpo_data::tokenize::{tokenize_prompt_content, tokenize_response};
use bpo_data::{Content, Truncation};
use bpo_model::host::to_f32_vec;
use bpo_model::{ChatMessage, PaddingSide, TokenBatch, Tokenizer, parse_device};

use crate::annotate::annotator::Annotator;
use crate::error::AlgoError;
use crate::rm::{RewardInput, RewardModel};

/// A reward model as an annotator: each (prompt, response) is read as [`RewardInput`] says
/// (`chat`: the model's chat template over `[user: prompt, assistant: response]`; `plain`: a
/// text prompt with the tokenizer's special tokens and the response ended with EOS, as
/// `bpo rm train` reads text pairs) and scored `batch_size` at a time, right-padded. A sequence
/// longer than the model's positions is truncated as `data.max_length` truncates training
/// pairs: the response keeps its start (down to one token), then the prompt keeps its end.
pub struct RewardModelAnnotator {
    model: RewardModel,
    tokenizer: Tokenizer,
    spec: String,
    input: RewardInput,
    batch_size: usize,
}

impl RewardModelAnnotator {
    /// Loads the reward model `spec` (a directory or a Hub id) on `device`; `input` decides how
    /// its inputs are formed (`auto`: what the model records, else its chat template when it
    /// has one, else plain text).
    pub fn load(
        spec: &str,
        device: &str,
        batch_size: usize,
        input: RewardInput,
    ) -> Result<Self, AlgoError> {
        Self::load_label(spec, device, batch_size, input, None)
    }

    /// [`RewardModelAnnotator::load`] with the reward read from `label` (an index or a name of
    /// `id2label`) of a model with several.
    pub fn load_label(
        spec: &str,
        device: &str,
        batch_size: usize,
        input: RewardInput,
        label: Option<&str>,
    ) -> Result<Self, AlgoError> {
        let (model, tokenizer) = RewardModel::load_label(spec, &parse_device(device)?, label)?;
        let input = match (input, model.input) {
            (RewardInput::Auto, Some(recorded)) if recorded != RewardInput::Auto => recorded,
            (RewardInput::Auto, _) if tokenizer.chat_template.is_some() => RewardInput::Chat,
            (RewardInput::Auto, _) => RewardInput::Plain,
            (chosen, _) => chosen,
        };
        Ok(RewardModelAnnotator {
            model,
            tokenizer,
            spec: spec.to_owned(),
            input,
            batch_size: batch_size.max(1),
        })
    }

    /// How this annotator forms the model's inputs (never `auto`).
    pub fn input(&self) -> RewardInput {
        self.input
    }

    /// The token ids the model scores for `prompt` and `response`.
    fn tokenize(&self, prompt: &Content, response: &str) -> Result<Vec<u32>, AlgoError> {
        let fit = Truncation {
            max_length: Some(self.model.backbone.config.max_position_embeddings),
            ..Truncation::default()
        };
        let as_turn;
        let prompt = match (self.input, prompt) {
            (RewardInput::Chat, Content::Text(text)) => {
                as_turn = Content::Chat(vec![ChatMessage::new("user", text.as_str())]);
                &as_turn
            }
            _ => prompt,
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
        format!("reward model {}", self.spec)
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
            let pad = self.model.pad_token_id.unwrap_or(self.tokenizer.pad_id());
            let batch = TokenBatch::padded(&rows, pad, PaddingSide::Right);
            scores.extend(
                to_f32_vec(self.model.forward(&batch))
                    .into_iter()
                    .map(f64::from),
            );
        }
        Ok(scores)
    }
}
