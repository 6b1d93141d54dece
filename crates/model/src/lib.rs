//! `bpo-model`: decoder-only transformers (Llama family and GPT-2) on Burn 0.22, with weights
//! from GGUF and Hugging Face safetensors, the `tokenizers` tokenizer and chat templates,
//! KV-cached batched generation that records behavior log-probs, and response scoring.

pub mod arch;
pub mod attention;
pub mod batch;
pub mod block;
pub mod cache;
pub mod chat;
pub mod config;
pub mod decoding;
pub mod device;
pub mod error;
pub mod family;
pub mod fetch;
pub mod flex;
pub mod fsutil;
pub mod generate;
pub mod host;
pub mod hub;
pub mod linear;
pub mod logprobs;
pub mod mask;
pub mod memory;
pub mod mlp;
pub mod norm;
pub mod peft;
mod recompute;
pub mod rope;
pub mod sampling;
pub mod score;
pub mod seed;
pub mod spec;
pub mod tokenizer;
pub mod transformer;
pub mod weights;

pub use batch::{PaddingSide, TokenBatch};
pub use burn;
pub use cache::KvCache;
pub use chat::{ChatMessage, ChatTemplate};
pub use config::{ModelConfig, ModelType};
pub use device::parse_device;
pub use error::ModelError;
pub use generate::{FinishReason, Generation, Generator, generate, generate_ids};
pub use sampling::SamplingConfig;
pub use score::{ScoredResponse, SequenceBatch, response_logprobs, score, shared_prompt_logprobs};
pub use spec::{ModelSource, load, resolve};
pub use tokenizer::Tokenizer;
pub use transformer::Transformer;
