//! Tokenizer: a Hugging Face `tokenizers` tokenizer with the model's special tokens and chat
//! template, loaded from `tokenizer.json` or built from GGUF metadata.

use std::path::Path;

use serde_json::{Value, json};

mod gguf;
mod sentencepiece;

use crate::chat::{ChatMessage, ChatTemplate};
use crate::error::ModelError;
use crate::fsutil::write_atomic;
use crate::weights::gguf::GgufFile;

/// A tokenizer with its special tokens and chat template.
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// Beginning-of-sequence token.
    pub bos_token: Option<String>,
    /// End-of-sequence token (generation stops on it).
    pub eos_token: Option<String>,
    /// Padding token, when the model declares one.
    pub pad_token: Option<String>,
    /// The model's Jinja chat template, kept verbatim for export.
    pub chat_template: Option<String>,
    /// Tokens besides EOS that end a generation: the model's other end-of-sequence ids and the
    /// token its chat template ends an assistant turn with.
    extra_stop_ids: Vec<u32>,
    /// The last parsed chat template, shared by clones (parsing costs ~25x a rendering); used
    /// while `chat_template` and the special tokens are still the ones it was made from.
    parsed: std::sync::Arc<std::sync::Mutex<Option<ChatTemplate>>>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .field("chat_template", &self.chat_template.is_some())
            .finish()
    }
}

fn tok_err(e: impl std::fmt::Display) -> ModelError {
    ModelError::Tokenizer(e.to_string())
}

/// The `eos_token_id`s of `config.json` and `generation_config.json` in `dir` (an id or a list:
/// Llama 3 Instruct lists `<|end_of_text|>`, `<|eom_id|>` and `<|eot_id|>`).
fn declared_eos_ids(dir: &Path) -> Result<Vec<u32>, ModelError> {
    let mut ids = Vec::new();
    for name in ["config.json", "generation_config.json"] {
        let path = dir.join(name);
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let value: Value = serde_json::from_str(&text)
            .map_err(|e| ModelError::Config(format!("{}: {e}", path.display())))?;
        let bad = |v: &Value| {
            ModelError::Config(format!(
                "{}: `eos_token_id` must be a token id or a list of them, found {v}",
                path.display()
            ))
        };
        match value.get("eos_token_id") {
            None | Some(Value::Null) => {}
            Some(Value::Array(list)) => {
                for v in list {
                    ids.push(v.as_u64().ok_or_else(|| bad(v))? as u32);
                }
            }
            Some(v) => ids.push(v.as_u64().ok_or_else(|| bad(v))? as u32),
        }
    }
    Ok(ids)
}

impl Tokenizer {
    /// Wraps a `tokenizers` tokenizer with its special tokens and template; the token the
    /// template ends an assistant turn with stops generation too.
    pub fn new(
        inner: tokenizers::Tokenizer,
        bos_token: Option<String>,
        eos_token: Option<String>,
        pad_token: Option<String>,
        chat_template: Option<String>,
    ) -> Self {
        let mut tokenizer = Tokenizer {
            inner,
            bos_token,
            eos_token,
            pad_token,
            chat_template,
            extra_stop_ids: Vec::new(),
            parsed: Default::default(),
        };
        tokenizer.extra_stop_ids.extend(tokenizer.end_of_turn());
        tokenizer
    }

    /// Adds end-of-sequence ids the model declares besides its tokenizer's EOS (the list of
    /// `generation_config.json`'s `eos_token_id`, llama.cpp's `eot_token_id`).
    pub fn with_stop_ids(mut self, ids: impl IntoIterator<Item = u32>) -> Self {
        self.extra_stop_ids.extend(ids);
        self
    }

    /// Every token that ends a generation: EOS, the model's other end-of-sequence ids, and the
    /// template's end of an assistant turn (Llama 3 Instruct's `<|eot_id|>`, Gemma's
    /// `<end_of_turn>`), without repeats.
    pub fn stop_ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self.eos_id().into_iter().collect();
        for &id in &self.extra_stop_ids {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        ids
    }

    /// The special token that the chat template writes right after an assistant message's
    /// text, if any: an added token marked special whose text starts what follows.
    fn end_of_turn(&self) -> Option<u32> {
        const PROBE: &str = "bpo probes the end of a turn";
        let messages = [
            ChatMessage::new("user", "Hi"),
            ChatMessage::new("assistant", PROBE),
        ];
        let text = self.apply_chat_template(&messages, false).ok()?;
        let rest = &text[text.find(PROBE)? + PROBE.len()..];
        self.inner
            .get_added_tokens_decoder()
            .into_iter()
            .filter(|(_, token)| token.special && !token.content.is_empty())
            .filter(|(_, token)| rest.starts_with(&token.content))
            .max_by_key(|(_, token)| token.content.len())
            .map(|(id, _)| id)
    }

    /// Builds the tokenizer stored in GGUF metadata (`tokenizer.ggml.*`): byte-level BPE, or a
    /// SentencePiece vocabulary (`gguf.rs`, `sentencepiece.rs`).
    pub fn from_gguf(file: &GgufFile) -> Result<Self, ModelError> {
        gguf::from_gguf(file)
    }

    /// Loads `tokenizer.json` and, when present, the special tokens of `tokenizer_config.json`
    /// in the same directory and the chat template: `chat_template.jinja` (where transformers 5
    /// writes it), else `tokenizer_config.json`'s `chat_template` (a string, or the list of
    /// named templates, whose `default` is taken).
    pub fn from_dir(dir: &Path) -> Result<Self, ModelError> {
        let path = dir.join("tokenizer.json");
        let inner = tokenizers::Tokenizer::from_file(&path)
            .map_err(|e| ModelError::Tokenizer(format!("{}: {e}", path.display())))?;
        let config_path = dir.join("tokenizer_config.json");
        let config: Value = match std::fs::read_to_string(&config_path) {
            Ok(text) => serde_json::from_str(&text)
                .map_err(|e| ModelError::Tokenizer(format!("{}: {e}", config_path.display())))?,
            Err(_) => Value::Null,
        };
        let token = |key: &str| match config.get(key) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Object(o)) => o.get("content").and_then(Value::as_str).map(str::to_owned),
            _ => None,
        };
        let jinja = dir.join("chat_template.jinja");
        let from_file = match std::fs::read_to_string(&jinja) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(ModelError::io(&jinja, e)),
        };
        let template = from_file.or_else(|| match config.get("chat_template") {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Array(list)) => list
                .iter()
                .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
                .and_then(|t| t.get("template"))
                .and_then(Value::as_str)
                .map(str::to_owned),
            _ => None,
        });
        Ok(Tokenizer::new(
            inner,
            token("bos_token"),
            token("eos_token"),
            token("pad_token"),
            template,
        )
        .with_stop_ids(declared_eos_ids(dir)?))
    }

    /// Writes `tokenizer.json` and `tokenizer_config.json` into `dir`.
    pub fn save(&self, dir: &Path) -> Result<(), ModelError> {
        let json = self.inner.to_string(false).map_err(tok_err)?;
        write_atomic(&dir.join("tokenizer.json"), json.as_bytes())?;
        let config = json!({
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": self.bos_token,
            "eos_token": self.eos_token,
            "pad_token": self.pad_token,
            "chat_template": self.chat_template,
            "clean_up_tokenization_spaces": false,
        });
        let text = serde_json::to_string_pretty(&config).map_err(tok_err)?;
        write_atomic(&dir.join("tokenizer_config.json"), text.as_bytes())
    }

    /// Number of tokens, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The id of a token string.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The string of a token id.
    pub fn token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// End-of-sequence id.
    pub fn eos_id(&self) -> Option<u32> {
        self.eos_token.as_deref().and_then(|t| self.token_id(t))
    }

    /// Beginning-of-sequence id.
    pub fn bos_id(&self) -> Option<u32> {
        self.bos_token.as_deref().and_then(|t| self.token_id(t))
    }

    /// Id used to pad batches: the pad token, else EOS, else 0 (padding is always masked).
    pub fn pad_id(&self) -> u32 {
        self.pad_token
            .as_deref()
            .and_then(|t| self.token_id(t))
            .or(self.eos_id())
            .unwrap_or(0)
    }

    /// Token ids of `text`; `add_special` lets the post-processor add BOS where the model wants it.
    pub fn encode(&self, text: &str, add_special: bool) -> Result<Vec<u32>, ModelError> {
        Ok(self
            .inner
            .encode(text, add_special)
            .map_err(tok_err)?
            .get_ids()
            .to_vec())
    }

    /// Token ids and token strings of `text`.
    pub fn encode_with_tokens(
        &self,
        text: &str,
        add_special: bool,
    ) -> Result<(Vec<u32>, Vec<String>), ModelError> {
        let enc = self.inner.encode(text, add_special).map_err(tok_err)?;
        Ok((enc.get_ids().to_vec(), enc.get_tokens().to_vec()))
    }

    /// Text of `ids`; special tokens are dropped when `skip_special`.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String, ModelError> {
        self.inner.decode(ids, skip_special).map_err(tok_err)
    }

    /// The model's chat template with its special tokens (parsed once, then reused).
    pub fn chat_template(&self) -> Result<ChatTemplate, ModelError> {
        let source = self
            .chat_template
            .as_deref()
            .ok_or_else(|| ModelError::Tokenizer("the model declares no chat template".into()))?;
        let tokens: Vec<(String, String)> = [
            ("bos_token", &self.bos_token),
            ("eos_token", &self.eos_token),
            ("pad_token", &self.pad_token),
        ]
        .into_iter()
        .filter_map(|(name, token)| Some((name.to_owned(), token.clone()?)))
        .collect();
        let mut parsed = self.parsed.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(template) = parsed.as_ref().filter(|t| t.is_for(source, &tokens)) {
            return Ok(template.clone());
        }
        let template = ChatTemplate::new(source, tokens)?;
        *parsed = Some(template.clone());
        Ok(template)
    }

    /// Renders a conversation with the model's chat template.
    pub fn apply_chat_template(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, ModelError> {
        self.chat_template()?
            .render(messages, add_generation_prompt, &Value::Null)
    }

    /// The prompt text for `prompt`: rendered as one user turn when `chat`, verbatim otherwise.
    pub fn prompt_text(&self, prompt: &str, chat: bool) -> Result<String, ModelError> {
        if chat {
            self.apply_chat_template(&[ChatMessage::new("user", prompt)], true)
        } else {
            Ok(prompt.to_owned())
        }
    }

    /// Tokenises a prompt for generation or scoring (see [`Tokenizer::prompt_text`]).
    pub fn encode_prompt(&self, prompt: &str, chat: bool) -> Result<Vec<u32>, ModelError> {
        let text = self.prompt_text(prompt, chat)?;
        // A chat template writes its own special tokens.
        self.encode(&text, !chat)
    }
}
