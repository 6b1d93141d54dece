//! The decoder-only transformer: token (and GPT-2 position) embeddings, pre-norm blocks (with
//! Gemma's post-norms), final norm and output head. One forward path serves training, scoring
//! and cached generation.

use burn::module::Module;
use burn::nn::{Embedding, EmbeddingConfig, Initializer, Linear};
use burn::tensor::{Device, Tensor};

use crate::batch::TokenBatch;
pub use crate::block::Block;
use crate::cache::KvCache;
use crate::config::{LayerType, ModelConfig, Positions};
use crate::decoding::{BlockLayers, DecodeWeights, Head};
use crate::linear::{self, Products};
use crate::norm::Norm;
use crate::recompute::checkpointed_block;
use crate::rope::Rope;

/// A decoder-only language model of the Llama family or GPT-2, as described by its
/// [`ModelConfig`].
#[derive(Module, Debug)]
pub struct Transformer {
    /// Token embedding `[vocab, hidden]`.
    pub embed_tokens: Embedding,
    /// Learned absolute positions `[max_positions, hidden]` (GPT-2 only).
    pub embed_positions: Option<Embedding>,
    /// The blocks, first to last.
    pub layers: Vec<Block>,
    /// Final norm.
    pub norm: Norm,
    /// Output head `[hidden, vocab]`; `None` when tied to the token embedding.
    pub lm_head: Option<Linear>,
    /// RoPE tables (Llama family only).
    pub rope: Option<Rope>,
    /// RoPE tables of the sliding-window layers when the config gives them their own base
    /// (Gemma 3).
    pub rope_local: Option<Rope>,
    /// The hyper-parameters this model was built from.
    #[module(skip)]
    pub config: ModelConfig,
    /// Whether training runs each block again in the backward pass instead of keeping its
    /// activations (TRL's `gradient_checkpointing`; on flex, elsewhere blocks run as usual);
    /// off by default. The values and gradients are the same.
    #[module(skip)]
    pub gradient_checkpointing: bool,
    /// Whether the products with frozen weights (a LoRA base, a model that is not trained) of
    /// [`Transformer::forward_hidden`] and what builds on it (training, scoring) are in bf16,
    /// summed in f32: about twice as fast on CPUs with AVX512-BF16
    /// ([`crate::flex::bf16_supported`]), log-probs a fraction of a nat away from f32's;
    /// weights that train stay f32, and so does sampling ([`crate::Generator`]). Meant for
    /// LoRA: with full fine-tuning only a reference model would change. On flex only, and only
    /// where the CPU has the instructions: elsewhere the products stay f32. Off by default.
    #[module(skip)]
    pub bf16_products: bool,
}

impl Transformer {
    /// A randomly initialised model (weights N(0, 0.02), norms 1, biases 0) drawn from `seed`:
    /// the same seed on the same backend gives the same weights.
    pub fn init(config: &ModelConfig, seed: u64, device: &Device) -> Self {
        Self::init_with_std(config, 0.02, seed, device)
    }

    /// Like [`Transformer::init`] with weights drawn from N(0, `std`).
    pub fn init_with_std(config: &ModelConfig, std: f64, seed: u64, device: &Device) -> Self {
        crate::seed::seeded_init(device, seed, || Self::build(config, std, device))
    }

    /// A model of `config` whose parameters are not drawn yet (lazy): what loading fills in.
    pub(crate) fn skeleton(config: &ModelConfig, device: &Device) -> Self {
        Self::build(config, 0.02, device)
    }

    fn build(config: &ModelConfig, std: f64, device: &Device) -> Self {
        let init = Initializer::Normal { mean: 0.0, std };
        let learned_positions = config.model_type.block().positions == Positions::Learned;
        let embedding = |n: usize| {
            EmbeddingConfig::new(n, config.hidden_size)
                .with_initializer(init.clone())
                .init(device)
        };
        let head = (!config.tie_word_embeddings)
            .then(|| linear::layer(config.hidden_size, config.vocab_size, false, &init, device));
        Transformer {
            embed_tokens: embedding(config.vocab_size),
            embed_positions: learned_positions.then(|| embedding(config.max_position_embeddings)),
            layers: (0..config.num_layers)
                .map(|layer| Block::init(config, layer, &init, device))
                .collect(),
            norm: Norm::of(config, config.hidden_size, device),
            lm_head: head,
            rope: Self::rope_for(config, Some(config.rope_theta), device),
            rope_local: Self::rope_for(config, config.rope_local_theta, device),
            config: config.clone(),
            gradient_checkpointing: false,
            bf16_products: false,
        }
    }

    /// RoPE tables of base `theta` when the config's family rotates (`None` for learned
    /// positions or no base).
    fn rope_for(config: &ModelConfig, theta: Option<f64>, device: &Device) -> Option<Rope> {
        let theta = theta.filter(|_| config.model_type.block().positions == Positions::Rope)?;
        Some(Rope::new(
            config.head_dim,
            config.max_position_embeddings,
            theta,
            device,
        ))
    }

    /// The device holding the weights.
    pub fn device(&self) -> Device {
        self.embed_tokens.weight.val().device()
    }

    /// Final hidden states `[batch, len, hidden]` of a chunk, attending to what `cache` holds
    /// and appending the chunk to it. An empty cache gives the plain full-sequence forward.
    /// The products with frozen weights in bf16 when [`Transformer::bf16_products`] says so.
    pub fn forward_hidden(&self, batch: &TokenBatch, cache: &mut KvCache) -> Tensor<3> {
        self.forward_hidden_with(batch, cache, Products::unpacked(self.bf16_products))
    }

    /// [`Transformer::forward_hidden`] with the projections through `weights`, this model's
    /// weights packed for decoding ([`Transformer::decode_weights`]).
    pub fn decode_hidden(
        &self,
        batch: &TokenBatch,
        cache: &mut KvCache,
        weights: &DecodeWeights,
    ) -> Tensor<3> {
        assert_eq!(
            weights.blocks.len(),
            self.layers.len(),
            "weights of another model"
        );
        self.forward_hidden_with(batch, cache, Products::Packed(weights))
    }

    /// [`Transformer::forward_hidden`] with the products as `products` says (generation takes
    /// f32 where it does not pack the weights).
    pub(crate) fn forward_hidden_with(
        &self,
        batch: &TokenBatch,
        cache: &mut KvCache,
        products: Products<'_, DecodeWeights>,
    ) -> Tensor<3> {
        let config = &self.config;
        // A window no shorter than the positions never masks a key: no second mask for it.
        let window = config
            .sliding_window
            .filter(|&w| config.has_sliding_layers() && w < config.max_position_embeddings);
        // The full mask only for layers that attend to every earlier key.
        let full = window.is_none() || self.layers.iter().any(|b| b.window.is_none());
        let inputs = cache.begin_chunk(
            batch,
            (config.num_kv_heads, config.group_size()),
            config.max_position_embeddings,
            (window, full),
            &self.device(),
        );
        let mut x = self.embed_tokens.forward(inputs.ids.clone());
        if config.model_type.block().scaled_embedding {
            // Gemma multiplies by sqrt(hidden) rounded to f32, the precision of the weights
            // (Burn casts the scalar to the tensor's float type).
            x = x * ((config.hidden_size as f64).sqrt() as f32);
        }
        if let Some(positions) = &self.embed_positions {
            x = x + positions.forward(inputs.positions.clone());
        }
        let angles = self.rope.as_ref().map(|r| r.angles(&inputs.positions));
        let local_angles = self
            .rope_local
            .as_ref()
            .map(|r| r.angles(&inputs.positions));
        for (i, block) in self.layers.iter().enumerate() {
            let products = products.map(|w| &w.blocks[i]);
            let rope = match config.layer_types.get(i) {
                Some(LayerType::Sliding) if local_angles.is_some() => local_angles.as_ref(),
                _ => angles.as_ref(),
            };
            let mask = inputs.mask_for(block.window);
            x = if self.gradient_checkpointing && !matches!(products, Products::Packed(_)) {
                checkpointed_block(block, x, mask, rope, cache, i, products.bf16())
            } else {
                block.forward(x, mask, rope, cache, i, products)
            };
        }
        self.norm.forward(x)
    }

    /// The output projection `[hidden, vocab]`: the head's weight, or the token embedding
    /// transposed (a view) when the head is tied.
    pub fn head_weight(&self) -> Tensor<2> {
        match &self.lm_head {
            Some(head) => head.weight.val(),
            None => self.embed_tokens.weight.val().transpose(),
        }
    }

    /// This model's projections packed for decoding, the frozen bases of LoRA-adapted weights
    /// (adapters stay on the activation path; the head's is merged in), when they are f32
    /// tensors on the CPU (flex); `None` elsewhere, where decoding takes the plain forward pass.
    pub fn decode_weights(&self) -> Option<DecodeWeights> {
        let blocks: Vec<BlockLayers> = self
            .layers
            .iter()
            .map(|block| {
                let (attn, mlp) = (&block.attn, &block.mlp);
                BlockLayers {
                    qkv: [&attn.q, &attn.k, &attn.v],
                    o: &attn.o,
                    mlp_in: mlp.gate.iter().chain([&mlp.up]).collect(),
                    down: &mlp.down,
                }
            })
            .collect();
        let head = match &self.lm_head {
            Some(head) => Head::Weight(head.weight.val()),
            None => Head::TiedTo(self.embed_tokens.weight.val()),
        };
        DecodeWeights::pack(&blocks, head)
    }

    /// [`Transformer::head_weight`] laid out row-major, for many products with the same weights
    /// and no gradient (a generation call). A tied head is copied once: the CPU matmul would
    /// otherwise gather the transposed embedding element by element on every decoding step.
    pub fn decode_head_weight(&self) -> Tensor<2> {
        let weight = self.head_weight();
        if self.lm_head.is_some() {
            return weight;
        }
        let [hidden, vocab] = weight.dims();
        weight.reshape([hidden * vocab]).reshape([hidden, vocab])
    }

    /// Vocabulary logits `[batch, len, vocab]` of hidden states.
    pub fn logits(&self, hidden: Tensor<3>) -> Tensor<3> {
        Self::project(hidden, self.head_weight())
    }

    /// Logits of hidden states `[batch, len, hidden]` through `weight` `[hidden, vocab]`.
    pub fn project(hidden: Tensor<3>, weight: Tensor<2>) -> Tensor<3> {
        linear::apply(hidden, weight, None)
    }

    /// Full-sequence forward: logits `[batch, len, vocab]` with causal and padding masks.
    pub fn forward(&self, batch: &TokenBatch) -> Tensor<3> {
        let mut cache = KvCache::new(self.layers.len());
        self.logits(self.forward_hidden(batch, &mut cache))
    }

    /// Incremental forward: logits of the chunk's tokens given the cache, which is extended.
    pub fn forward_cached(&self, batch: &TokenBatch, cache: &mut KvCache) -> Tensor<3> {
        self.logits(self.forward_hidden(batch, cache))
    }

    /// A fresh, empty KV cache for this model.
    pub fn new_cache(&self) -> KvCache {
        KvCache::new(self.layers.len())
    }
}
