//! Records to tokens: prompt and responses tokenised separately (as TRL does), responses ended
//! with the end-of-sequence token, and explicit truncation policies.

use bpo_model::Tokenizer;

use crate::error::DataError;
use crate::record::{Content, PreferencePair, PromptRecord};

/// Length limits. The prompt keeps its end (the cue right before the response matters most);
/// responses keep their start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Truncation {
    /// Most prompt tokens (the earliest are dropped).
    pub max_prompt_tokens: Option<usize>,
    /// Most tokens per response (the latest are dropped).
    pub max_response_tokens: Option<usize>,
    /// Most tokens of prompt plus response: responses are cut first, and the prompt (keeping
    /// its end) only when it alone leaves no room for one response token.
    pub max_length: Option<usize>,
}

impl Truncation {
    /// Applies the prompt limit; returns whether anything was cut.
    pub fn prompt(&self, prompt: &mut Vec<u32>) -> bool {
        let mut cut = keep_end(prompt, self.max_prompt_tokens);
        if let Some(max) = self.max_length {
            cut |= keep_end(prompt, Some(max.saturating_sub(1).max(1)));
        }
        cut
    }

    /// Applies the response limits given the (already truncated) prompt length; cuts `logps`
    /// alongside when given.
    pub fn response(
        &self,
        prompt_len: usize,
        response: &mut Vec<u32>,
        logps: Option<&mut Vec<f32>>,
    ) -> bool {
        let budget = match (self.max_response_tokens, self.max_length) {
            (Some(r), Some(l)) => Some(r.min(l.saturating_sub(prompt_len).max(1))),
            (Some(r), None) => Some(r),
            (None, Some(l)) => Some(l.saturating_sub(prompt_len).max(1)),
            (None, None) => None,
        };
        match budget {
            Some(b) if response.len() > b => {
                response.truncate(b);
                if let Some(l) = logps {
                    l.truncate(b);
                }
                true
            }
            _ => false,
        }
    }
}

fn keep_end(tokens: &mut Vec<u32>, max: Option<usize>) -> bool {
    match max {
        Some(max) if tokens.len() > max => {
            tokens.drain(..tokens.len() - max);
            true
        }
        _ => false,
    }
}

/// A pair as token ids, with behavior log-probs when the pair carries them.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenizedPair {
    /// Prompt tokens.
    pub prompt: Vec<u32>,
    /// Chosen response tokens.
    pub chosen: Vec<u32>,
    /// Rejected response tokens.
    pub rejected: Vec<u32>,
    /// Behavior log-probs of the chosen tokens.
    pub chosen_logps: Option<Vec<f32>>,
    /// Behavior log-probs of the rejected tokens.
    pub rejected_logps: Option<Vec<f32>>,
    /// Whether truncation cut anything.
    pub truncated: bool,
}

impl TokenizedPair {
    /// The length of its longer sequence: the prompt and the longer response (what a batch
    /// pads to, and what must fit the model's positions).
    pub fn longest(&self) -> usize {
        self.prompt.len() + self.chosen.len().max(self.rejected.len())
    }
}

/// Prompt tokens: the text with the tokenizer's special tokens (e.g. BOS), or the conversation
/// rendered with the chat template.
pub fn tokenize_prompt_content(
    prompt: &Content,
    tokenizer: &Tokenizer,
) -> Result<Vec<u32>, DataError> {
    let text = prompt.render_prompt(tokenizer)?;
    let ids = tokenizer.encode(&text, matches!(prompt, Content::Text(_)))?;
    if ids.is_empty() {
        return Err(DataError::Prepare(
            "prompt is empty after tokenisation".into(),
        ));
    }
    Ok(ids)
}

/// Response tokens to `prompt`. A conversational response to a conversational prompt is split
/// off as TRL splits it: what the chat template adds to the prompt (rendered with the
/// generation prompt) when the response's messages follow, up to and including the token that
/// ends the turn (the first stop token: `<|im_end|>`, `<|eot_id|>`, ...). Otherwise, and when
/// the continuation has no stop token, the response's text ended with EOS.
pub fn tokenize_response(
    prompt: &Content,
    response: &Content,
    tokenizer: &Tokenizer,
) -> Result<Vec<u32>, DataError> {
    let continuation = match (prompt, response) {
        (Content::Chat(prompt), Content::Chat(messages)) => {
            let head = tokenizer.apply_chat_template(prompt, true)?;
            let whole =
                tokenizer.apply_chat_template(&[prompt.as_slice(), messages].concat(), false)?;
            let rest = whole.strip_prefix(head.as_str()).ok_or_else(|| {
                DataError::Prepare(
                    "the chat template renders the prompt (with the generation prompt) as no \
                     prefix of the whole conversation: the response cannot be split off as \
                     TRL splits it"
                        .into(),
                )
            })?;
            let mut ids = tokenizer.encode(rest, false)?;
            let stops = tokenizer.stop_ids();
            if let Some(end) = ids.iter().position(|id| stops.contains(id)) {
                ids.truncate(end + 1);
                return Ok(ids);
            }
            ids
        }
        _ => tokenizer.encode(&response.render_response(), false)?,
    };
    let mut ids = continuation;
    ids.extend(tokenizer.eos_id());
    Ok(ids)
}

/// Tokenises a prompt record, truncated to `truncation`'s prompt limits.
pub fn tokenize_prompt(
    record: &PromptRecord,
    tokenizer: &Tokenizer,
    truncation: &Truncation,
) -> Result<(Vec<u32>, bool), DataError> {
    let mut ids = tokenize_prompt_content(&record.prompt, tokenizer)?;
    let cut = truncation.prompt(&mut ids);
    Ok((ids, cut))
}

/// Tokenises a pair. Token ids recorded in `meta` (online samples) are used as they are, so a
/// pair file replays exactly; otherwise the text is tokenised.
pub fn tokenize_pair(
    pair: &PreferencePair,
    tokenizer: &Tokenizer,
    truncation: &Truncation,
) -> Result<TokenizedPair, DataError> {
    let meta = &pair.meta;
    let mut prompt = match &meta.prompt_ids {
        Some(ids) => ids.clone(),
        None => tokenize_prompt_content(&pair.prompt, tokenizer)?,
    };
    let mut chosen = match &meta.chosen_ids {
        Some(ids) => ids.clone(),
        None => tokenize_response(&pair.prompt, &pair.chosen, tokenizer)?,
    };
    let mut rejected = match &meta.rejected_ids {
        Some(ids) => ids.clone(),
        None => tokenize_response(&pair.prompt, &pair.rejected, tokenizer)?,
    };
    // Recorded log-probs belong to recorded ids only.
    let mut chosen_logps = meta.chosen_ids.as_ref().and(meta.chosen_logps.clone());
    let mut rejected_logps = meta.rejected_ids.as_ref().and(meta.rejected_logps.clone());
    let mut truncated = truncation.prompt(&mut prompt);
    truncated |= truncation.response(prompt.len(), &mut chosen, chosen_logps.as_mut());
    truncated |= truncation.response(prompt.len(), &mut rejected, rejected_logps.as_mut());
    if chosen.is_empty() || rejected.is_empty() {
        return Err(DataError::Prepare(
            "a response is empty after tokenisation".into(),
        ));
    }
    if prompt.is_empty() {
        return Err(DataError::Prepare("prompt is empty".into()));
    }
    Ok(TokenizedPair {
        prompt,
        chosen,
        rejected,
        chosen_logps,
        rejected_logps,
        truncated,
    })
}

/// Tokenises every pair; returns them with the number of records truncation cut.
pub fn tokenize_pairs(
    pairs: &[PreferencePair],
    tokenizer: &Tokenizer,
    truncation: &Truncation,
) -> Result<(Vec<TokenizedPair>, usize), DataError> {
    let tokenized = pairs
        .iter()
        .enumerate()
        .map(|(i, p)| {
            tokenize_pair(p, tokenizer, truncation)
                .map_err(|e| DataError::Prepare(format!("pair {i}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let truncated = tokenized.iter().filter(|t| t.truncated).count();
    Ok((tokenized, truncated))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_keeps_its_end_response_its_start() {
        let t = Truncation {
            max_prompt_tokens: Some(3),
            max_response_tokens: Some(2),
            max_length: None,
        };
        let mut p = vec![1, 2, 3, 4, 5];
        assert!(t.prompt(&mut p));
        assert_eq!(p, vec![3, 4, 5]);
        let mut r = vec![6, 7, 8];
        let mut l = vec![-1.0, -2.0, -3.0];
        assert!(t.response(p.len(), &mut r, Some(&mut l)));
        assert_eq!((r, l), (vec![6, 7], vec![-1.0, -2.0]));
        let mut short = vec![9];
        assert!(!t.response(3, &mut short, None));
    }

    #[test]
    fn max_length_cuts_responses_first_then_the_prompt() {
        let t = Truncation {
            max_prompt_tokens: None,
            max_response_tokens: None,
            max_length: Some(6),
        };
        let mut p = vec![1, 2, 3, 4];
        assert!(!t.prompt(&mut p));
        let mut r = vec![5, 6, 7, 8];
        assert!(t.response(p.len(), &mut r, None));
        assert_eq!(r, vec![5, 6]);
        let mut long_prompt: Vec<u32> = (0..10).collect();
        assert!(t.prompt(&mut long_prompt));
        assert_eq!(long_prompt, vec![5, 6, 7, 8, 9]);
        let mut r = vec![1, 2, 3];
        t.response(long_prompt.len(), &mut r, None);
        assert_eq!(r, vec![1]);
    }
}
