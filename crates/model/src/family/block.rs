//! What a family's blocks compute ([`BlockSpec`]), built from shared pieces: the model code reads
//! this description instead of inferring the architecture from stand-in values (a bias meaning
//! LayerNorm, a zero RoPE base meaning GPT-2).

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

/// Llama's blocks: RMSNorm before attention and MLP, RoPE, SwiGLU, no biases; the other
/// families are described by how they differ from it.
pub const LLAMA_LIKE: BlockSpec = BlockSpec {
    norm: NormKind::Rms,
    positions: Positions::Rope,
    mlp: MlpKind::SwiGlu,
    qkv_bias: false,
    out_bias: false,
    qk_norm: false,
    post_norms: false,
    scaled_embedding: false,
};
