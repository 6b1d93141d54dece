//! SentencePiece vocabularies as GGUF stores them (tokens, scores and types, no merges), rebuilt
//! as transformers 5.24 rebuilds them from the same file (`integrations/gguf/
//! gguf_tokenizer_mapping.py`): BPE with byte fallback over the vocabulary, merges recovered
//! from it, and the text handling of the model's family ([`Flavour`]).

use std::collections::HashMap;

use tokenizers::decoders::DecoderWrapper;
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::normalizers::NormalizerWrapper;
use tokenizers::normalizers::prepend::Prepend;
use tokenizers::normalizers::replace::Replace;
use tokenizers::normalizers::utils::Sequence as NormalizerSequence;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, SplitDelimiterBehavior};

use super::tok_err;
use crate::error::ModelError;

/// llama.cpp's type of the unknown token (special in transformers, as its `unk_token`).
const UNKNOWN: i64 = 2;
/// llama.cpp's type of a special token, matched whole in the text.
pub(super) const CONTROL: i64 = 3;
/// llama.cpp's type of a token added by the model's authors, matched whole, not special.
pub(super) const USER_DEFINED: i64 = 4;

/// SentencePiece's word-boundary mark, which stands for a space.
const SPACE_MARK: &str = "\u{2581}";

/// How a family's SentencePiece tokenizer treats text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Flavour {
    /// Llama 2, Mistral, TinyLlama (`LlamaTokenizer`): merges by score, a `▁` before the first
    /// word (`Metaspace`), the decoder strips it.
    Llama,
    /// Phi-3: Llama's, with the `▁` prepended by the normaliser (so a text that starts with a
    /// space gets two).
    Phi3,
    /// Gemma (`GemmaTokenizer`): merges by the vocabulary's order (Gemma's scores do not follow
    /// its merge order), spaces become `▁` with none prepended, runs of spaces stored as spaces
    /// are respelled with `▁`.
    Gemma,
}

impl Flavour {
    /// The flavour of a GGUF `general.architecture`, as transformers picks it.
    pub(super) fn of(arch: &str) -> Self {
        match arch {
            "gemma" | "gemma2" | "gemma3" => Flavour::Gemma,
            "phi3" => Flavour::Phi3,
            _ => Flavour::Llama,
        }
    }
}

/// The tokenizer of a SentencePiece vocabulary: `tokens` with their `scores` and llama.cpp
/// `types`, `unk` the unknown token (Gemma's BPE falls back to it).
pub(super) fn sentencepiece(
    tokens: &[String],
    scores: &[f64],
    types: &[i64],
    unk: String,
    flavour: Flavour,
) -> Result<tokenizers::Tokenizer, ModelError> {
    let spelled: Vec<String> = match flavour {
        Flavour::Gemma => tokens
            .iter()
            // transformers: a token with a space and nothing but whitespace.
            .map(
                |t| match t.contains(' ') && t.chars().all(char::is_whitespace) {
                    true => SPACE_MARK.repeat(t.chars().count()),
                    false => t.clone(),
                },
            )
            .collect(),
        Flavour::Llama | Flavour::Phi3 => tokens.to_vec(),
    };
    let vocab: Vocab = spelled
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect();
    let merges = match flavour {
        Flavour::Gemma => recovered_merges(&spelled, &vocab, |i| -(i as f64)),
        Flavour::Llama | Flavour::Phi3 => {
            recovered_merges(&spelled, &vocab, |i| scores.get(i).copied().unwrap_or(0.0))
        }
    };
    let mut bpe = BPE::builder().vocab_and_merges(vocab.clone(), merges);
    // transformers' `LlamaTokenizer` gives its BPE no unknown token (byte fallback covers all).
    if flavour == Flavour::Gemma {
        bpe = bpe.unk_token(unk);
    }
    let bpe = bpe
        .fuse_unk(true)
        .byte_fallback(true)
        .build()
        .map_err(tok_err)?;
    let mut inner = tokenizers::Tokenizer::new(bpe);
    let spaces = || Replace::new(" ", SPACE_MARK).map_err(tok_err);
    let mut decoders = vec![
        DecoderWrapper::Replace(Replace::new(SPACE_MARK, " ").map_err(tok_err)?),
        DecoderWrapper::ByteFallback(ByteFallback::new()),
        DecoderWrapper::Fuse(Fuse::new()),
    ];
    match flavour {
        Flavour::Gemma => {
            inner.with_normalizer(Some(spaces()?)).map_err(tok_err)?;
            let split = Split::new(
                SplitPattern::String(" ".into()),
                SplitDelimiterBehavior::MergedWithPrevious,
                false,
            )
            .map_err(tok_err)?;
            inner.with_pre_tokenizer(Some(PreTokenizerWrapper::Split(split)));
        }
        Flavour::Llama => {
            let metaspace = Metaspace::new('\u{2581}', PrependScheme::First, false);
            inner.with_pre_tokenizer(Some(PreTokenizerWrapper::Metaspace(metaspace)));
            decoders.push(DecoderWrapper::Strip(Strip::new(' ', 1, 0)));
        }
        Flavour::Phi3 => {
            let normalizer = NormalizerSequence::new(vec![
                NormalizerWrapper::Prepend(Prepend::new(SPACE_MARK.into())),
                NormalizerWrapper::Replace(spaces()?),
            ]);
            inner.with_normalizer(Some(normalizer)).map_err(tok_err)?;
            decoders.push(DecoderWrapper::Strip(Strip::new(' ', 1, 0)));
        }
    }
    inner.with_decoder(Some(DecoderSequence::new(decoders)));
    let of_type = |wanted: &'static [i64]| {
        tokens
            .iter()
            .zip(types)
            .filter(move |(_, t)| wanted.contains(t))
            .map(|(tok, _)| tok)
    };
    let control: Vec<AddedToken> = of_type(&[UNKNOWN, CONTROL])
        .map(|t| AddedToken::from(t.clone(), true).normalized(false))
        .collect();
    inner.add_special_tokens(control).map_err(tok_err)?;
    // A user-defined token is added only under a spelling the vocabulary has (Gemma's runs of
    // spaces were respelled above), as transformers does.
    let user: Vec<AddedToken> = of_type(&[USER_DEFINED])
        .filter(|t| vocab.contains_key(*t))
        .map(|t| AddedToken::from(t.clone(), false).normalized(false))
        .collect();
    inner.add_tokens(user).map_err(tok_err)?;
    Ok(inner)
}

/// Merges for a vocabulary that lists none (transformers' `generate_merges`): every token
/// contributes each split of it into two tokens of the vocabulary, the splits of one token in
/// vocabulary order; merges rank by the `rank` of the token they make (higher first), then the
/// longer left part, then the longer right part.
fn recovered_merges(
    tokens: &[String],
    vocab: &Vocab,
    rank: impl Fn(usize) -> f64,
) -> Vec<(String, String)> {
    // Python's dict keeps a repeated token at its first place with its last index.
    let mut last = HashMap::new();
    let mut order: Vec<&String> = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        if last.insert(t, i).is_none() {
            order.push(t);
        }
    }
    let mut merges: Vec<(f64, &str, &str)> = Vec::new();
    for token in order {
        let mut local: Vec<(&str, &str)> = token
            .char_indices()
            .skip(1)
            .map(|(at, _)| token.split_at(at))
            .filter(|(l, r)| vocab.contains_key(*l) && vocab.contains_key(*r))
            .collect();
        local.sort_by_key(|(l, r)| (vocab[*l], vocab[*r]));
        let key = rank(last[token]);
        merges.extend(local.into_iter().map(|(l, r)| (key, l, r)));
    }
    let chars = |s: &str| s.chars().count();
    merges.sort_by(|a, b| {
        (b.0.partial_cmp(&a.0).unwrap_or(std::cmp::Ordering::Equal))
            .then(chars(b.1).cmp(&chars(a.1)))
            .then(chars(b.2).cmp(&chars(a.2)))
    });
    merges
        .into_iter()
        .map(|(_, l, r)| (l.to_owned(), r.to_owned()))
        .collect()
}
