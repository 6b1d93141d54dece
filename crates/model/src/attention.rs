//! Causal self-attention with grouped-query heads, optional RoPE and a KV cache.

use burn::module::Module;
use burn::nn::{Initializer, Linear};
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, Device, Tensor};

use crate::cache::KvCache;
use crate::config::ModelConfig;
use crate::decoding::BlockWeights;
use crate::linear;
use crate::norm::Norm;
use crate::rope::RopeAngles;

/// Multi-head attention where `num_heads / num_kv_heads` query heads share one key/value head.
#[derive(Module, Debug)]
pub struct Attention {
    /// Query projection `[hidden, heads * head_dim]`.
    pub q: Linear,
    /// Key projection `[hidden, kv_heads * head_dim]`.
    pub k: Linear,
    /// Value projection `[hidden, kv_heads * head_dim]`.
    pub v: Linear,
    /// Output projection `[heads * head_dim, hidden]`.
    pub o: Linear,
    /// RMSNorm of each query head before RoPE (Qwen3).
    pub q_norm: Option<Norm>,
    /// RMSNorm of each key head before RoPE (Qwen3).
    pub k_norm: Option<Norm>,
    /// Number of query heads.
    pub num_heads: usize,
    /// Number of key/value heads.
    pub num_kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// The factor scores are multiplied by before the softmax.
    pub scale: f64,
}

impl Attention {
    /// The attention of a block of `config`, weights drawn (lazily) from `init`: q, k, v with
    /// biases when `attention_bias` (GPT-2, Qwen2), o with a bias for GPT-2, per-head q/k norms
    /// for Qwen3 and Gemma 3 ([`BlockSpec`](crate::config::BlockSpec)).
    pub fn init(config: &ModelConfig, init: &Initializer, device: &Device) -> Self {
        let spec = config.model_type.block();
        let d = config.hidden_size;
        let q_out = config.num_heads * config.head_dim;
        let kv_out = config.num_kv_heads * config.head_dim;
        let qkv_bias = config.attention_bias;
        let head_norm = || {
            spec.qk_norm
                .then(|| Norm::of(config, config.head_dim, device))
        };
        Attention {
            q: linear::layer(d, q_out, qkv_bias, init, device),
            k: linear::layer(d, kv_out, qkv_bias, init, device),
            v: linear::layer(d, kv_out, qkv_bias, init, device),
            o: linear::layer(q_out, d, spec.out_bias, init, device),
            q_norm: head_norm(),
            k_norm: head_norm(),
            num_heads: config.num_heads,
            num_kv_heads: config.num_kv_heads,
            head_dim: config.head_dim,
            scale: config.attention_scale(),
        }
    }

    /// Attends `x` `[batch, len, hidden]` to the cached keys of `layer` plus its own, `mask`
    /// (`true`: not attended) saying which; the projections through `packed` when given
    /// (decoding).
    ///
    /// Grouped-query attention without copying keys: the `group` query heads of one key/value
    /// head are stacked along the sequence axis, `[batch, kv_heads, group * len, head_dim]`,
    /// which is what the masks of [`ChunkInputs`](crate::cache::ChunkInputs) are laid out for.
    pub fn forward(
        &self,
        x: Tensor<3>,
        mask: &Tensor<4, Bool>,
        rope: Option<&RopeAngles>,
        cache: &mut KvCache,
        layer: usize,
        packed: Option<&BlockWeights>,
    ) -> Tensor<3> {
        let [batch, len, _] = x.dims();
        let (heads, kv_heads, hd) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let group = heads / kv_heads;
        let split = |t: Tensor<3>, n: usize| t.reshape([batch, len, n, hd]).swap_dims(1, 2);
        let [q, k, v]: [Tensor<3>; 3] =
            linear::forward_together(&[&self.q, &self.k, &self.v], packed.map(|p| &p.qkv), x)
                .try_into()
                .expect("three projections");
        let (mut q, mut k, v) = (split(q, heads), split(k, kv_heads), split(v, kv_heads));
        if let Some(norm) = &self.q_norm {
            q = norm.forward(q);
        }
        if let Some(norm) = &self.k_norm {
            k = norm.forward(k);
        }
        if let Some(rope) = rope {
            q = rope.rotate(q);
            k = rope.rotate(k);
        }
        let (k, v) = cache.append(layer, k, v);
        let q = q.reshape([batch, kv_heads, group * len, hd]);
        let out = attention(
            q,
            k,
            v,
            Some(mask.clone()),
            None,
            AttentionModuleOptions {
                scale: Some(self.scale),
                ..AttentionModuleOptions::default()
            },
        );
        let out = out
            .reshape([batch, heads, len, hd])
            .swap_dims(1, 2)
            .reshape([batch, len, heads * hd]);
        linear::forward_together(&[&self.o], packed.map(|p| &p.o), out)
            .pop()
            .expect("one projection")
    }
}
