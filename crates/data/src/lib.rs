//! `bpo-data`: preference pairs and prompts in TRL's formats (JSONL and Parquet streamed, JSON
//! arrays, Hub datasets; implicit prompts, conversational messages), tokenisation with explicit
//! truncation, pair batches with response masks, length-bucketed seeded batching, stable
//! splits, and the embedded sentiment task.

pub mod batch;
pub mod convert;
pub mod error;
pub mod hub;
pub mod jsonl;
pub mod layout;
mod parquet_rows;
pub mod parquet_writer;
pub mod record;
pub mod sentiment;
pub mod source;
pub mod split;
pub mod stats;
pub mod tokenize;

pub use batch::{PairBatch, bucketed_batches, prompt_batch};
pub use error::{DataError, FieldError, Location};
pub use jsonl::{ReadOptions, ReadResult, Reader, Skipped, Writer, read_all, write_all};
pub use record::{Content, PairMeta, PreferencePair, PromptRecord, Record};
pub use sentiment::sentiment_prompts;
pub use source::resolve_files;
pub use split::{Split, SplitFractions, split_of};
pub use stats::{Stats, stats};
pub use tokenize::{TokenizedPair, Truncation, tokenize_pair, tokenize_pairs, tokenize_prompt};
