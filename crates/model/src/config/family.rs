//! The architecture families bpo computes, and for each an explicit description of its blocks
//! ([`BlockSpec`]): what the model code reads instead of inferring the architecture from
//! stand-in values (a bias meaning LayerNorm, a zero RoPE base meaning GPT-2).

/// Which published architecture a [`ModelConfig`](super::ModelConfig) describes. It decides the
/// block layout ([`ModelType::block`]), the `config.json` schema and the tensor names used in
/// checkpoints (`arch.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelType {
    /// Llama and its close relatives (SmolLM2, TinyLlama).
    Llama,
    /// Mistral: Llama's layout with a sliding attention window on every layer.
    Mistral,
    /// Qwen2: Llama layout with biases on the q/k/v projections.
    Qwen2,
    /// Qwen3: Llama layout with an RMSNorm on each query and key head, no q/k/v biases.
    Qwen3,
    /// Phi-3: Llama's computation with q/k/v fused into one projection and gate/up into
    /// another in checkpoints, a sliding window on every layer.
    Phi3,
    /// Gemma 3 (text): scaled embeddings, `(1 + w)` RMSNorms before and after attention and
    /// MLP, GeGLU, q/k norms, interleaved sliding-window and global layers with their own
    /// RoPE bases.
    Gemma3,
    /// GPT-2: LayerNorm, learned absolute positions, GELU (tanh) MLP, tied head.
    Gpt2,
}

/// Every family, in the order messages list them.
pub const MODEL_TYPES: [ModelType; 7] = [
    ModelType::Llama,
    ModelType::Mistral,
    ModelType::Qwen2,
    ModelType::Qwen3,
    ModelType::Phi3,
    ModelType::Gemma3,
    ModelType::Gpt2,
];

/// The normalisation layers of a family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NormKind {
    /// RMSNorm: `w * x / sqrt(mean(x^2) + eps)`.
    Rms,
    /// Gemma's RMSNorm, whose stored weight is the scale minus one: `(1 + w) * x / rms(x)`.
    RmsUnitOffset,
    /// LayerNorm with a shift.
    Layer,
}

/// How token positions enter the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Positions {
    /// Rotary embeddings on queries and keys (`rotate_half` layout).
    Rope,
    /// A learned embedding added to the token embedding.
    Learned,
}

/// The feed-forward network of a family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MlpKind {
    /// `down(silu(gate(x)) * up(x))`.
    SwiGlu,
    /// `down(gelu_tanh(gate(x)) * up(x))` (Gemma).
    GeGlu,
    /// `down(gelu_tanh(up(x)))`.
    GeluTanh,
}

impl MlpKind {
    /// Whether the MLP has a gate projection.
    pub fn is_gated(self) -> bool {
        self != MlpKind::GeluTanh
    }
}

/// Which keys a layer attends to (transformers' `layer_types`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerType {
    /// Every key at or before the query (`full_attention`).
    Full,
    /// The keys within the sliding window ending at the query (`sliding_attention`).
    Sliding,
}

impl LayerType {
    /// transformers' name of this layer type.
    pub fn hf_name(self) -> &'static str {
        match self {
            LayerType::Full => "full_attention",
            LayerType::Sliding => "sliding_attention",
        }
    }
}

/// How the blocks of a family compute (pre-norm blocks: `x + attn(norm(x))`, then
/// `h + mlp(norm(h))`; with `post_norms`, `x + norm(attn(norm(x)))` and `h + norm(mlp(norm(h)))`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockSpec {
    /// The norms of the blocks and the final norm.
    pub norm: NormKind,
    /// Position encoding.
    pub positions: Positions,
    /// The feed-forward network.
    pub mlp: MlpKind,
    /// Whether the q/k/v projections have biases when a config does not say
    /// (`ModelConfig::attention_bias` decides).
    pub qkv_bias: bool,
    /// Whether the attention output and MLP projections have biases.
    pub out_bias: bool,
    /// Whether each query and key head is RMS-normalised (over `head_dim`) before RoPE.
    pub qk_norm: bool,
    /// Whether the attention and MLP outputs are normalised before the residual add (Gemma).
    pub post_norms: bool,
    /// Whether token embeddings are multiplied by `sqrt(hidden_size)` (Gemma).
    pub scaled_embedding: bool,
}

const LLAMA_BLOCK: BlockSpec = BlockSpec {
    norm: NormKind::Rms,
    positions: Positions::Rope,
    mlp: MlpKind::SwiGlu,
    qkv_bias: false,
    out_bias: false,
    qk_norm: false,
    post_norms: false,
    scaled_embedding: false,
};

/// A family's values for `config.json` keys that are left out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConfigDefaults {
    /// `num_key_value_heads`; `None`: as many as the attention heads.
    pub num_kv_heads: Option<usize>,
    /// `max_position_embeddings`.
    pub max_position_embeddings: usize,
    /// `rms_norm_eps`.
    pub norm_eps: f64,
    /// `tie_word_embeddings`.
    pub tie_word_embeddings: bool,
}

impl ModelType {
    /// The `model_type` string Hugging Face uses for this architecture.
    pub fn hf_name(self) -> &'static str {
        match self {
            ModelType::Llama => "llama",
            ModelType::Mistral => "mistral",
            ModelType::Qwen2 => "qwen2",
            ModelType::Qwen3 => "qwen3",
            ModelType::Phi3 => "phi3",
            ModelType::Gemma3 => "gemma3_text",
            ModelType::Gpt2 => "gpt2",
        }
    }

    /// The transformers class of a causal language model of this architecture.
    pub fn hf_class(self) -> &'static str {
        match self {
            ModelType::Llama => "LlamaForCausalLM",
            ModelType::Mistral => "MistralForCausalLM",
            ModelType::Qwen2 => "Qwen2ForCausalLM",
            ModelType::Qwen3 => "Qwen3ForCausalLM",
            ModelType::Phi3 => "Phi3ForCausalLM",
            ModelType::Gemma3 => "Gemma3ForCausalLM",
            ModelType::Gpt2 => "GPT2LMHeadModel",
        }
    }

    /// Parses a Hugging Face `model_type` string.
    pub fn from_hf_name(name: &str) -> Option<Self> {
        match name {
            "llama" | "smollm" => Some(ModelType::Llama),
            "mistral" => Some(ModelType::Mistral),
            "qwen2" => Some(ModelType::Qwen2),
            "qwen3" => Some(ModelType::Qwen3),
            "phi3" => Some(ModelType::Phi3),
            "gemma3_text" => Some(ModelType::Gemma3),
            "gpt2" => Some(ModelType::Gpt2),
            _ => None,
        }
    }

    /// llama.cpp's `general.architecture` for this family, `None` where bpo does not read
    /// llama.cpp's conversion (Gemma 3's norms are stored with the 1 added).
    pub fn gguf_name(self) -> Option<&'static str> {
        match self {
            ModelType::Llama | ModelType::Mistral => Some("llama"),
            ModelType::Gemma3 => None,
            other => Some(other.hf_name()),
        }
    }

    /// Parses a GGUF `general.architecture` string.
    pub fn from_gguf_name(name: &str) -> Option<Self> {
        MODEL_TYPES
            .into_iter()
            .find(|t| t.gguf_name() == Some(name))
    }

    /// The supported names, for messages.
    pub fn supported_names() -> String {
        let names: Vec<&str> = MODEL_TYPES.iter().map(|t| t.hf_name()).collect();
        names.join(", ")
    }

    /// How this family's blocks compute.
    pub fn block(self) -> BlockSpec {
        match self {
            ModelType::Llama | ModelType::Mistral | ModelType::Phi3 => LLAMA_BLOCK,
            ModelType::Qwen2 => BlockSpec {
                qkv_bias: true,
                ..LLAMA_BLOCK
            },
            ModelType::Qwen3 => BlockSpec {
                qk_norm: true,
                ..LLAMA_BLOCK
            },
            ModelType::Gemma3 => BlockSpec {
                norm: NormKind::RmsUnitOffset,
                mlp: MlpKind::GeGlu,
                qk_norm: true,
                post_norms: true,
                scaled_embedding: true,
                ..LLAMA_BLOCK
            },
            ModelType::Gpt2 => BlockSpec {
                norm: NormKind::Layer,
                positions: Positions::Learned,
                mlp: MlpKind::GeluTanh,
                qkv_bias: true,
                out_bias: true,
                ..LLAMA_BLOCK
            },
        }
    }

    /// Which of `num_layers` layers attend within the sliding window when the checkpoint
    /// sets a window but no `layer_types`: every layer for Mistral and Phi-3, five of every
    /// six for Gemma 3 (`sliding_window_pattern`), none for the others.
    pub fn default_layer_types(self, num_layers: usize, pattern: usize) -> Vec<LayerType> {
        (0..num_layers)
            .map(|i| match self {
                ModelType::Mistral | ModelType::Phi3 => LayerType::Sliding,
                ModelType::Gemma3 if !(i + 1).is_multiple_of(pattern.max(1)) => LayerType::Sliding,
                _ => LayerType::Full,
            })
            .collect()
    }

    /// What transformers' config class of this family assumes for keys a `config.json` leaves
    /// out (transformers 5.24's defaults; GPT-2's schema has its own reader).
    pub fn config_defaults(self) -> ConfigDefaults {
        let llama = ConfigDefaults {
            num_kv_heads: None,
            max_position_embeddings: 2048,
            norm_eps: 1e-6,
            tie_word_embeddings: false,
        };
        match self {
            ModelType::Llama | ModelType::Gpt2 => llama,
            ModelType::Mistral => ConfigDefaults {
                num_kv_heads: Some(8),
                max_position_embeddings: 131072,
                ..llama
            },
            ModelType::Qwen2 | ModelType::Qwen3 => ConfigDefaults {
                num_kv_heads: Some(32),
                max_position_embeddings: 32768,
                ..llama
            },
            ModelType::Phi3 => ConfigDefaults {
                max_position_embeddings: 4096,
                norm_eps: 1e-5,
                ..llama
            },
            ModelType::Gemma3 => ConfigDefaults {
                num_kv_heads: Some(4),
                max_position_embeddings: 131072,
                tie_word_embeddings: true,
                ..llama
            },
        }
    }

    /// Whether transformers reads `layer_types` for this family (Mistral and Phi-3 put the
    /// window on every layer whatever the list says).
    pub fn reads_layer_types(self) -> bool {
        matches!(
            self,
            ModelType::Qwen2 | ModelType::Qwen3 | ModelType::Gemma3
        )
    }

    /// True for GPT-2, whose `config.json` schema and checkpoint prefix differ from the
    /// Llama family's.
    pub fn is_gpt2(self) -> bool {
        self == ModelType::Gpt2
    }
}
