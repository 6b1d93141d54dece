//! Training a reward model with the Bradley-Terry loss `-log sigmoid(r(x, y_w) - r(x, y_l))`:
//! an [`Objective`] of the one trainer, so reward models get accumulation, checkpoints and
//! exact resume like every other run.

use std::path::{Path, PathBuf};

use bpo_data::TokenizedPair;
use bpo_model::burn::tensor::Tensor;
use bpo_model::burn::tensor::activation::log_sigmoid;
use bpo_model::device::Precision;
use bpo_model::host::to_f32_vec;
use bpo_model::{PaddingSide, TokenBatch};
use serde::{Deserialize, Serialize};

use crate::config::{DataConfig, LoraConfig, OptimConfig, RunConfig};
use crate::error::AlgoError;
use crate::lora::{apply_lora, check_targets};
use crate::metrics::MetricsRecord;
use crate::offline::{read_pairs, save_final_checkpoint};
use crate::rm::{RewardInput, RewardModel};
use crate::trainer::{
    Objective, Observer, Policy, RunDir, Schedule, Trainer, load_for_training, plan_steps,
    remaining,
};

/// `bpo rm train`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewardModelConfig {
    /// The body to start from (model spec). Required.
    pub model: String,
    /// Compute device (`auto`, `flex`, `wgpu`, `cuda`, ...). Default `auto`.
    #[serde(default = "bpo_model::device::default_spec")]
    pub device: String,
    /// Float precision: `f32` (default), `f16` or `bf16` (where the device supports it).
    #[serde(default)]
    pub dtype: Precision,
    /// Pair files (`data.dev` gives the held-out accuracy).
    pub data: DataConfig,
    /// LoRA on the body (the head is always trained); none = full fine-tuning.
    #[serde(default)]
    pub lora: Option<LoraConfig>,
    /// Optimizer.
    #[serde(default)]
    pub optim: OptimConfig,
    /// Loop settings (pairs per micro-batch, accumulation, epochs, checkpoints, seed of data
    /// order, head and LoRA). The model goes to `<run.out>/reward-model`, in transformers'
    /// sequence-classification format.
    #[serde(default)]
    pub run: RunConfig,
}

impl RewardModelConfig {
    /// Rejects impossible settings before any work is done.
    pub fn validate(&self) -> Result<(), AlgoError> {
        self.optim.validate()?;
        self.run.validate()?;
        crate::config::check_bf16_products(self.run.bf16_products, self.lora.is_some())?;
        self.lora.as_ref().map_or(Ok(()), LoraConfig::validate)
    }
}

/// What `bpo rm train` produced.
pub struct RewardModelOutcome {
    /// Where the model was written.
    pub model_dir: PathBuf,
    /// Metrics of the last step, with `dev/accuracy` when there is dev data.
    pub last: MetricsRecord,
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

/// Share of `pairs` whose chosen response gets the higher reward.
pub fn accuracy_on(model: &RewardModel, pairs: &[TokenizedPair], pad_id: u32) -> f64 {
    let mut right = 0.0;
    for chunk in pairs.chunks(16) {
        let refs: Vec<&TokenizedPair> = chunk.iter().collect();
        right += bt_loss(model, &refs, pad_id).1 * chunk.len() as f64;
    }
    right / pairs.len().max(1) as f64
}

/// The Bradley-Terry objective.
struct BradleyTerry {
    pairs: Vec<TokenizedPair>,
    dev: Option<Vec<TokenizedPair>>,
    pad_id: u32,
}

impl Objective<RewardModel> for BradleyTerry {
    fn lengths(&self) -> Vec<usize> {
        self.pairs.iter().map(TokenizedPair::longest).collect()
    }

    fn weight(&self, indices: &[usize]) -> f64 {
        indices.len() as f64
    }

    fn loss(
        &mut self,
        model: &RewardModel,
        indices: &[usize],
    ) -> Result<(Tensor<1>, MetricsRecord, usize), AlgoError> {
        let batch: Vec<&TokenizedPair> = indices.iter().map(|&i| &self.pairs[i]).collect();
        let tokens = batch
            .iter()
            .map(|p| 2 * p.prompt.len() + p.chosen.len() + p.rejected.len())
            .sum();
        let (loss, accuracy) = bt_loss(model, &batch, self.pad_id);
        let value = to_f32_vec(loss.clone().detach())[0] as f64;
        let record = MetricsRecord::from([("loss".into(), value), ("accuracy".into(), accuracy)]);
        Ok((loss, record, tokens))
    }

    fn evaluate(
        &mut self,
        policy: &Policy<RewardModel>,
    ) -> Result<Option<MetricsRecord>, AlgoError> {
        let Some(dev) = &self.dev else {
            return Ok(None);
        };
        let accuracy = accuracy_on(&policy.merged(), dev, self.pad_id);
        Ok(Some(MetricsRecord::from([(
            "dev/accuracy".into(),
            accuracy,
        )])))
    }
}

/// Trains a reward model on `config.data.train` with the Bradley-Terry loss; `resume`
/// continues from a checkpoint or run directory.
pub fn train_reward_model(
    config: &RewardModelConfig,
    resume: Option<&Path>,
    observer: &mut dyn Observer,
) -> Result<RewardModelOutcome, AlgoError> {
    config.validate()?;
    let mut dir = RunDir::create(
        &config.run.out,
        config,
        config.run.keep_checkpoints,
        &config.data.files(),
    )?;
    let (body, tokenizer) = load_for_training(
        &config.model,
        &config.device,
        config.dtype,
        config.lora.as_ref(),
        &mut dir,
        observer,
    )?;
    if let Some(lora) = &config.lora
        && check_targets(&body, lora)?
            .weights
            .iter()
            .any(|w| w == "lm_head.weight")
    {
        return Err(AlgoError::Config(
            "lora.targets select `lm_head`, which a reward model does not use (its scalar \
             head is trained in full)"
                .into(),
        ));
    }
    let pad_id = tokenizer.pad_id();
    let (pairs, _, _) = read_pairs(&config.data.train, &config.data, &tokenizer, &body.config)?;
    let dev = config
        .data
        .dev
        .as_deref()
        .map(|p| read_pairs(p, &config.data, &tokenizer, &body.config).map(|(pairs, _, _)| pairs))
        .transpose()?;
    let run = &config.run;
    let mut body = match &config.lora {
        Some(lora) => apply_lora(body, lora, run.seed)?,
        None => body,
    };
    body.gradient_checkpointing = run.gradient_checkpointing;
    body.bf16_products = run.bf16_products;
    let mut objective = BradleyTerry { pairs, dev, pad_id };
    let steps = plan_steps(&objective.lengths(), run);
    let schedule = Schedule {
        optim: config.optim.clone(),
        total_steps: steps.len(),
        eval_every: run.eval_every,
        save_every: run.save_every,
        save_at_end: false,
    };
    let mut reward_model = RewardModel::new(body, Some(pad_id), run.seed);
    // Scoring reads a (prompt, response) as the pairs were read here.
    reward_model.input = Some(RewardInput::Plain);
    let policy = Policy::single(reward_model, &config.optim);
    let (mut trainer, _) = Trainer::start::<()>(policy, schedule, dir, resume, None, observer)?;
    let progress = trainer.run(
        &mut objective,
        remaining(&steps, trainer.step)?,
        &|_| MetricsRecord::new(),
        &|_| (),
        observer,
    )?;
    let model_dir = run.out.join("reward-model");
    trainer.policy.first().save(&model_dir, &tokenizer)?;
    save_final_checkpoint(&trainer, None, &model_dir)?;
    observer.message(&format!("reward model written to {}", model_dir.display()));
    Ok(RewardModelOutcome {
        model_dir,
        last: progress.last,
    })
}
