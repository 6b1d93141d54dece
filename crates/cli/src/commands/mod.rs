//! One module per subcommand, and the global flags they share.

use anyhow::Result;
use bpo_model::burn::tensor::Device;
use bpo_model::device::{Precision, open_device};

pub mod data;
pub mod eval;
pub mod experiment;
pub mod export;
pub mod fetch;
pub mod flags;
pub mod generate;
pub mod info;
pub mod init;
pub mod logprobs;
pub mod online;
pub mod rm;
pub mod tokenize;
pub mod train;

/// The global `--device` and `--dtype` flags.
#[derive(Debug, Clone, Default)]
pub struct Compute {
    /// `--device`, when given.
    pub device: Option<String>,
    /// `--dtype`, when given.
    pub dtype: Option<Precision>,
}

impl Compute {
    /// Config overrides (`--set` entries) for a config with `device` and `dtype` fields under
    /// `prefix` (e.g. `online.`): the flags given win over the config file.
    pub fn sets(&self, prefix: &str) -> Vec<String> {
        let mut sets = Vec::new();
        if let Some(device) = &self.device {
            sets.push(format!("{prefix}device=\"{device}\""));
        }
        if let Some(dtype) = self.dtype {
            let name = serde_json::to_value(dtype).expect("json");
            sets.push(format!("{prefix}dtype={name}"));
        }
        sets
    }

    /// Opens the device (default `auto`) at the precision (default f32), printing which it is.
    pub fn open(&self) -> Result<Device> {
        let device = self.device.as_deref().unwrap_or("auto");
        let selected = open_device(device, self.dtype.unwrap_or_default())?;
        eprintln!("device: {}", selected.description);
        Ok(selected.device)
    }
}
