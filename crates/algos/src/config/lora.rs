//! LoRA settings: rank, scale, targets and blocks, and the parameter paths they select.

use serde::{Deserialize, Serialize};

use crate::error::AlgoError;

/// LoRA adapters (absent: full fine-tuning).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoraConfig {
    /// Rank of each adapter. Default 16.
    pub rank: usize,
    /// Scale numerator: the update is `alpha / rank * A B`. Default 32.
    pub alpha: f64,
    /// Dropout on the adapter input. Default 0, the only value supported (bpo's adapters have no
    /// dropout yet).
    pub dropout: f64,
    /// Modules to adapt, by name: any of `q k v o gate up down` (Llama) / `q k v o up down`
    /// (GPT-2, where `up` is `c_fc`) in the blocks, `lm_head` (an untied output head), or
    /// regexes on parameter paths when they contain a `\` or `.`. Only weights PEFT can name
    /// may be selected (a run checks this right after loading the model). Default: all linear
    /// layers of the blocks.
    pub targets: Vec<String>,
    /// Adapt only these blocks (0-based), e.g. the last few: frozen blocks below the lowest
    /// adapted one need no backward pass. Default: all blocks.
    pub layers: Option<Vec<usize>>,
}

impl Default for LoraConfig {
    fn default() -> Self {
        LoraConfig {
            rank: 16,
            alpha: 32.0,
            dropout: 0.0,
            targets: ["q", "k", "v", "o", "gate", "up", "down"]
                .map(String::from)
                .to_vec(),
            layers: None,
        }
    }
}

impl LoraConfig {
    /// Rejects settings Burn's LoRA cannot honour.
    pub fn validate(&self) -> Result<(), AlgoError> {
        if self.rank == 0 {
            return Err(AlgoError::Config("lora.rank must be at least 1".into()));
        }
        if self.dropout != 0.0 {
            return Err(AlgoError::Config(
                "lora.dropout must be 0: adapter dropout is not implemented".into(),
            ));
        }
        if self.targets.is_empty() {
            return Err(AlgoError::Config("lora.targets is empty".into()));
        }
        if self.layers.as_ref().is_some_and(Vec::is_empty) {
            return Err(AlgoError::Config("lora.layers is empty".into()));
        }
        Ok(())
    }

    /// Regexes over parameter paths that select the adapted weights.
    pub fn patterns(&self) -> Vec<String> {
        let blocks = match &self.layers {
            Some(layers) => format!(
                "({})",
                layers
                    .iter()
                    .map(usize::to_string)
                    .collect::<Vec<_>>()
                    .join("|")
            ),
            None => "\\d+".to_owned(),
        };
        self.targets
            .iter()
            .map(|t| {
                if t.contains('\\') || t.contains('.') {
                    t.clone()
                } else if t == "lm_head" {
                    "^lm_head\\.weight$".to_owned()
                } else {
                    let field = match t.as_str() {
                        "q" | "k" | "v" | "o" => format!("attn\\.{t}"),
                        other => format!("mlp\\.{other}"),
                    };
                    format!("^layers\\.{blocks}\\.{field}\\.weight$")
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lora_layers_restrict_the_patterns() {
        let all = LoraConfig::default();
        assert_eq!(all.patterns()[0], "^layers\\.\\d+\\.attn\\.q\\.weight$");
        let some = LoraConfig {
            layers: Some(vec![3, 4]),
            targets: vec!["down".into()],
            ..LoraConfig::default()
        };
        assert_eq!(
            some.patterns(),
            vec!["^layers\\.(3|4)\\.mlp\\.down\\.weight$"]
        );
        let none = LoraConfig {
            layers: Some(vec![]),
            ..LoraConfig::default()
        };
        assert!(none.validate().is_err());
    }

    #[test]
    fn lora_targets_become_path_regexes() {
        let l = LoraConfig::default();
        let p = l.patterns();
        assert_eq!(p[0], "^layers\\.\\d+\\.attn\\.q\\.weight$");
        assert_eq!(p[4], "^layers\\.\\d+\\.mlp\\.gate\\.weight$");
        let head = LoraConfig {
            targets: vec!["lm_head".into()],
            ..LoraConfig::default()
        };
        assert_eq!(head.patterns(), vec!["^lm_head\\.weight$"]);
        let mut bad = l.clone();
        bad.dropout = 0.1;
        assert!(bad.validate().is_err());
    }
}
