//! The evaluation every run of the experiment gets: the initial policy, the gold and held-out
//! judges and the settings, in one place.

use bpo_data::PromptRecord;
use bpo_model::{Tokenizer, Transformer};

use crate::annotate::Annotator;
use crate::error::AlgoError;
use crate::eval::{EvalReport, EvalSettings, evaluate};

/// The initial policy, the judges and the settings every evaluation uses.
pub(crate) struct Evaluator {
    pub(crate) initial: Transformer,
    pub(crate) tokenizer: Tokenizer,
    pub(crate) gold: Box<dyn Annotator>,
    pub(crate) heldout: Option<Box<dyn Annotator>>,
    pub(crate) settings: EvalSettings,
}

impl Evaluator {
    /// The full evaluation of `model` on `prompts` (held-out judge and KL included).
    pub(crate) fn evaluate(
        &mut self,
        model: &Transformer,
        prompts: &[PromptRecord],
    ) -> Result<EvalReport, AlgoError> {
        let heldout = self
            .heldout
            .as_mut()
            .map(|h| h.as_mut() as &mut dyn Annotator);
        evaluate(
            model,
            Some(&self.initial),
            &self.tokenizer,
            prompts,
            self.gold.as_mut(),
            heldout,
            &self.settings,
        )
    }

    /// The gold win rate only (learning curves, tuning): no held-out judge, KL or interval.
    pub(crate) fn win_rate(
        &mut self,
        model: &Transformer,
        prompts: &[PromptRecord],
    ) -> Result<EvalReport, AlgoError> {
        let settings = EvalSettings {
            kl_samples: 0,
            bootstrap: 0,
            ..self.settings.clone()
        };
        evaluate(
            model,
            None,
            &self.tokenizer,
            prompts,
            self.gold.as_mut(),
            None,
            &settings,
        )
    }
}
