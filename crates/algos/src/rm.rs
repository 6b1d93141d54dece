//! Reward models (`bpo rm train`): our transformer with a scalar head on the hidden state of the
//! last token, trained on a pair file with the Bradley-Terry loss
//! `-log sigmoid(r(x, y_w) - r(x, y_l))`, and used as an annotator.

use std::path::{Path, PathBuf};

use bpo_data::tokenize::{tokenize_prompt_content, tokenize_response};
use bpo_data::{Content, TokenizedPair, bucketed_batches};
use bpo_model::burn;
use bpo_model::burn::module::Module;
use bpo_model::burn::nn::{Linear, LinearConfig};
use bpo_model::burn::optim::GradientsParams;
use bpo_model::burn::tensor::activation::log_sigmoid;
use bpo_model::burn::tensor::{Device, Int, Tensor, TensorData};
use bpo_model::fsutil::{write_atomic, write_dir_atomic};
use bpo_model::host::to_f32_vec;
use bpo_model::seed::seeded_init;
use bpo_model::spec::save_hf;
use bpo_model::{PaddingSide, TokenBatch, Tokenizer, Transformer, load, parse_device};
use serde::{Deserialize, Serialize};

use crate::annotate::Annotator;
use crate::config::{DataConfig, LoraConfig, OptimConfig};
use crate::error::AlgoError;
use crate::lora::{apply_lora, merged};
use crate::metrics::{MetricsLog, MetricsRecord};
use crate::optim::{adamw, clip_grad_norm};
use crate::train::{Observer, read_pairs};

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
                .with_initializer(bpo_model::burn::nn::Initializer::Normal {
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
        linear.weight = bpo_model::burn::module::Param::from_tensor(Tensor::from_data(
            TensorData::new(head.weight, [hidden, 1]),
            device,
        ));
        linear.bias = head.bias.map(|b| {
            bpo_model::burn::module::Param::from_tensor(Tensor::from_data(
                TensorData::new(b, [1]),
                device,
            ))
        });
        Ok((
            RewardModel {
                backbone,
                head: linear,
            },
            tokenizer,
        ))
    }
}

/// Sequences of the pairs' chosen rows then rejected rows.
fn pair_rows(pairs: &[&TokenizedPair], pad_id: u32) -> TokenBatch {
    let rows: Vec<Vec<u32>> = pairs
        .iter()
        .map(|p| [p.prompt.as_slice(), &p.chosen].concat())
        .chain(
            pairs
                .iter()
                .map(|p| [p.prompt.as_slice(), &p.rejected].concat()),
        )
        .collect();
    TokenBatch::padded(&rows, pad_id, PaddingSide::Right)
}

/// Bradley-Terry loss and accuracy of a batch of pairs.
fn bt_loss(model: &RewardModel, pairs: &[&TokenizedPair], pad_id: u32) -> (Tensor<1>, f64) {
    let n = pairs.len();
    let rewards = model.forward(&pair_rows(pairs, pad_id));
    let margin = rewards.clone().narrow(0, 0, n) - rewards.narrow(0, n, n);
    let accuracy = to_f32_vec(margin.clone().detach())
        .iter()
        .filter(|m| **m > 0.0)
        .count() as f64
        / n.max(1) as f64;
    (-log_sigmoid(margin).mean(), accuracy)
}

/// `bpo rm train`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewardModelConfig {
    /// The body to start from (model spec).
    pub model: String,
    /// Device. Default `flex`.
    #[serde(default = "default_device")]
    pub device: String,
    /// Pair files (`data.dev` gives the held-out accuracy).
    pub data: DataConfig,
    /// LoRA on the body (the head is always trained); none = full fine-tuning.
    #[serde(default)]
    pub lora: Option<LoraConfig>,
    /// Optimizer.
    #[serde(default)]
    pub optim: OptimConfig,
    /// Output directory (the model goes to `<out>/reward-model`). Default `runs/rm`.
    #[serde(default = "default_out")]
    pub out: PathBuf,
    /// Pairs per step. Default 8.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Passes over the pairs. Default 1.
    #[serde(default = "default_epochs")]
    pub epochs: usize,
    /// Seed of data order, head and LoRA initialisation. Default 0.
    #[serde(default)]
    pub seed: u64,
}

fn default_device() -> String {
    "flex".into()
}
fn default_out() -> PathBuf {
    PathBuf::from("runs/rm")
}
fn default_batch() -> usize {
    8
}
fn default_epochs() -> usize {
    1
}

/// What `bpo rm train` produced.
pub struct RewardModelOutcome {
    /// Where the model was written.
    pub model_dir: PathBuf,
    /// Metrics of the last step, with `dev/accuracy` when there is dev data.
    pub last: MetricsRecord,
}

/// Trains a reward model on `config.data.train` with the Bradley-Terry loss.
pub fn train_reward_model(
    config: &RewardModelConfig,
    observer: &mut dyn Observer,
) -> Result<RewardModelOutcome, AlgoError> {
    config.optim.validate()?;
    if config.batch_size == 0 || config.epochs == 0 {
        return Err(AlgoError::Config(
            "batch_size and epochs must be at least 1".into(),
        ));
    }
    let device = parse_device(&config.device)?.autodiff();
    observer.message(&format!("loading {}", config.model));
    let (body, tokenizer) = load(&config.model, &device)?;
    let pad_id = tokenizer.pad_id();
    let (pairs, _, _) = read_pairs(&config.data.train, &config.data, &tokenizer)?;
    let dev = config
        .data
        .dev
        .as_deref()
        .map(|p| read_pairs(p, &config.data, &tokenizer).map(|(pairs, _, _)| pairs))
        .transpose()?;
    let body = match &config.lora {
        Some(lora) => apply_lora(body, lora, config.seed)?,
        None => body,
    };
    let mut model = RewardModel::new(body, config.seed);
    let mut optimizer = adamw(&config.optim);
    let lengths: Vec<usize> = pairs
        .iter()
        .map(|p| p.prompt.len() + p.chosen.len().max(p.rejected.len()))
        .collect();
    let steps: Vec<Vec<usize>> = (0..config.epochs)
        .flat_map(|e| bucketed_batches(&lengths, config.batch_size, 16, config.seed + e as u64))
        .collect();
    std::fs::create_dir_all(&config.out).map_err(|e| AlgoError::io(&config.out, e))?;
    let mut metrics = MetricsLog::create(&config.out.join("metrics.jsonl"))?;
    let mut last = MetricsRecord::new();
    for (step, indices) in steps.iter().enumerate() {
        let batch: Vec<&TokenizedPair> = indices.iter().map(|&i| &pairs[i]).collect();
        let (loss, accuracy) = bt_loss(&model, &batch, pad_id);
        let value = to_f32_vec(loss.clone().detach())[0] as f64;
        if !value.is_finite() {
            return Err(AlgoError::NonFinite {
                step: step + 1,
                what: "loss".into(),
            });
        }
        let mut grads = GradientsParams::from_grads(loss.backward(), &model);
        let grad_norm = clip_grad_norm(&model, &mut grads, config.optim.max_grad_norm);
        let lr = config.optim.lr_at(step, steps.len());
        model = optimizer.step(lr, model, grads);
        let mut record = MetricsRecord::from([
            ("step".into(), (step + 1) as f64),
            ("loss".into(), value),
            ("accuracy".into(), accuracy),
            ("grad_norm".into(), grad_norm),
            ("lr".into(), lr),
        ]);
        if step + 1 == steps.len()
            && let Some(dev) = &dev
        {
            record.insert(
                "dev/accuracy".into(),
                accuracy_on(&model.valid(), dev, pad_id),
            );
        }
        metrics.append(record.clone())?;
        observer.step(step + 1, steps.len(), &record);
        last = record;
    }
    let model_dir = config.out.join("reward-model");
    model.save(&model_dir, &tokenizer)?;
    observer.message(&format!("reward model written to {}", model_dir.display()));
    Ok(RewardModelOutcome { model_dir, last })
}

/// Share of `pairs` whose chosen response gets the higher reward.
pub fn accuracy_on(model: &RewardModel, pairs: &[TokenizedPair], pad_id: u32) -> f64 {
    let mut right = 0.0;
    for chunk in pairs.chunks(16) {
        let refs: Vec<&TokenizedPair> = chunk.iter().collect();
        right += bt_loss(model, &refs, pad_id).1 * chunk.len() as f64;
    }
    right / pairs.len().max(1) as f64
}

/// A reward model as an annotator: the prompt text and response are tokenised as in training
/// (the response ends with EOS) and scored `batch_size` at a time.
pub struct RewardModelAnnotator {
    model: RewardModel,
    tokenizer: Tokenizer,
    dir: PathBuf,
    batch_size: usize,
}

impl RewardModelAnnotator {
    /// Loads the reward model in `dir` on `device`.
    pub fn load(dir: &Path, device: &str, batch_size: usize) -> Result<Self, AlgoError> {
        let (model, tokenizer) = RewardModel::load(dir, &parse_device(device)?)?;
        Ok(RewardModelAnnotator {
            model,
            tokenizer,
            dir: dir.to_path_buf(),
            batch_size: batch_size.max(1),
        })
    }
}

impl Annotator for RewardModelAnnotator {
    fn name(&self) -> String {
        format!("reward model {}", self.dir.display())
    }

    fn score(&mut self, items: &[(&str, &str)]) -> Result<Vec<f64>, AlgoError> {
        let mut scores = Vec::with_capacity(items.len());
        for chunk in items.chunks(self.batch_size) {
            let mut rows = Vec::with_capacity(chunk.len());
            for (prompt, response) in chunk {
                let mut ids = tokenize_prompt_content(&Content::text(*prompt), &self.tokenizer)?;
                ids.extend(tokenize_response(
                    &Content::text(*response),
                    &self.tokenizer,
                )?);
                rows.push(ids);
            }
            let batch = TokenBatch::padded(&rows, self.tokenizer.pad_id(), PaddingSide::Right);
            scores.extend(
                to_f32_vec(self.model.forward(&batch))
                    .into_iter()
                    .map(f64::from),
            );
        }
        Ok(scores)
    }
}
