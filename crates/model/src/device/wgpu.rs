//! wgpu adapters: probing them without panicking (and without the windowing system: OpenGL is
//! probed only when asked for), telling real GPUs from software renderers (lavapipe, llvmpipe,
//! WARP), and describing the one a device runs on.

use std::collections::HashMap;
use std::sync::Mutex;

use burn::tensor::wgpu::{WgpuBackend, wgpu};
use burn::tensor::{Device, DeviceKind};

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

/// The adapters of the native compute APIs (Vulkan, Metal, DX12), best first: discrete, then
/// integrated, virtual, unknown, software. OpenGL is never probed here: its probe goes through
/// EGL and the windowing system, and wgpu's GL compute is a last resort that runs only when
/// asked for (`--device gl`). (On a headless Linux machine Mesa's Vulkan device-selection layer
/// connects to Wayland too: see [`super::prepare_environment`].)
fn native_adapters() -> Vec<wgpu::AdapterInfo> {
    let backends = wgpu::Backends::VULKAN | wgpu::Backends::METAL | wgpu::Backends::DX12;
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends,
        ..wgpu::InstanceDescriptor::new_without_display_handle()
    });
    let mut infos: Vec<wgpu::AdapterInfo> =
        burn::tensor::read_sync(instance.enumerate_adapters(backends))
            .iter()
            .map(wgpu::Adapter::get_info)
            .collect();
    infos.sort_by_key(|info| rank(info.device_type));
    infos
}

fn rank(t: wgpu::DeviceType) -> u8 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    }
}

/// Opens the adapter `info` describes (the first of its type on its API).
fn open_adapter(info: &wgpu::AdapterInfo) -> Result<SelectedDevice, String> {
    let api = match info.backend {
        wgpu::Backend::Vulkan => WgpuBackend::Vulkan,
        wgpu::Backend::Metal => WgpuBackend::Metal,
        wgpu::Backend::Dx12 => WgpuBackend::Dx12,
        other => return Err(format!("{other:?} is not a native compute API")),
    };
    let kind = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => DeviceKind::DiscreteGpu(0),
        wgpu::DeviceType::IntegratedGpu => DeviceKind::IntegratedGpu(0),
        wgpu::DeviceType::VirtualGpu => DeviceKind::VirtualGpu(0),
        wgpu::DeviceType::Cpu => DeviceKind::Cpu,
        wgpu::DeviceType::Other => DeviceKind::DefaultDevice,
    };
    open(kind, api)
}

/// `--device wgpu | vulkan | metal | dx12 | gl`: `wgpu` is the best adapter of the native
/// compute APIs (Vulkan, Metal, DX12), software renderers such as lavapipe included; the
/// others pin their API. OpenGL runs only when named.
pub fn named(name: &str) -> Result<SelectedDevice, ModelError> {
    let opened = match name {
        "vulkan" => open(DeviceKind::DefaultDevice, WgpuBackend::Vulkan),
        "metal" => open(DeviceKind::DefaultDevice, WgpuBackend::Metal),
        "dx12" => open(DeviceKind::DefaultDevice, WgpuBackend::Dx12),
        "gl" => open(DeviceKind::DefaultDevice, WgpuBackend::Gl),
        _ => {
            // The best adapter that opens; the reason of the last failure otherwise.
            let mut failed = Err("no Vulkan, Metal or DX12 adapter".to_owned());
            for info in native_adapters() {
                match open_adapter(&info) {
                    Ok(selected) => return Ok(selected),
                    Err(e) => failed = Err(e),
                }
            }
            failed
        }
    };
    opened.map_err(|e| {
        ModelError::Device(format!(
            "device `{name}`: no usable wgpu adapter ({e}). A GPU needs its Vulkan (Linux, \
             Windows), Metal (macOS) or DX12 driver; without a GPU, `--device flex` runs on the \
             CPU (or install Mesa's lavapipe, e.g. `apt-get install mesa-vulkan-drivers`; an \
             OpenGL-only machine can ask for `--device gl`)"
        ))
    })
}

/// The first real GPU among the native adapters (discrete, then integrated, then virtual),
/// opened; never a software renderer, never OpenGL.
pub fn real_gpu() -> Option<SelectedDevice> {
    native_adapters()
        .iter()
        .filter(|info| rank(info.device_type) < 3)
        .find_map(|info| open_adapter(info).ok())
}

/// One line per adapter of the native compute APIs on this machine, and a line on OpenGL.
pub fn adapters() -> Vec<String> {
    let infos = native_adapters();
    let mut lines: Vec<String> = infos
        .iter()
        .map(|info| {
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
        .collect();
    if infos.is_empty() {
        lines.push("wgpu: no Vulkan, Metal or DX12 adapter".into());
    }
    lines.push("wgpu: OpenGL adapters are not probed [--device gl opens one]".into());
    lines
}
