//! The architecture families bpo computes, and for each an explicit description of its blocks
//! ([`BlockSpec`]): what the model code reads instead of inferring the architecture from
//! stand-in values (a bias meaning LayerNorm, a zero RoPE base meaning GPT-2).

/// Which published architecture a [`ModelConfig`](super::ModelConfig) describes. It decides the
/// block layout ([`ModelType::block`]), the `config.json` schema and the tensor names used in
/// checkpoints (`arch.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelType {
    /// Llama and its close relatives (SmolLM2, TinyLlama, Mistral without sliding window).
    Llama,
    /// Qwen2: Llama layout with biases on the q/k/v projections.
    Qwen2,
    /// Qwen3: Llama layout with an RMSNorm on each query and key head, no q/k/v biases.
    Qwen3,
    /// GPT-2: LayerNorm, learned absolute positions, GELU (tanh) MLP, tied head.
    Gpt2,
}

/// Every family, in the order messages list them.
pub const MODEL_TYPES: [ModelType; 4] = [
    ModelType::Llama,
    ModelType::Qwen2,
    ModelType::Qwen3,
    ModelType::Gpt2,
];

/// The normalisation layers of a family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NormKind {
    /// RMSNorm: `w * x / sqrt(mean(x^2) + eps)`.
    Rms,
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
    /// `down(gelu_tanh(up(x)))`.
    GeluTanh,
}

/// How the blocks of a family compute (pre-norm blocks: `x + attn(norm(x))`, then
/// `h + mlp(norm(h))`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockSpec {
    /// The norms before attention and MLP, and the final norm.
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
}

const LLAMA_BLOCK: BlockSpec = BlockSpec {
    norm: NormKind::Rms,
    positions: Positions::Rope,
    mlp: MlpKind::SwiGlu,
    qkv_bias: false,
    out_bias: false,
    qk_norm: false,
};

impl ModelType {
    /// The `model_type` string Hugging Face uses for this architecture.
    pub fn hf_name(self) -> &'static str {
        match self {
            ModelType::Llama => "llama",
            ModelType::Qwen2 => "qwen2",
            ModelType::Qwen3 => "qwen3",
            ModelType::Gpt2 => "gpt2",
        }
    }

    /// The transformers class of a causal language model of this architecture.
    pub fn hf_class(self) -> &'static str {
        match self {
            ModelType::Llama => "LlamaForCausalLM",
            ModelType::Qwen2 => "Qwen2ForCausalLM",
            ModelType::Qwen3 => "Qwen3ForCausalLM",
            ModelType::Gpt2 => "GPT2LMHeadModel",
        }
    }

    /// Parses a Hugging Face `model_type` (or GGUF `general.architecture`) string.
    pub fn from_hf_name(name: &str) -> Option<Self> {
        match name {
            "llama" | "mistral" | "smollm" => Some(ModelType::Llama),
            "qwen2" => Some(ModelType::Qwen2),
            "qwen3" => Some(ModelType::Qwen3),
            "gpt2" => Some(ModelType::Gpt2),
            _ => None,
        }
    }

    /// The supported names, for messages (`llama, mistral, qwen2, qwen3, gpt2`).
    pub fn supported_names() -> &'static str {
        "llama, mistral, qwen2, qwen3, gpt2"
    }

    /// How this family's blocks compute.
    pub fn block(self) -> BlockSpec {
        match self {
            ModelType::Llama => LLAMA_BLOCK,
            ModelType::Qwen2 => BlockSpec {
                qkv_bias: true,
                ..LLAMA_BLOCK
            },
            ModelType::Qwen3 => BlockSpec {
                qk_norm: true,
                ..LLAMA_BLOCK
            },
            ModelType::Gpt2 => BlockSpec {
                norm: NormKind::Layer,
                positions: Positions::Learned,
                mlp: MlpKind::GeluTanh,
                qkv_bias: true,
                out_bias: true,
                qk_norm: false,
            },
        }
    }

    /// True for GPT-2, whose `config.json` schema and checkpoint prefix differ from the
    /// Llama family's.
    pub fn is_gpt2(self) -> bool {
        self == ModelType::Gpt2
    }
}
