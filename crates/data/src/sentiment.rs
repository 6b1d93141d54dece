//! The embedded default task: controlled sentiment continuation on the Brown corpus
//! (`data/sentiment`, built by `scripts/build-sentiment-data.py`). Each prompt is the opening
//! words of a sentence from a review or a narrative text; `reference` is the human-written rest.

use std::io::Cursor;

use crate::error::DataError;
use crate::jsonl::{ReadOptions, Reader};
use crate::record::PromptRecord;
use crate::split::Split;

const TRAIN: &str = include_str!("../../../data/sentiment/train.jsonl");
const DEV: &str = include_str!("../../../data/sentiment/dev.jsonl");
const TEST: &str = include_str!("../../../data/sentiment/test.jsonl");

/// The prompts of one split of the sentiment task.
pub fn sentiment_prompts(split: Split) -> Result<Vec<PromptRecord>, DataError> {
    let (text, name) = match split {
        Split::Train => (TRAIN, "data/sentiment/train.jsonl"),
        Split::Dev => (DEV, "data/sentiment/dev.jsonl"),
        Split::Test => (TEST, "data/sentiment/test.jsonl"),
    };
    Reader::<PromptRecord>::from_jsonl(Cursor::new(text.as_bytes()), name, ReadOptions::default())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_splits_have_the_promised_sizes() {
        let train = sentiment_prompts(Split::Train).unwrap();
        let dev = sentiment_prompts(Split::Dev).unwrap();
        let test = sentiment_prompts(Split::Test).unwrap();
        assert!(train.len() >= 4000 && dev.len() >= 500 && test.len() >= 500);
        assert!(
            train
                .iter()
                .chain(&dev)
                .chain(&test)
                .all(|r| r.reference.is_some())
        );
        // No prompt is shared between train and test.
        let train_prompts: std::collections::HashSet<_> =
            train.iter().map(|r| r.prompt.key()).collect();
        assert!(
            test.iter()
                .all(|r| !train_prompts.contains(&r.prompt.key()))
        );
    }
}
