//! Sequence-classification checkpoints of Hugging Face (`LlamaForSequenceClassification`,
//! `Qwen3ForSequenceClassification`, ...): the reward models of TRL's `RewardTrainer`,
//! Skywork-Reward and the like.

use serde_json::{Value, json};

use crate::config::ModelConfig;
use crate::config::json::{field, opt_token, opt_usize, type_error};
use crate::error::ModelError;

/// The head of a `*ForSequenceClassification` checkpoint: `score.weight`
/// `[num_labels, hidden]` without a bias, applied to the final hidden state of the last token
/// that is not `pad_token_id` (transformers' pooling).
#[derive(Debug, Clone, PartialEq)]
pub struct ClassifierHead {
    /// Number of outputs (`num_labels`, or the length of `id2label`; 2 when neither is set,
    /// as transformers defaults).
    pub num_labels: usize,
    /// The id transformers' pooling skips from the right; `None`: the last token.
    pub pad_token_id: Option<u32>,
    /// The labels' names by index (`id2label`), where the config names them.
    pub label_names: Vec<String>,
}

/// The checkpoint name of the classifier's weight.
pub const SCORE_WEIGHT: &str = "score.weight";

impl ClassifierHead {
    /// The head a `config.json` declares: `Some` when its `architectures` name a
    /// `*ForSequenceClassification` class, `None` for a causal language model.
    pub fn from_hf_json(value: &Value) -> Result<Option<Self>, ModelError> {
        let obj = value
            .as_object()
            .ok_or_else(|| ModelError::Config("config.json is not a JSON object".into()))?;
        let classes = field(obj, "architectures").and_then(Value::as_array);
        let classifier = classes.is_some_and(|classes| {
            classes
                .iter()
                .filter_map(Value::as_str)
                .any(|c| c.ends_with("ForSequenceClassification"))
        });
        if !classifier {
            return Ok(None);
        }
        let names = match field(obj, "id2label") {
            Some(Value::Object(labels)) => {
                let mut named: Vec<(usize, String)> = labels
                    .iter()
                    .filter_map(|(i, n)| Some((i.parse().ok()?, n.as_str()?.to_owned())))
                    .collect();
                named.sort();
                named.into_iter().map(|(_, name)| name).collect()
            }
            Some(other) => return Err(type_error("id2label", "an object", other)),
            None => Vec::new(),
        };
        let labels = match opt_usize(obj, "num_labels")? {
            Some(n) => n,
            None if !names.is_empty() => names.len(),
            None => 2,
        };
        Ok(Some(ClassifierHead {
            num_labels: labels,
            pad_token_id: opt_token(obj, "pad_token_id")?,
            label_names: names,
        }))
    }

    /// The index of `label`: a number below `num_labels` or a name of `id2label`; an error
    /// listing the names otherwise.
    pub fn label_index(&self, label: &str) -> Result<usize, ModelError> {
        if let Ok(index) = label.parse::<usize>()
            && index < self.num_labels
        {
            return Ok(index);
        }
        self.label_names
            .iter()
            .position(|name| name == label)
            .ok_or_else(|| {
                ModelError::Config(format!(
                    "no label `{label}`: an index below {} or one of `{}`",
                    self.num_labels,
                    self.label_names.join("`, `")
                ))
            })
    }

    /// The `config.json` of a classifier with this head on a body of `config`, as transformers
    /// writes it (`architectures`, `num_labels` through `id2label`/`label2id`,
    /// `pad_token_id`).
    pub fn to_hf_json(&self, config: &ModelConfig) -> Value {
        let mut value = config.to_hf_json();
        let labels: serde_json::Map<String, Value> = (0..self.num_labels)
            .map(|i| (i.to_string(), json!(format!("LABEL_{i}"))))
            .collect();
        let ids: serde_json::Map<String, Value> = (0..self.num_labels)
            .map(|i| (format!("LABEL_{i}"), json!(i)))
            .collect();
        let obj = value.as_object_mut().expect("an object");
        obj.insert(
            "architectures".into(),
            json!([config.model_type.hf_classifier_class()]),
        );
        obj.insert("id2label".into(), Value::Object(labels));
        obj.insert("label2id".into(), Value::Object(ids));
        obj.insert("pad_token_id".into(), json!(self.pad_token_id));
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ModelType;

    #[test]
    fn classifiers_are_told_from_language_models() {
        let config = ModelConfig::preset(ModelType::QWEN3, "tiny", 100).unwrap();
        assert_eq!(
            ClassifierHead::from_hf_json(&config.to_hf_json()).unwrap(),
            None
        );
        let head = ClassifierHead {
            num_labels: 1,
            pad_token_id: Some(7),
            label_names: vec!["LABEL_0".into()],
        };
        let written = head.to_hf_json(&config);
        assert_eq!(
            written["architectures"][0],
            "Qwen3ForSequenceClassification"
        );
        assert_eq!(ClassifierHead::from_hf_json(&written).unwrap(), Some(head));
        assert_eq!(ModelConfig::from_hf_json(&written).unwrap(), config);
        let bare = json!({"architectures": ["LlamaForSequenceClassification"]});
        let default = ClassifierHead::from_hf_json(&bare).unwrap().unwrap();
        assert_eq!((default.num_labels, default.pad_token_id), (2, None));
    }
}
