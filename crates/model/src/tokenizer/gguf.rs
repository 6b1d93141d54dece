//! Tokenizers stored in GGUF metadata (`tokenizer.ggml.*`), built as transformers builds them
//! from the same file: byte-level BPE with its merges (`gpt2`), and SentencePiece vocabularies
//! (`llama`; `sentencepiece.rs`).

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, SplitDelimiterBehavior};

use super::sentencepiece::{CONTROL, Flavour, USER_DEFINED, sentencepiece};
use super::{Tokenizer, tok_err};
use crate::error::ModelError;
use crate::weights::gguf::{GgufFile, MetaValue};

/// Regexes of the pre-tokenizers llama.cpp names in `tokenizer.ggml.pre`.
const LLAMA3_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

fn pre_tokenizer(name: &str) -> Result<PreTokenizerWrapper, ModelError> {
    let gpt2 = || PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, true));
    let split = |regex: &str| -> Result<PreTokenizerWrapper, ModelError> {
        let split = Split::new(
            SplitPattern::Regex(regex.to_owned()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map_err(tok_err)?;
        Ok(PreTokenizerWrapper::Sequence(Sequence::new(vec![
            PreTokenizerWrapper::Split(split),
            PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, false)),
        ])))
    };
    match name {
        "default" | "gpt2" | "gpt-2" => Ok(gpt2()),
        // GPT-2 regex after splitting every digit on its own.
        "smollm" | "starcoder" | "refact" | "codeshell" => {
            Ok(PreTokenizerWrapper::Sequence(Sequence::new(vec![
                PreTokenizerWrapper::Digits(Digits::new(true)),
                gpt2(),
            ])))
        }
        "llama-bpe" | "llama3" | "smaug-bpe" => split(LLAMA3_REGEX),
        "qwen2" | "deepseek-r1-qwen" => split(QWEN2_REGEX),
        other => Err(ModelError::Tokenizer(format!(
            "GGUF pre-tokenizer `{other}` is not supported (default, gpt2, smollm, starcoder, llama-bpe, qwen2 are)"
        ))),
    }
}

fn string_array(file: &GgufFile, key: &str) -> Result<Vec<String>, ModelError> {
    match file.meta(key) {
        Some(MetaValue::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| ModelError::Tokenizer(format!("`{key}` holds a non-string")))
            })
            .collect(),
        Some(_) => Err(ModelError::Tokenizer(format!("`{key}` is not an array"))),
        None => Err(ModelError::Tokenizer(format!(
            "GGUF metadata lacks `{key}`"
        ))),
    }
}

/// The numbers of `key` (a token's score), one per token; zeros where the file has none.
fn numbers(file: &GgufFile, key: &str, count: usize) -> Result<Vec<f64>, ModelError> {
    match file.meta(key) {
        None => Ok(vec![0.0; count]),
        Some(MetaValue::Array(items)) if items.len() == count => items
            .iter()
            .map(|v| {
                v.as_f64()
                    .ok_or_else(|| ModelError::Tokenizer(format!("`{key}` holds a non-number")))
            })
            .collect(),
        Some(_) => Err(ModelError::Tokenizer(format!(
            "`{key}` is not an array of {count} numbers, one per token"
        ))),
    }
}

/// The type of every token (llama.cpp's `NORMAL` = 1 where the file has none).
fn token_types(file: &GgufFile, count: usize) -> Vec<i64> {
    match file.meta("tokenizer.ggml.token_type") {
        Some(MetaValue::Array(items)) => items
            .iter()
            .map(|v| match v {
                MetaValue::I64(x) => *x,
                MetaValue::U64(x) => *x as i64,
                _ => 1,
            })
            .collect(),
        _ => vec![1; count],
    }
}

/// Builds the tokenizer a GGUF file describes.
pub(super) fn from_gguf(file: &GgufFile) -> Result<Tokenizer, ModelError> {
    let model = file
        .meta("tokenizer.ggml.model")
        .and_then(MetaValue::as_str)
        .unwrap_or("missing");
    let arch = file
        .meta("general.architecture")
        .and_then(MetaValue::as_str)
        .unwrap_or_default();
    let tokens = string_array(file, "tokenizer.ggml.tokens")?;
    let types = token_types(file, tokens.len());
    let (mut inner, add_bos_default) = match (model, arch) {
        ("gpt2", _) => (byte_level(file, &tokens, &types)?, false),
        ("llama", _) => {
            let scores = numbers(file, "tokenizer.ggml.scores", tokens.len())?;
            let unk = file
                .meta("tokenizer.ggml.unknown_token_id")
                .and_then(MetaValue::as_u64)
                .and_then(|id| tokens.get(id as usize))
                .cloned()
                .unwrap_or_else(|| "<unk>".into());
            let flavour = Flavour::of(arch);
            (sentencepiece(&tokens, &scores, &types, unk, flavour)?, true)
        }
        (other, _) => {
            return Err(ModelError::Tokenizer(format!(
                "GGUF tokenizer model `{other}` is not supported (byte-level BPE `gpt2` and \
                 SentencePiece `llama` are)"
            )));
        }
    };
    let token = |key: &str| -> Option<String> {
        let id = file.meta(key)?.as_u64()?;
        tokens.get(id as usize).cloned()
    };
    let flag = |key: &str, default: bool| match file.meta(key) {
        Some(MetaValue::Bool(set)) => *set,
        _ => default,
    };
    let bos = token("tokenizer.ggml.bos_token_id");
    let eos = token("tokenizer.ggml.eos_token_id");
    // llama.cpp adds BOS to a SentencePiece vocabulary that does not say otherwise.
    let add_bos = flag("tokenizer.ggml.add_bos_token", add_bos_default);
    let add_eos = flag("tokenizer.ggml.add_eos_token", false);
    let first = bos.as_ref().filter(|_| add_bos);
    let last = eos.as_ref().filter(|_| add_eos);
    if first.is_some() || last.is_some() {
        let single = [
            first.map(String::as_str),
            Some("$A"),
            last.map(String::as_str),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
        let specials: Vec<(String, u32)> = first
            .into_iter()
            .chain(last)
            .map(|t| (t.clone(), inner.token_to_id(t).unwrap_or(0)))
            .collect();
        let post = TemplateProcessing::builder()
            .try_single(single)
            .map_err(tok_err)?
            .special_tokens(specials)
            .build()
            .map_err(tok_err)?;
        inner.with_post_processor(Some(post));
    }
    let template = file
        .meta("tokenizer.chat_template")
        .and_then(MetaValue::as_str)
        .map(str::to_owned);
    let end_of_turn = file
        .meta("tokenizer.ggml.eot_token_id")
        .and_then(MetaValue::as_u64);
    Ok(Tokenizer::new(
        inner,
        bos,
        eos,
        token("tokenizer.ggml.padding_token_id"),
        template,
    )
    .with_stop_ids(end_of_turn.map(|id| id as u32)))
}

/// Byte-level BPE with the file's merges; control and user-defined tokens matched whole.
fn byte_level(
    file: &GgufFile,
    tokens: &[String],
    types: &[i64],
) -> Result<tokenizers::Tokenizer, ModelError> {
    let merges = string_array(file, "tokenizer.ggml.merges")?
        .into_iter()
        .map(|m| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_owned(), b.to_owned()))
                .ok_or_else(|| ModelError::Tokenizer(format!("malformed merge `{m}`")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let vocab: Vocab = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect();
    let pre = file
        .meta("tokenizer.ggml.pre")
        .and_then(MetaValue::as_str)
        .unwrap_or("default");
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .ignore_merges(matches!(pre, "llama-bpe" | "llama3"))
        .build()
        .map_err(tok_err)?;
    let mut inner = tokenizers::Tokenizer::new(bpe);
    inner.with_pre_tokenizer(Some(pre_tokenizer(pre)?));
    inner.with_decoder(Some(ByteLevelDecoder::default()));
    let whole: Vec<AddedToken> = tokens
        .iter()
        .zip(types)
        .filter(|(_, t)| matches!(**t, CONTROL | USER_DEFINED))
        .map(|(tok, t)| AddedToken::from(tok.clone(), *t == CONTROL))
        .collect();
    inner.add_special_tokens(whole).map_err(tok_err)?;
    Ok(inner)
}
