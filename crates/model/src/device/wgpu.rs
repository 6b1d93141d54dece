//! wgpu adapters: probing them without panicking, telling real GPUs from software renderers
//! (lavapipe, llvmpipe, WARP), and describing the one a device runs on.

use std::collections::HashMap;
use std::sync::Mutex;

use burn::backend::{CubeDevice, DispatchDevice, WgpuDeviceKind};
use burn::tensor::wgpu::{WgpuBackend, wgpu};
use burn::tensor::{Device, DeviceKind, DeviceType};

use crate::device::SelectedDevice;
use crate::error::ModelError;

/// Opened wgpu devices by (adapter kind, graphics API): Burn registers a runtime once, so a
/// second request for the same device reuses the first.
static OPENED: Mutex<Option<HashMap<(DeviceKind, WgpuBackend), SelectedDevice>>> = Mutex::new(None);

/// Opens the wgpu device of `kind` on `api` (or returns the one opened before).
fn open(kind: DeviceKind, api: WgpuBackend) -> Result<SelectedDevice, String> {
    let mut opened = OPENED.lock().unwrap_or_else(|p| p.into_inner());
    let opened = opened.get_or_insert_with(HashMap::new);
    if let Some(selected) = opened.get(&(kind.clone(), api)) {
        return Ok(selected.clone());
    }
    let (device, setup) = Device::wgpu_options()
        .device_kind(kind.clone())
        .graphics_api(api)
        .init_with_setup()
        .map_err(|e| e.to_string())?;
    let info = setup.adapter.get_info();
    let selected = SelectedDevice {
        device,
        description: format!(
            "wgpu: {} ({}, {}{})",
            info.name,
            setup.backend,
            device_type(info.device_type),
            if info.driver_info.is_empty() {
                String::new()
            } else {
                format!(", {}", info.driver_info)
            }
        ),
    };
    opened.insert((kind, api), selected.clone());
    Ok(selected)
}

fn device_type(t: wgpu::DeviceType) -> &'static str {
    match t {
        wgpu::DeviceType::DiscreteGpu => "discrete GPU",
        wgpu::DeviceType::IntegratedGpu => "integrated GPU",
        wgpu::DeviceType::VirtualGpu => "virtual GPU",
        wgpu::DeviceType::Cpu => "software renderer on the CPU",
        wgpu::DeviceType::Other => "unknown type",
    }
}

/// `--device wgpu | vulkan | metal`: the best adapter on any (or the named) graphics API,
/// software renderers included.
pub fn named(name: &str) -> Result<SelectedDevice, ModelError> {
    let api = match name {
        "vulkan" => WgpuBackend::Vulkan,
        "metal" => WgpuBackend::Metal,
        _ => WgpuBackend::Auto,
    };
    open(DeviceKind::DefaultDevice, api).map_err(|e| {
        ModelError::Device(format!(
            "device `{name}`: no usable wgpu adapter ({e}). A GPU needs its Vulkan (Linux, \
             Windows), Metal (macOS) or DX12 driver; without a GPU, `--device flex` runs on the \
             CPU (or install Mesa's lavapipe, e.g. `apt-get install mesa-vulkan-drivers`)"
        ))
    })
}

/// The first real GPU among the adapters (discrete, then integrated, then virtual), opened.
pub fn real_gpu() -> Option<SelectedDevice> {
    let kinds: Vec<WgpuDeviceKind> = Device::enumerate(DeviceType::Wgpu)
        .iter()
        .filter_map(|d| match d.as_dispatch() {
            DispatchDevice::Cube(CubeDevice::Wgpu(w)) => Some(w.kind.clone()),
            _ => None,
        })
        .collect();
    let wanted = [
        (WgpuDeviceKind::DiscreteGpu(0), DeviceKind::DiscreteGpu(0)),
        (
            WgpuDeviceKind::IntegratedGpu(0),
            DeviceKind::IntegratedGpu(0),
        ),
        (WgpuDeviceKind::VirtualGpu(0), DeviceKind::VirtualGpu(0)),
    ];
    wanted
        .into_iter()
        .filter(|(w, _)| kinds.contains(w))
        .find_map(|(_, kind)| open(kind, WgpuBackend::Auto).ok())
}

/// One line per adapter wgpu sees on this machine (any graphics API).
pub fn adapters() -> Vec<String> {
    let backends = wgpu::Backends::PRIMARY | wgpu::Backends::SECONDARY;
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends,
        ..wgpu::InstanceDescriptor::new_without_display_handle()
    });
    let adapters = burn::tensor::read_sync(instance.enumerate_adapters(backends));
    if adapters.is_empty() {
        return vec!["wgpu: no adapter (no Vulkan, Metal, DX12 or GL driver found)".into()];
    }
    adapters
        .iter()
        .map(|a| {
            let info = a.get_info();
            let how = match info.device_type {
                wgpu::DeviceType::Cpu => "--device wgpu; never picked by auto",
                _ => "--device wgpu or auto",
            };
            format!(
                "wgpu: {} ({}, {}) [{how}]",
                info.name,
                info.backend,
                device_type(info.device_type)
            )
        })
        .collect()
}
