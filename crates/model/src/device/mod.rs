//! The `--device` flag: `auto | flex | ndarray | wgpu | vulkan | metal | dx12 | gl | cuda[:N]`
//! to a Burn device, with a line saying what was picked (every command prints it once at start).
//!
//! `auto` (the default everywhere) takes CUDA when it is compiled in and a device is present,
//! else a wgpu adapter that is a real GPU (discrete, integrated or virtual; on Vulkan, Metal or
//! DX12), else the CPU (`flex`). A software adapter such as Mesa's lavapipe is never chosen by
//! `auto`, but `--device wgpu` takes it when it is all there is. OpenGL only runs when named.

#[cfg(feature = "wgpu")]
mod wgpu;

use burn::tensor::{Device, FloatDType, IntDType};
use serde::{Deserialize, Serialize};

use crate::error::ModelError;

/// The device names `--device` accepts, in the order they are listed to users.
pub const DEVICE_NAMES: &[&str] = &[
    "auto", "flex", "ndarray", "wgpu", "vulkan", "metal", "dx12", "gl", "cuda[:N]",
];

/// Sets what a process that uses bpo needs in its environment before Burn or a GPU driver
/// starts; a value the user set wins.
///
/// - `BURN_DEVICE=flex`: Burn creates a resumed optimizer's state on its default device, which
///   with a GPU backend compiled in is that backend, a panic on a machine without a GPU driver.
///   The state moves to the training device at the next step, so the CPU is always right.
/// - `NODEVICE_SELECT=1` when no display session is set (`XDG_RUNTIME_DIR` unset): Mesa's
///   implicit Vulkan layer `VK_LAYER_MESA_device_select` connects to Wayland while adapters are
///   enumerated (wgpu enables the Wayland surface extension), and on a headless machine
///   libwayland prints `error: XDG_RUNTIME_DIR is invalid or not set` to stderr. The layer
///   only orders GPUs by the display they drive; there is none, and bpo ranks adapters itself.
///
/// # Safety
/// Changes the process environment: call it first in `main`, while no other thread exists.
pub unsafe fn prepare_environment() {
    let defaults = [
        ("BURN_DEVICE", "flex", true),
        (
            "NODEVICE_SELECT",
            "1",
            std::env::var_os("XDG_RUNTIME_DIR").is_none(),
        ),
    ];
    for (name, value, wanted) in defaults {
        if wanted && std::env::var_os(name).is_none() {
            // SAFETY: the caller guarantees that no other thread exists.
            unsafe { std::env::set_var(name, value) };
        }
    }
}

/// The device spec of a config that names none: `auto`.
pub fn default_spec() -> String {
    "auto".into()
}

/// A device picked for a run and what it is (backend, adapter).
#[derive(Debug, Clone)]
pub struct SelectedDevice {
    /// The device.
    pub device: Device,
    /// E.g. `flex (CPU, 2 threads)` or `wgpu: NVIDIA H100 (Vulkan, discrete GPU)`.
    pub description: String,
}

/// The float precision of a run (`--dtype`, config field `dtype`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// 32-bit floats everywhere (the default, and the only precision bpo's CPU kernels use).
    #[default]
    F32,
    /// IEEE half precision for weights, activations and gradients.
    F16,
    /// bfloat16 for weights, activations and gradients.
    Bf16,
}

impl Precision {
    /// Parses `f32`, `f16` or `bf16` (case-insensitive).
    pub fn parse(s: &str) -> Result<Self, ModelError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "f32" | "float32" => Ok(Precision::F32),
            "f16" | "float16" | "half" => Ok(Precision::F16),
            "bf16" | "bfloat16" => Ok(Precision::Bf16),
            other => Err(ModelError::Device(format!(
                "unknown dtype `{other}` (one of: f32, f16, bf16)"
            ))),
        }
    }

    fn float_dtype(self) -> FloatDType {
        match self {
            Precision::F32 => FloatDType::F32,
            Precision::F16 => FloatDType::F16,
            Precision::Bf16 => FloatDType::BF16,
        }
    }
}

/// Makes `precision` the type of every float tensor created on `device` from now on (weights
/// loaded afterwards included). Call it before anything is created on the device; a device that
/// lacks the type is an error naming both.
pub fn set_precision(device: &mut Device, precision: Precision) -> Result<(), ModelError> {
    if precision == Precision::F32 {
        return Ok(());
    }
    let dtype = precision.float_dtype();
    if !device.supports_dtype(dtype) {
        return Err(ModelError::Device(format!(
            "dtype {precision:?} is not supported by {device:?} (f32 always is)"
        )));
    }
    device
        .configure((dtype, IntDType::I32))
        .map_err(|e| ModelError::Device(format!("dtype {precision:?} on {device:?}: {e:?}")))
}

/// The backends compiled into this build.
pub fn compiled_backends() -> Vec<&'static str> {
    let mut out = vec!["flex"];
    if cfg!(feature = "ndarray") {
        out.push("ndarray");
    }
    if cfg!(feature = "wgpu") {
        out.push("wgpu");
    }
    if cfg!(feature = "cuda") {
        out.push("cuda");
    }
    out
}

#[cfg(not(all(feature = "ndarray", feature = "wgpu", feature = "cuda")))]
fn not_compiled(name: &str, feature: &str) -> ModelError {
    ModelError::Device(format!(
        "device `{name}` was not compiled into this build: rebuild with `--features {feature}` \
         (compiled in: {})",
        compiled_backends().join(", ")
    ))
}

fn flex() -> SelectedDevice {
    SelectedDevice {
        device: Device::flex(),
        description: format!("flex (CPU, {} threads)", rayon::current_num_threads()),
    }
}

/// Picks the device a spec names and sets its float `precision` (see [`set_precision`]).
pub fn open_device(spec: &str, precision: Precision) -> Result<SelectedDevice, ModelError> {
    let mut selected = select_device(spec)?;
    set_precision(&mut selected.device, precision)?;
    if precision != Precision::F32 {
        selected.description = format!("{}, {precision:?}", selected.description);
    }
    Ok(selected)
}

/// Picks the device a spec names (case-insensitive), probing GPU adapters without panicking:
/// a GPU device that cannot be opened is an error saying why.
pub fn select_device(spec: &str) -> Result<SelectedDevice, ModelError> {
    let spec = spec.trim().to_ascii_lowercase();
    let (name, index) = match spec.split_once(':') {
        Some((name, index)) => {
            let index: usize = index.parse().map_err(|_| {
                ModelError::Device(format!("device `{spec}`: `{index}` is not a device index"))
            })?;
            (name.to_owned(), Some(index))
        }
        None => (spec.clone(), None),
    };
    if index.is_some() && name != "cuda" {
        return Err(ModelError::Device(format!(
            "device `{spec}`: only cuda takes an index (cuda:N)"
        )));
    }
    match name.as_str() {
        "auto" => Ok(auto()),
        "flex" | "cpu" => Ok(flex()),
        "ndarray" => ndarray(),
        "wgpu" | "vulkan" | "metal" | "dx12" | "gl" => gpu_api(&name),
        "cuda" => cuda(index.unwrap_or(0)),
        _ => Err(ModelError::Device(format!(
            "unknown device `{spec}` (one of: {})",
            DEVICE_NAMES.join(", ")
        ))),
    }
}

/// The device a spec names (see [`select_device`]).
pub fn parse_device(spec: &str) -> Result<Device, ModelError> {
    select_device(spec).map(|s| s.device)
}

/// CUDA when compiled in and present, else a real GPU through wgpu, else the CPU.
fn auto() -> SelectedDevice {
    #[cfg(feature = "cuda")]
    if let Some(selected) = cuda_if_present() {
        return selected;
    }
    #[cfg(feature = "wgpu")]
    if let Some(selected) = wgpu::real_gpu() {
        return selected;
    }
    flex()
}

/// One line per device this build can use on this machine (`bpo info --devices`).
pub fn list_devices() -> Vec<String> {
    let mut lines = vec![format!("{} [flex]", flex().description)];
    if cfg!(feature = "ndarray") {
        lines.push("ndarray (CPU, deprecated backend) [ndarray]".into());
    }
    #[cfg(feature = "cuda")]
    lines.extend(cuda_devices());
    #[cfg(feature = "wgpu")]
    lines.extend(wgpu::adapters());
    lines.push(format!("auto picks: {}", auto().description));
    lines
}

#[cfg(feature = "ndarray")]
#[allow(deprecated)]
fn ndarray() -> Result<SelectedDevice, ModelError> {
    Ok(SelectedDevice {
        device: Device::ndarray(),
        description: "ndarray (CPU)".into(),
    })
}
#[cfg(not(feature = "ndarray"))]
fn ndarray() -> Result<SelectedDevice, ModelError> {
    Err(not_compiled("ndarray", "ndarray"))
}

#[cfg(feature = "wgpu")]
fn gpu_api(name: &str) -> Result<SelectedDevice, ModelError> {
    wgpu::named(name)
}
#[cfg(not(feature = "wgpu"))]
fn gpu_api(name: &str) -> Result<SelectedDevice, ModelError> {
    Err(not_compiled(name, "wgpu"))
}

#[cfg(feature = "cuda")]
fn cuda_devices() -> Vec<String> {
    let n = Device::enumerate(burn::tensor::DeviceType::Cuda).len();
    (0..n).map(|i| format!("cuda:{i} [cuda:{i}]")).collect()
}

#[cfg(feature = "cuda")]
fn cuda_if_present() -> Option<SelectedDevice> {
    (!cuda_devices().is_empty()).then(|| SelectedDevice {
        device: Device::cuda(0),
        description: "cuda:0".into(),
    })
}

#[cfg(feature = "cuda")]
fn cuda(index: usize) -> Result<SelectedDevice, ModelError> {
    let n = cuda_devices().len();
    if index >= n {
        return Err(ModelError::Device(format!(
            "device `cuda:{index}`: {n} CUDA device(s) found (is the NVIDIA driver installed?)"
        )));
    }
    Ok(SelectedDevice {
        device: Device::cuda(index),
        description: format!("cuda:{index}"),
    })
}
#[cfg(not(feature = "cuda"))]
fn cuda(_index: usize) -> Result<SelectedDevice, ModelError> {
    Err(not_compiled("cuda", "cuda"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flex_is_always_available() {
        assert!(parse_device("flex").is_ok());
        assert!(parse_device("FLEX").is_ok());
        assert!(select_device("flex").unwrap().description.contains("CPU"));
    }

    #[test]
    fn unknown_and_malformed_devices_are_errors() {
        let err = parse_device("tpu").unwrap_err().to_string();
        assert!(err.contains("unknown device `tpu`"), "{err}");
        let err = parse_device("cuda:x").unwrap_err().to_string();
        assert!(err.contains("not a device index"), "{err}");
        let err = parse_device("flex:1").unwrap_err().to_string();
        assert!(err.contains("only cuda"), "{err}");
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn missing_backend_names_the_feature() {
        let err = parse_device("cuda:1").unwrap_err().to_string();
        assert!(err.contains("--features cuda"), "{err}");
    }

    #[test]
    fn auto_never_fails() {
        let selected = select_device("auto").unwrap();
        assert!(!selected.description.is_empty());
    }
}
