//! Progress reporting: the CLI draws its progress bar and the experiment its learning curves
//! from an [`Observer`].

use bpo_model::burn::tensor::Device;
use bpo_model::device::Precision;
use bpo_model::spec::{load_source, resolve};
use bpo_model::{Tokenizer, Transformer};

use crate::config::LoraConfig;
use crate::error::AlgoError;
use crate::lora::check_targets;
use crate::metrics::MetricsRecord;
use crate::trainer::RunDir;

/// Receives progress while a run goes on.
pub trait Observer {
    /// A status line (loading, reference cache hits, where files went).
    fn message(&mut self, _text: &str) {}
    /// Optimizer step `step` of `total` finished with these metrics.
    fn step(&mut self, _step: usize, _total: usize, _record: &MetricsRecord) {}
    /// An online collection phase ended (1-based), `pairs_used` annotations spent so far;
    /// `policy` is the merged policy (e.g. to evaluate learning curves).
    fn phase_end(
        &mut self,
        _phase: usize,
        _pairs_used: usize,
        _policy: &Transformer,
    ) -> Result<(), AlgoError> {
        Ok(())
    }
}

/// Opens the device `spec` names at `precision` (see [`bpo_model::device::open_device`]) and
/// tells the observer which one it is.
pub fn open_device(
    spec: &str,
    precision: Precision,
    observer: &mut dyn Observer,
) -> Result<Device, AlgoError> {
    let selected = bpo_model::device::open_device(spec, precision)?;
    observer.message(&format!("device: {}", selected.description));
    Ok(selected.device)
}

/// Opens the device `spec` names at `precision` for training (autodiff) and loads `model` and
/// its tokenizer there, telling the observer what it does; checks the `lora` targets against
/// the model right away, before a run parses data or runs the model (a target that selects
/// nothing while others do is reported, not refused: the default names `gate`, which GPT-2
/// lacks). A model from the Hub cache has its repository and commit recorded in `dir`.
pub fn load_for_training(
    model: &str,
    spec: &str,
    precision: Precision,
    lora: Option<&LoraConfig>,
    dir: &mut RunDir,
    observer: &mut dyn Observer,
) -> Result<(Transformer, Tokenizer), AlgoError> {
    let device = open_device(spec, precision, observer)?.autodiff();
    let source = resolve(model)?;
    dir.model = source.hub_revision();
    match &dir.model {
        Some(revision) => {
            observer.message(&format!("loading {model} (Hub commit {})", revision.commit))
        }
        None => observer.message(&format!("loading {model}")),
    }
    let (model, tokenizer) = load_source(&source, &device)?;
    if let Some(lora) = lora {
        let targets = check_targets(&model, lora)?;
        for target in targets.unmatched {
            observer.message(&format!(
                "lora.targets: `{target}` selects no weight of this model (ignored)"
            ));
        }
    }
    Ok((model, tokenizer))
}

/// An observer that ignores everything.
pub struct Silent;

impl Observer for Silent {}
