//! Fixtures for bpo's tests, examples and benches that must not download anything: a small
//! byte-level BPE tokenizer with ChatML special tokens (built through the GGUF metadata path),
//! tiny randomly initialised models, a GGUF writer and a Hugging Face Hub stand-in on 127.0.0.1.
//! A dev-dependency only: nothing here is part of bpo's API.

mod gguf_writer;
mod hub_server;
mod judge_server;
mod local_server;

use std::path::Path;

use bpo_model::burn::tensor::Device;
use bpo_model::config::LayerType;
use bpo_model::host::to_f32_vec;
use bpo_model::spec::save_hf;
use bpo_model::weights::gguf::{GgufFile, MetaValue};
use bpo_model::{ModelConfig, ModelType, PaddingSide, TokenBatch, Tokenizer, Transformer};
pub use gguf_writer::GgufWriter;
pub use hub_server::{Access, HubServer, LoggedRequest};
pub use judge_server::{Fault, JudgeRequest, JudgeServer};

/// SmolLM2's chat template (ChatML with a default system prompt).
pub const SMOLLM2_CHAT_TEMPLATE: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/// Common English pieces merged by the fixture tokenizer, in merge order.
const MERGES: &[(&str, &str)] = &[
    ("Ġ", "t"),
    ("h", "e"),
    ("Ġt", "he"),
    ("i", "n"),
    ("Ġ", "a"),
    ("e", "r"),
    ("o", "n"),
    ("Ġ", "s"),
    ("e", "d"),
    ("in", "g"),
    ("Ġ", "w"),
    ("o", "u"),
    ("Ġ", "g"),
    ("o", "o"),
    ("Ġg", "oo"),
    ("Ġgoo", "d"),
];

/// Special tokens of the fixture tokenizer (ids 0, 1, 2 as in SmolLM2).
pub const SPECIAL_TOKENS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];

/// GGUF tokenizer metadata for the fixture tokenizer: the 256 byte-level symbols, a few merges,
/// SmolLM2's pre-tokenizer (`smollm`), special tokens and chat template.
pub fn tokenizer_metadata(writer: GgufWriter) -> GgufWriter {
    let mut alphabet: Vec<char> = tokenizers::pre_tokenizers::byte_level::ByteLevel::alphabet()
        .into_iter()
        .collect();
    alphabet.sort_unstable();
    let mut tokens: Vec<String> = SPECIAL_TOKENS.iter().map(|s| s.to_string()).collect();
    let mut types: Vec<MetaValue> = vec![MetaValue::I64(3); SPECIAL_TOKENS.len()];
    tokens.extend(alphabet.iter().map(char::to_string));
    tokens.extend(MERGES.iter().map(|(a, b)| format!("{a}{b}")));
    types.resize(tokens.len(), MetaValue::I64(1));
    let strings = |v: Vec<String>| MetaValue::Array(v.into_iter().map(MetaValue::String).collect());
    writer
        .meta("tokenizer.ggml.model", MetaValue::String("gpt2".into()))
        .meta("tokenizer.ggml.pre", MetaValue::String("smollm".into()))
        .meta("tokenizer.ggml.tokens", strings(tokens))
        .meta("tokenizer.ggml.token_type", MetaValue::Array(types))
        .meta(
            "tokenizer.ggml.merges",
            strings(MERGES.iter().map(|(a, b)| format!("{a} {b}")).collect()),
        )
        .meta("tokenizer.ggml.bos_token_id", MetaValue::U64(1))
        .meta("tokenizer.ggml.eos_token_id", MetaValue::U64(2))
        .meta("tokenizer.ggml.padding_token_id", MetaValue::U64(2))
        .meta("tokenizer.ggml.add_bos_token", MetaValue::Bool(false))
        .meta(
            "tokenizer.chat_template",
            MetaValue::String(SMOLLM2_CHAT_TEMPLATE.into()),
        )
}

/// The fixture tokenizer (275 tokens).
pub fn tokenizer() -> Tokenizer {
    let bytes = tokenizer_metadata(GgufWriter::new()).to_bytes();
    let file =
        GgufFile::parse(std::path::Path::new("fixture.gguf"), bytes).expect("fixture GGUF parses");
    Tokenizer::from_gguf(&file).expect("fixture tokenizer builds")
}

/// A tiny config of `model_type` sized for the fixture tokenizer: 2 layers, d 64, 4 heads
/// (2 key/value heads for the Llama family), untied head for Qwen2 to cover that path, a
/// 4-token sliding window for the families that have one (every layer for Mistral and Phi-3,
/// the first for Gemma 3, whose sliding layers also get their own RoPE base).
pub fn tiny_config(model_type: ModelType) -> ModelConfig {
    let mut config =
        ModelConfig::preset(model_type, "tiny", tokenizer().vocab_size()).expect("tiny preset");
    config.max_position_embeddings = 128;
    config.bos_token_id = Some(1);
    config.eos_token_id = Some(2);
    config.tie_word_embeddings = model_type != ModelType::QWEN2;
    let layer_types = model_type.default_layer_types(config.num_layers, 2);
    if layer_types.contains(&LayerType::Sliding) {
        config.sliding_window = Some(4);
        config.layer_types = layer_types;
    }
    if model_type == ModelType::GEMMA3 {
        config.rope_local_theta = Some(500.0);
    }
    config
}

/// A tiny model with weights drawn from `seed` on `device`. Weights are N(0, 0.2) rather than
/// the usual 0.02 so that logits differ clearly between tokens and numeric tests are sharp.
pub fn tiny_model(model_type: ModelType, seed: u64, device: &Device) -> Transformer {
    Transformer::init_with_std(&tiny_config(model_type), 0.2, seed, device)
}

/// The largest absolute difference between two equally long slices (tests compare outputs
/// with it).
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "slices of different lengths");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Whether bf16 products (`Transformer::bf16_products`) run on this CPU (AVX512-BF16); says
/// on stderr that the calling test checks nothing here when they do not.
pub fn bf16_products_run() -> bool {
    let supported = bpo_model::flex::bf16_supported();
    if !supported {
        eprintln!("this CPU has no AVX512-BF16: bf16 products are not tested here");
    }
    supported
}

/// `len` deterministic values in [-0.5, 0.5) from `seed` (a multiplicative hash), for kernel
/// tests that need the same inputs on every run.
pub fn hashed_values(len: usize, seed: u32) -> Vec<f32> {
    (0..len)
        .map(|i| {
            let h = (i as u32 ^ seed).wrapping_mul(2_654_435_761) >> 8;
            h as f32 / (1u32 << 24) as f32 - 0.5
        })
        .collect()
}

/// `x @ w` for row-major `x` `[m, k]` and `w` `[k, n]` by the textbook triple loop, accumulated
/// in f64: the reference the matrix kernels are tested against.
pub fn reference_product(x: &[f32], w: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
    let mut y = vec![0.0; m * n];
    for j in 0..m {
        for c in 0..n {
            let sum: f64 = (0..k)
                .map(|p| x[j * k + p] as f64 * w[p * n + c] as f64)
                .sum();
            y[j * n + c] = sum as f32;
        }
    }
    y
}

/// A tiny Llama with weights drawn from `seed`, saved as a Hugging Face directory
/// `<dir>/model-<seed>`; returns the path as a model spec.
pub fn tiny_model_dir(dir: &Path, seed: u64) -> String {
    let path = dir.join(format!("model-{seed}"));
    let model = tiny_model(ModelType::LLAMA, seed, &Device::flex());
    save_hf(&path, &model, &tokenizer()).expect("tiny model saves");
    path.to_str().expect("UTF-8 path").to_owned()
}

/// The logits of `model` on a fixed probe sequence (tests compare models with it).
pub fn probe_logits(model: &Transformer) -> Vec<f32> {
    let batch = TokenBatch::padded(&[vec![5, 9, 40, 7, 100]], 0, PaddingSide::Right);
    to_f32_vec(model.forward(&batch))
}

/// `model` with every LoRA `B` factor (`*.lora.b`) set to seeded values in [-0.1, 0.1]: an
/// adapted model whose adapters change its outputs, as after training.
pub fn with_random_lora_b(model: Transformer, seed: u64) -> Transformer {
    use bpo_model::burn::module::{Module, ModuleMapper, Param};
    use bpo_model::burn::tensor::{Tensor, TensorData};
    use bpo_model::weights::params::ModulePath;
    struct RandomB {
        seed: u64,
        path: ModulePath,
    }
    impl ModuleMapper for RandomB {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.enter(name);
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.exit();
        }
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            if !self.path.joined().ends_with("lora.b") {
                return param;
            }
            let seed = &mut self.seed;
            param.map(|t| {
                let shape = t.shape();
                let values: Vec<f32> = (0..shape.num_elements())
                    .map(|_| {
                        *seed = seed
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        ((*seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.2
                    })
                    .collect();
                Tensor::from_data(TensorData::new(values, shape), &t.device())
            })
        }
    }
    model.map(&mut RandomB {
        seed,
        path: ModulePath::default(),
    })
}
