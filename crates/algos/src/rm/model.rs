//! A reward model: our transformer with a scalar head, in transformers' sequence-classification
//! format (`LlamaForSequenceClassification`, `Qwen3ForSequenceClassification`, ...): `score`
//! `[1, hidden]` without a bias on the hidden state of the last token that is not
//! `pad_token_id`. `bpo rm train` writes it, transformers and TRL load it, and bpo loads theirs.

use std::path::Path;

use bpo_model::burn;
use bpo_model::burn::module::{Module, Param};
use bpo_model::burn::nn::{Initializer, Linear, LinearConfig};
use bpo_model::burn::tensor::{Device, Int, Tensor, TensorData};
use bpo_model::config::{ClassifierHead, SCORE_WEIGHT};
use bpo_model::host::to_f32_vec;
use bpo_model::seed::seeded_init;
use bpo_model::spec::{ModelSource, resolve};
use bpo_model::weights::{HostTensor, hf_dir};
use bpo_model::{TokenBatch, Tokenizer, Transformer};
use serde::{Deserialize, Serialize};

use crate::error::AlgoError;
use crate::lora::merged;
use crate::trainer::{Merge, MergeRule};

/// The `config.json` key where bpo records how a reward model it trained read its inputs.
const INPUT_KEY: &str = "bpo_reward_input";

/// How a (prompt, response) becomes a reward model's input.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RewardInput {
    /// What the model's `config.json` records (`bpo rm train` writes `plain`), else `chat` when
    /// its tokenizer has a chat template, else `plain`.
    #[default]
    Auto,
    /// The model's chat template over `[user: prompt, assistant: response]` (Skywork, ArmoRM
    /// and TRL's conversational reward models).
    Chat,
    /// A text prompt as text followed by the response and EOS; a conversation (which has no
    /// plain form) through the template, as `bpo rm train` tokenises its pairs.
    Plain,
}

/// A transformer with a scalar head: the reward of a sequence is `score(h)`, where `h` is the
/// final hidden state of its last real token that is not `pad_token_id` (transformers'
/// pooling: a sequence ending with the pad id is pooled before it).
#[derive(Module, Debug)]
pub struct RewardModel {
    /// The transformer body (its vocabulary head is unused).
    pub backbone: Transformer,
    /// `hidden -> 1`, without a bias.
    pub head: Linear,
    /// The id the pooling skips from the right; `None`: the last real token.
    #[module(skip)]
    pub pad_token_id: Option<u32>,
    /// How the model reads its inputs, when its `config.json` says.
    #[module(skip)]
    pub input: Option<RewardInput>,
}

impl RewardModel {
    /// Puts a fresh head (N(0, 1/hidden), drawn from `seed`) on `backbone`; sequences are
    /// pooled as transformers pools them with `pad_token_id`.
    pub fn new(backbone: Transformer, pad_token_id: Option<u32>, seed: u64) -> Self {
        let device = backbone.device();
        let hidden = backbone.config.hidden_size;
        let head = seeded_init(&device, seed, || {
            LinearConfig::new(hidden, 1)
                .with_bias(false)
                .with_initializer(Initializer::Normal {
                    mean: 0.0,
                    std: 1.0 / (hidden as f64).sqrt(),
                })
                .init(&device)
        });
        RewardModel {
            backbone,
            head,
            pad_token_id,
            input: None,
        }
    }

    /// Rewards `[rows]` of padded sequences (either side).
    pub fn forward(&self, batch: &TokenBatch) -> Tensor<1> {
        let hidden = self
            .backbone
            .forward_hidden(batch, &mut self.backbone.new_cache());
        let [rows, len, d] = hidden.dims();
        let pooled: Vec<i64> = (0..rows)
            .map(|r| {
                let ids = &batch.ids[r * len..(r + 1) * len];
                let real = batch.row_mask(r);
                let last = (0..len)
                    .rev()
                    .find(|&t| real[t] && self.pad_token_id.is_none_or(|pad| ids[t] != pad));
                // Only pad ids: transformers' argmax over an all-zero mask picks index 0 (a
                // padding position when the row is left-padded); bpo takes the first real token.
                let first_real = real.iter().position(|m| *m).unwrap_or(0);
                (r * len + last.unwrap_or(first_real)) as i64
            })
            .collect();
        let index = Tensor::<1, Int>::from_data(TensorData::new(pooled, [rows]), &hidden.device());
        let picked = hidden.reshape([rows * len, d]).select(0, index);
        self.head.forward(picked).reshape([rows])
    }

    /// Writes the model to `dir` as transformers writes a sequence classifier (adapters
    /// merged): `config.json` with `*ForSequenceClassification`, one label and `pad_token_id`,
    /// the body and `score.weight` in `model.safetensors`, the tokenizer.
    pub fn save(&self, dir: &Path, tokenizer: &Tokenizer) -> Result<(), AlgoError> {
        let body = merged(&self.backbone);
        let mut tensors = body.to_tensor_map();
        tensors.tensors.remove("lm_head.weight");
        let hidden = body.config.hidden_size;
        let score = to_f32_vec(self.head.valid().weight.val());
        tensors.insert(SCORE_WEIGHT, HostTensor::new(vec![1, hidden], score));
        let head = ClassifierHead {
            num_labels: 1,
            pad_token_id: self.pad_token_id,
            label_names: vec!["LABEL_0".into()],
        };
        let mut config = head.to_hf_json(&body.config);
        if let Some(input) = self.input {
            config[INPUT_KEY] = serde_json::to_value(input).expect("json");
        }
        hf_dir::write_with_config(dir, &config, &body.config, &tensors, tokenizer)?;
        Ok(())
    }

    /// Loads a sequence-classification reward model from a directory (written by
    /// [`RewardModel::save`], transformers or TRL) or a Hub id; its one label is the reward.
    pub fn load(spec: &str, device: &Device) -> Result<(Self, Tokenizer), AlgoError> {
        Self::load_label(spec, device, None)
    }

    /// [`RewardModel::load`] where the reward is `label` (an index or a name of `id2label`),
    /// which a model with several labels needs.
    pub fn load_label(
        spec: &str,
        device: &Device,
        label: Option<&str>,
    ) -> Result<(Self, Tokenizer), AlgoError> {
        let dir = match resolve(spec)? {
            ModelSource::HfDir(dir) => dir,
            ModelSource::Gguf(path) => {
                return Err(AlgoError::Config(format!(
                    "{}: a GGUF file holds a language model, not a reward model (a Hugging Face \
                     *ForSequenceClassification directory)",
                    path.display()
                )));
            }
        };
        let head = hf_dir::read_config_json(&dir, ClassifierHead::from_hf_json)?;
        let head = head.ok_or_else(|| not_a_classifier(&dir))?;
        let row = match (label, head.num_labels) {
            (Some(label), _) => head
                .label_index(label)
                .map_err(|e| AlgoError::Config(format!("{}: {e}", dir.display())))?,
            (None, 1) => 0,
            (None, n) => {
                return Err(AlgoError::Config(format!(
                    "{}: {n} labels (num_labels); choose the reward with the annotator's \
                     `label` (an index or one of `{}`)",
                    dir.display(),
                    head.label_names.join("`, `")
                )));
            }
        };
        let input = hf_dir::read_config_json(&dir, |v| {
            Ok(v.get(INPUT_KEY)
                .and_then(|i| serde_json::from_value::<RewardInput>(i.clone()).ok()))
        })?;
        let mut config = hf_dir::read_config(&dir)?;
        // A classifier has no vocabulary head: the body is loaded with the tied (unused) one.
        config.tie_word_embeddings = true;
        let mut tensors = hf_dir::read_tensors(&dir)?;
        let hidden = config.hidden_size;
        let scores = tensors.take(SCORE_WEIGHT, &[head.num_labels, hidden])?;
        let score = scores.data[row * hidden..(row + 1) * hidden].to_vec();
        tensors.tensors.remove("lm_head.weight");
        let backbone = Transformer::from_tensor_map(&config, tensors, device)?;
        let tokenizer = Tokenizer::from_dir(&dir)?;
        let mut linear = LinearConfig::new(hidden, 1).with_bias(false).init(device);
        linear.weight = Param::from_tensor(Tensor::from_data(
            TensorData::new(score, [hidden, 1]),
            device,
        ));
        let model = RewardModel {
            backbone,
            head: linear,
            pad_token_id: head.pad_token_id,
            input,
        };
        Ok((model, tokenizer))
    }
}

/// The error for a directory whose `config.json` is not a sequence classifier's.
fn not_a_classifier(dir: &Path) -> AlgoError {
    let older = dir.join("head.json").exists();
    AlgoError::Config(match older {
        true => format!(
            "{}: a reward model of an older bpo (a body and head.json), which this version no \
             longer reads: train it again with `bpo rm train`, which writes transformers' \
             sequence-classification format",
            dir.display()
        ),
        false => format!(
            "{}: config.json's `architectures` name no *ForSequenceClassification class: not a \
             reward model",
            dir.display()
        ),
    })
}

impl Merge for RewardModel {
    /// Reward models train as one member (no ensemble): the merge folds its adapters in.
    fn merge(members: &[&Self], _rule: MergeRule) -> Self {
        assert_eq!(members.len(), 1, "a reward model trains as one member");
        RewardModel {
            backbone: merged(&members[0].backbone),
            head: members[0].head.valid(),
            pad_token_id: members[0].pad_token_id,
            input: members[0].input,
        }
    }
}
