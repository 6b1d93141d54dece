//! A reward model: our transformer with a scalar head on the hidden state of the last token,
//! saved as a Hugging Face body plus `head.json`.

use std::path::Path;

use bpo_model::burn;
use bpo_model::burn::module::{Module, Param};
use bpo_model::burn::nn::{Initializer, Linear, LinearConfig};
use bpo_model::burn::tensor::{Device, Int, Tensor, TensorData};
use bpo_model::fsutil::{write_atomic, write_dir_atomic};
use bpo_model::host::to_f32_vec;
use bpo_model::seed::seeded_init;
use bpo_model::spec::save_hf;
use bpo_model::{TokenBatch, Tokenizer, Transformer, load};
use serde::Deserialize;

use crate::error::AlgoError;
use crate::lora::merged;
use crate::trainer::{Merge, MergeRule};

/// A transformer with a scalar head: the reward of a sequence is `head(h_last)`, where `h_last`
/// is the final hidden state of its last real token.
#[derive(Module, Debug)]
pub struct RewardModel {
    /// The transformer body (its vocabulary head is unused).
    pub backbone: Transformer,
    /// `hidden -> 1`.
    pub head: Linear,
}

impl RewardModel {
    /// Puts a fresh head (N(0, 1/hidden), drawn from `seed`) on `backbone`.
    pub fn new(backbone: Transformer, seed: u64) -> Self {
        let device = backbone.device();
        let hidden = backbone.config.hidden_size;
        let head = seeded_init(&device, seed, || {
            LinearConfig::new(hidden, 1)
                .with_initializer(Initializer::Normal {
                    mean: 0.0,
                    std: 1.0 / (hidden as f64).sqrt(),
                })
                .init(&device)
        });
        RewardModel { backbone, head }
    }

    /// Rewards `[rows]` of right-padded sequences.
    pub fn forward(&self, batch: &TokenBatch) -> Tensor<1> {
        let hidden = self
            .backbone
            .forward_hidden(batch, &mut self.backbone.new_cache());
        let [rows, len, d] = hidden.dims();
        let last: Vec<i64> = (0..rows)
            .map(|r| {
                let n = batch.row_mask(r).iter().filter(|m| **m).count().max(1);
                (r * len + n - 1) as i64
            })
            .collect();
        let index = Tensor::<1, Int>::from_data(TensorData::new(last, [rows]), &hidden.device());
        let picked = hidden.reshape([rows * len, d]).select(0, index);
        self.head.forward(picked).reshape([rows])
    }

    /// Writes the model to `dir`: the body in Hugging Face layout under `model/` (adapters
    /// merged), the head as `head.json`.
    pub fn save(&self, dir: &Path, tokenizer: &Tokenizer) -> Result<(), AlgoError> {
        let body = merged(&self.backbone);
        let head = self.head.valid();
        write_dir_atomic(dir, |tmp| {
            save_hf(&tmp.join("model"), &body, tokenizer)?;
            let doc = serde_json::json!({
                "weight": to_f32_vec(head.weight.val()),
                "bias": head.bias.as_ref().map(|b| to_f32_vec(b.val())),
            });
            write_atomic(&tmp.join("head.json"), doc.to_string().as_bytes())
        })?;
        Ok(())
    }

    /// Loads a model written by [`RewardModel::save`].
    pub fn load(dir: &Path, device: &Device) -> Result<(Self, Tokenizer), AlgoError> {
        let (backbone, tokenizer) = load(&dir.join("model").display().to_string(), device)?;
        let path = dir.join("head.json");
        let text = std::fs::read_to_string(&path).map_err(|e| AlgoError::io(&path, e))?;
        #[derive(Deserialize)]
        struct Head {
            weight: Vec<f32>,
            bias: Option<Vec<f32>>,
        }
        let head: Head = serde_json::from_str(&text)
            .map_err(|e| AlgoError::Config(format!("{}: {e}", path.display())))?;
        let hidden = backbone.config.hidden_size;
        if head.weight.len() != hidden || head.bias.as_ref().is_some_and(|b| b.len() != 1) {
            return Err(AlgoError::Config(format!(
                "{}: expected a weight of {hidden} values and one bias",
                path.display()
            )));
        }
        let mut linear = LinearConfig::new(hidden, 1).init(device);
        linear.weight = Param::from_tensor(Tensor::from_data(
            TensorData::new(head.weight, [hidden, 1]),
            device,
        ));
        linear.bias = head
            .bias
            .map(|b| Param::from_tensor(Tensor::from_data(TensorData::new(b, [1]), device)));
        Ok((
            RewardModel {
                backbone,
                head: linear,
            },
            tokenizer,
        ))
    }
}

impl Merge for RewardModel {
    /// Reward models train as one member (no ensemble): the merge folds its adapters in.
    fn merge(members: &[&Self], _rule: MergeRule) -> Self {
        assert_eq!(members.len(), 1, "a reward model trains as one member");
        RewardModel {
            backbone: merged(&members[0].backbone),
            head: members[0].head.valid(),
        }
    }
}
