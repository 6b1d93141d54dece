//! Causal self-attention with grouped-query heads, optional RoPE and a KV cache.

use burn::module::Module;
use burn::nn::{Initializer, Linear};
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, Device, Tensor};

use crate::cache::KvCache;
use crate::config::ModelConfig;
use crate::decoding::BlockWeights;
use crate::flex;
use crate::linear::{self, Products};
use crate::mask::LayerMask;
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
    /// saying which; the projections as `products` says.
    pub fn forward(
        &self,
        x: Tensor<3>,
        mask: &LayerMask,
        rope: Option<&RopeAngles>,
        cache: &mut KvCache,
        layer: usize,
        products: Products<'_, BlockWeights>,
    ) -> Tensor<3> {
        let [q, k, v]: [Tensor<3>; 3] =
            linear::forward_together(&[&self.q, &self.k, &self.v], products.map(|p| &p.qkv), x)
                .try_into()
                .expect("three projections");
        let q = self.heads(q, self.num_heads, &self.q_norm, rope);
        let k = self.heads(k, self.num_kv_heads, &self.k_norm, rope);
        let v = self.heads(v, self.num_kv_heads, &None, None);
        let (k, v) = cache.append(layer, k, v);
        self.attend(q, k, v, mask, products)
    }

    /// The keys and values of `x` `[batch, len, hidden]`, `[batch, kv_heads, len, head_dim]`
    /// each: the part of [`Attention::forward`] before the cache; the products in bf16 when
    /// `bf16` ([`linear::forward`]).
    pub(crate) fn keys_values(
        &self,
        x: Tensor<3>,
        rope: Option<&RopeAngles>,
        bf16: bool,
    ) -> (Tensor<4>, Tensor<4>) {
        let k = linear::forward(&self.k, x.clone(), bf16);
        let v = linear::forward(&self.v, x, bf16);
        (
            self.heads(k, self.num_kv_heads, &self.k_norm, rope),
            self.heads(v, self.num_kv_heads, &None, None),
        )
    }

    /// The queries of `x` `[batch, len, hidden]`, `[batch, heads, len, head_dim]`; the product
    /// in bf16 when `bf16`.
    pub(crate) fn queries(&self, x: Tensor<3>, rope: Option<&RopeAngles>, bf16: bool) -> Tensor<4> {
        let q = linear::forward(&self.q, x, bf16);
        self.heads(q, self.num_heads, &self.q_norm, rope)
    }

    /// A projection `[batch, len, n * head_dim]` as `n` heads `[batch, n, len, head_dim]`, each
    /// normalised by `norm` and rotated by `rope` when given.
    fn heads(
        &self,
        t: Tensor<3>,
        n: usize,
        norm: &Option<Norm>,
        rope: Option<&RopeAngles>,
    ) -> Tensor<4> {
        let [batch, len, _] = t.dims();
        let mut t = t.reshape([batch, len, n, self.head_dim]).swap_dims(1, 2);
        if let Some(norm) = norm {
            t = norm.forward(t);
        }
        match rope {
            Some(rope) => rope.rotate(t),
            None => t,
        }
    }

    /// The attention of queries `q` `[batch, heads, len, head_dim]` over all keys and values
    /// (cached ones first), `mask` saying which each sees, through the output projection:
    /// `[batch, len, hidden]`. On flex (f32), the fused attention of [`flex::attention`];
    /// elsewhere Burn's ([`Attention::unfused`]).
    pub(crate) fn attend(
        &self,
        q: Tensor<4>,
        k: Tensor<4>,
        v: Tensor<4>,
        mask: &LayerMask,
        products: Products<'_, BlockWeights>,
    ) -> Tensor<3> {
        let [batch, heads, len, hd] = q.dims();
        let out = match flex::attention(&q, &k, &v, mask.ranges(), self.scale) {
            Some(out) => out,
            None => self.unfused(q, k, v, mask.dense()),
        };
        let out = out.swap_dims(1, 2).reshape([batch, len, heads * hd]);
        linear::forward_together(&[&self.o], products.map(|p| &p.o), out)
            .pop()
            .expect("one projection")
    }

    /// Burn's attention of `q` `[batch, heads, len, head_dim]` over all keys and values, with the
    /// dense `mask`: grouped-query attention without copying keys, the `group` query heads of one
    /// key/value head stacked along the sequence axis, `[batch, kv_heads, group * len,
    /// head_dim]`, as the mask is laid out. Without autodiff at Burn's default scale (the
    /// queries scaled first when the model's differs): the GPU backends run their fused
    /// attention (cubek) only then.
    fn unfused(
        &self,
        q: Tensor<4>,
        k: Tensor<4>,
        v: Tensor<4>,
        mask: Tensor<4, Bool>,
    ) -> Tensor<4> {
        let [batch, heads, len, hd] = q.dims();
        let q = q.reshape([
            batch,
            self.num_kv_heads,
            heads / self.num_kv_heads * len,
            hd,
        ]);
        let default = 1.0 / (hd as f64).sqrt();
        let (q, scale) = if q.is_autodiff() {
            (q, Some(self.scale))
        } else if self.scale == default {
            (q, None)
        } else {
            (q * ((self.scale / default) as f32), None)
        };
        let options = AttentionModuleOptions {
            scale,
            ..AttentionModuleOptions::default()
        };
        attention(q, k, v, Some(mask), None, options).reshape([batch, heads, len, hd])
    }
}
