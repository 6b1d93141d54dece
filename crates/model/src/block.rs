//! One transformer block: pre-norm attention and MLP with residuals (Gemma's post-norms too).

use burn::module::Module;
use burn::nn::Initializer;
use burn::tensor::{Device, Tensor};

use crate::attention::Attention;
use crate::cache::KvCache;
use crate::config::ModelConfig;
use crate::decoding::BlockWeights;
use crate::linear::{self, Products};
use crate::mask::LayerMask;
use crate::mlp::FeedForward;
use crate::norm::Norm;
use crate::rope::RopeAngles;

/// One pre-norm block: `x + attn(norm(x))`, then `h + mlp(norm(h))`; with post-norms (Gemma)
/// `x + norm(attn(norm(x)))`, then `h + norm(mlp(norm(h)))`.
#[derive(Module, Debug)]
pub struct Block {
    /// Norm before attention (`input_layernorm`, GPT-2 `ln_1`).
    pub attn_norm: Norm,
    /// Self-attention.
    pub attn: Attention,
    /// Norm of the attention's output (Gemma's `post_attention_layernorm`).
    pub attn_post_norm: Option<Norm>,
    /// Norm before the MLP (`post_attention_layernorm` of Llama, Gemma's
    /// `pre_feedforward_layernorm`, GPT-2 `ln_2`).
    pub mlp_norm: Norm,
    /// Feed-forward network.
    pub mlp: FeedForward,
    /// Norm of the MLP's output (Gemma's `post_feedforward_layernorm`).
    pub mlp_post_norm: Option<Norm>,
    /// The sliding window of this block's attention, `None` for full attention.
    pub window: Option<usize>,
}

impl Block {
    /// Block `layer` of `config`, weights drawn (lazily) from `init`, norms at scale 1 and
    /// shift 0.
    pub fn init(config: &ModelConfig, layer: usize, init: &Initializer, device: &Device) -> Self {
        let norm = || Norm::of(config, config.hidden_size, device);
        let post_norms = config.model_type.block().post_norms;
        Block {
            attn_norm: norm(),
            attn: Attention::init(config, init, device),
            attn_post_norm: post_norms.then(norm),
            mlp_norm: norm(),
            mlp: FeedForward::init(config, init, device),
            mlp_post_norm: post_norms.then(norm),
            window: config.window_of(layer),
        }
    }

    /// The block's output for `x` `[batch, len, hidden]`, its keys and values appended to
    /// `cache` for `layer`; the projections as `products` says.
    pub(crate) fn forward(
        &self,
        x: Tensor<3>,
        mask: &LayerMask,
        rope: Option<&RopeAngles>,
        cache: &mut KvCache,
        layer: usize,
        products: Products<'_, BlockWeights>,
    ) -> Tensor<3> {
        let normed = self.attn_norm.forward(x.clone());
        let attended = self
            .attn
            .forward(normed, mask, rope, cache, layer, products);
        self.after_attention(x, attended, products)
    }

    /// The keys and values this block adds for `x` (what [`Block::forward`] appends to the
    /// cache), the products in bf16 when `bf16`.
    pub(crate) fn keys_values(
        &self,
        x: Tensor<3>,
        rope: Option<&RopeAngles>,
        bf16: bool,
    ) -> (Tensor<4>, Tensor<4>) {
        self.attn.keys_values(self.attn_norm.forward(x), rope, bf16)
    }

    /// [`Block::forward`] given all keys and values of the layer (cached ones first) instead
    /// of the cache, the products in bf16 when `bf16`.
    pub(crate) fn with_keys_values(
        &self,
        x: Tensor<3>,
        (k, v): (Tensor<4>, Tensor<4>),
        mask: &LayerMask,
        rope: Option<&RopeAngles>,
        bf16: bool,
    ) -> Tensor<3> {
        let products = Products::unpacked(bf16);
        let q = self
            .attn
            .queries(self.attn_norm.forward(x.clone()), rope, bf16);
        let attended = self.attn.attend(q, k, v, mask, products);
        self.after_attention(x, attended, products)
    }

    /// Whether no projection's base weight takes a gradient (LoRA's frozen bases).
    pub(crate) fn projections_frozen(&self) -> bool {
        let (attn, mlp) = (&self.attn, &self.mlp);
        [&attn.q, &attn.k, &attn.v, &attn.o]
            .into_iter()
            .chain(&mlp.gate)
            .chain([&mlp.up, &mlp.down])
            .all(|layer| !linear::base_weight(layer).is_require_grad())
    }

    /// The residual, the post-norm and the MLP after the attention.
    fn after_attention(
        &self,
        x: Tensor<3>,
        attended: Tensor<3>,
        products: Products<'_, BlockWeights>,
    ) -> Tensor<3> {
        let post = |norm: &Option<Norm>, y: Tensor<3>| match norm {
            Some(norm) => norm.forward(y),
            None => y,
        };
        let h = x + post(&self.attn_post_norm, attended);
        let transformed = self.mlp.forward(self.mlp_norm.forward(h.clone()), products);
        h + post(&self.mlp_post_norm, transformed)
    }
}
