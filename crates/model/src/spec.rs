//! Model spec strings, accepted by every command: a GGUF file, a Hugging Face directory (our
//! checkpoints included), a Hugging Face Hub id `ORG/NAME[@REVISION]` (through the shared Hub
//! cache, see `hub`), or a known alias such as `smollm2-135m` (fetched on first use). A local
//! path wins over a Hub id of the same spelling, as in transformers.

use std::path::{Path, PathBuf};

use burn::tensor::Device;

use crate::error::ModelError;
use crate::fetch::{KNOWN_MODELS, default_cache_dir, fetch, known_model};
use crate::hub::{self, HubId, HubRevision, HubSettings};
use crate::tokenizer::Tokenizer;
use crate::transformer::Transformer;
use crate::weights::gguf::GgufFile;
use crate::weights::hf_dir;

/// Where a model's weights and tokenizer live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// A GGUF file (weights, config and tokenizer in one).
    Gguf(PathBuf),
    /// A directory with `config.json`, safetensors weights and `tokenizer.json`.
    HfDir(PathBuf),
}

impl ModelSource {
    /// The file or directory.
    pub fn path(&self) -> &Path {
        match self {
            ModelSource::Gguf(p) | ModelSource::HfDir(p) => p,
        }
    }

    /// The Hub repository and commit, when this is a snapshot directory of the Hub cache (as a
    /// Hub id resolves to, or such a directory given by its path).
    pub fn hub_revision(&self) -> Option<HubRevision> {
        match self {
            ModelSource::HfDir(dir) => {
                HubRevision::of_snapshot(&dir.canonicalize().unwrap_or(dir.clone()))
            }
            ModelSource::Gguf(_) => None,
        }
    }
}

fn spec_err(spec: &str, message: String) -> ModelError {
    ModelError::Spec {
        spec: spec.to_owned(),
        message,
    }
}

/// Resolves a spec to a source, fetching a known alias into the cache if needed.
pub fn resolve(spec: &str) -> Result<ModelSource, ModelError> {
    if let Some(known) = known_model(spec) {
        let dir = default_cache_dir();
        let path = dir.join(known.file_name());
        if !path.exists() {
            eprintln!("fetching {spec} into {} (first use)", dir.display());
        }
        return fetch(known, &dir).map(ModelSource::Gguf);
    }
    let path = PathBuf::from(spec);
    if path.is_dir() {
        if path.join("config.json").exists() {
            return Ok(ModelSource::HfDir(path));
        }
        return Err(spec_err(
            spec,
            "directory has no config.json (expected a Hugging Face model directory)".into(),
        ));
    }
    if path.is_file() {
        let mut magic = [0u8; 4];
        let is_gguf = std::fs::File::open(&path)
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
            .is_ok()
            && &magic == b"GGUF";
        if is_gguf {
            return Ok(ModelSource::Gguf(path));
        }
        return Err(spec_err(
            spec,
            "file is not GGUF (expected a .gguf file or a model directory)".into(),
        ));
    }
    if let Some(id) = HubId::parse(spec) {
        return hub::snapshot(&id, &HubSettings::from_env()).map(ModelSource::HfDir);
    }
    let aliases: Vec<&str> = KNOWN_MODELS.iter().map(|m| m.alias).collect();
    Err(spec_err(
        spec,
        format!(
            "no such file or directory (a model is a .gguf file, a Hugging Face directory, a Hub id \
             ORG/NAME[@REVISION], or one of: {})",
            aliases.join(", ")
        ),
    ))
}

/// Loads only the tokenizer of a spec (a GGUF file may hold just tokenizer metadata).
pub fn load_tokenizer(spec: &str) -> Result<Tokenizer, ModelError> {
    match resolve(spec)? {
        ModelSource::Gguf(path) => Tokenizer::from_gguf(&GgufFile::open(&path)?),
        ModelSource::HfDir(dir) => Tokenizer::from_dir(&dir),
    }
}

/// Loads model and tokenizer of a spec onto `device`.
pub fn load(spec: &str, device: &Device) -> Result<(Transformer, Tokenizer), ModelError> {
    load_source(&resolve(spec)?, device)
}

/// Loads model and tokenizer from a resolved source onto `device`.
pub fn load_source(
    source: &ModelSource,
    device: &Device,
) -> Result<(Transformer, Tokenizer), ModelError> {
    match source {
        ModelSource::Gguf(path) => {
            let file = GgufFile::open(path)?;
            let config = file.config()?;
            let tokenizer = Tokenizer::from_gguf(&file)?;
            let model = Transformer::from_tensor_map(&config, file.tensor_map(&config)?, device)?;
            Ok((model, tokenizer))
        }
        ModelSource::HfDir(dir) => {
            let config = hf_dir::read_config(dir)?;
            let tokenizer = Tokenizer::from_dir(dir)?;
            let model = Transformer::from_tensor_map(&config, hf_dir::read_tensors(dir)?, device)?;
            Ok((model, tokenizer))
        }
    }
}

/// Saves model and tokenizer as a Hugging Face directory (atomically).
pub fn save_hf(dir: &Path, model: &Transformer, tokenizer: &Tokenizer) -> Result<(), ModelError> {
    hf_dir::write(dir, &model.config, &model.to_tensor_map(), tokenizer)
}
