//! The `--device` flag: `flex | ndarray | wgpu | vulkan | metal | cuda[:N]` to a Burn device.

use burn::tensor::Device;

use crate::error::ModelError;

/// The device names `--device` accepts, in the order they are listed to users.
pub const DEVICE_NAMES: &[&str] = &["flex", "ndarray", "wgpu", "vulkan", "metal", "cuda[:N]"];

/// The backends compiled into this build.
pub fn compiled_backends() -> Vec<&'static str> {
    let mut out = vec!["flex"];
    if cfg!(feature = "ndarray") {
        out.push("ndarray");
    }
    if cfg!(feature = "wgpu") {
        out.push("wgpu");
    }
    if cfg!(feature = "vulkan") {
        out.push("vulkan");
    }
    if cfg!(feature = "metal") {
        out.push("metal");
    }
    if cfg!(feature = "cuda") {
        out.push("cuda");
    }
    out
}

fn not_compiled(name: &str, feature: &str) -> ModelError {
    ModelError::Device(format!(
        "device `{name}` was not compiled into this build: rebuild with `--features {feature}` \
         (compiled in: {})",
        compiled_backends().join(", ")
    ))
}

/// Parses a device string (case-insensitive) into a Burn device.
pub fn parse_device(spec: &str) -> Result<Device, ModelError> {
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
        "flex" | "cpu" => Ok(Device::flex()),
        "ndarray" => ndarray(),
        "wgpu" => wgpu(),
        "vulkan" => vulkan(),
        "metal" => metal(),
        "cuda" => cuda(index.unwrap_or(0)),
        _ => Err(ModelError::Device(format!(
            "unknown device `{spec}` (one of: {})",
            DEVICE_NAMES.join(", ")
        ))),
    }
}

#[cfg(feature = "ndarray")]
#[allow(deprecated)]
fn ndarray() -> Result<Device, ModelError> {
    Ok(Device::ndarray())
}
#[cfg(not(feature = "ndarray"))]
fn ndarray() -> Result<Device, ModelError> {
    Err(not_compiled("ndarray", "ndarray"))
}

#[cfg(feature = "wgpu")]
fn wgpu() -> Result<Device, ModelError> {
    Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice))
}
#[cfg(not(feature = "wgpu"))]
fn wgpu() -> Result<Device, ModelError> {
    Err(not_compiled("wgpu", "wgpu"))
}

#[cfg(feature = "vulkan")]
fn vulkan() -> Result<Device, ModelError> {
    Ok(Device::vulkan(burn::tensor::DeviceKind::DefaultDevice))
}
#[cfg(not(feature = "vulkan"))]
fn vulkan() -> Result<Device, ModelError> {
    Err(not_compiled("vulkan", "vulkan"))
}

#[cfg(feature = "metal")]
fn metal() -> Result<Device, ModelError> {
    Ok(Device::metal(burn::tensor::DeviceKind::DefaultDevice))
}
#[cfg(not(feature = "metal"))]
fn metal() -> Result<Device, ModelError> {
    Err(not_compiled("metal", "metal"))
}

#[cfg(feature = "cuda")]
fn cuda(index: usize) -> Result<Device, ModelError> {
    Ok(Device::cuda(index))
}
#[cfg(not(feature = "cuda"))]
fn cuda(_index: usize) -> Result<Device, ModelError> {
    Err(not_compiled("cuda", "cuda"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flex_is_always_available() {
        assert!(parse_device("flex").is_ok());
        assert!(parse_device("FLEX").is_ok());
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
}
