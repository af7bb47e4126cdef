//! Where a tensor lives. Moving between devices is explicit (`Tensor::to_device`), and
//! an op whose operands live on different devices is an error, never a silent copy.

use crate::error::{Error, Result};
#[cfg(feature = "gpu")]
use kernels::gpu::{AdapterChoice, GpuContext};
pub use kernels::QueueStats;
use std::fmt;
#[cfg(feature = "gpu")]
use std::sync::Arc;

/// A compute device: the rayon kernels, or one wgpu device running the WGSL kernels.
///
/// ```
/// use engine::Device;
///
/// let (device, note) = Device::select("cpu").unwrap();
/// assert!(device.same(&Device::Cpu));
/// assert!(note.starts_with("device: cpu (rayon kernels, "), "{note}");
/// assert!(Device::select("tpu").is_err());
/// ```
#[derive(Clone, Debug, Default)]
pub enum Device {
    /// The rayon kernels of `kernels::cpu`.
    #[default]
    Cpu,
    /// The WGSL kernels of `kernels::gpu`, on one wgpu device.
    #[cfg(feature = "gpu")]
    Gpu(Arc<GpuContext>),
}

impl Device {
    /// The device a `--device` flag names, and a line telling the user what was chosen:
    /// `auto` takes a hardware GPU when there is one and the CPU otherwise, `gpu` any
    /// adapter (software ones included), `cpu` the rayon kernels. The CPU's line names
    /// the instruction set its kernels use; a `KD_ISA` they cannot honour is an error
    /// here, on every device (the host runs CPU kernels beside a GPU too).
    pub fn select(choice: &str) -> Result<(Device, String)> {
        let isa = kernels::cpu::Isa::from_env().map_err(|e| Error::BadArgument {
            op: "device",
            message: e.to_string(),
        })?;
        match choice {
            "cpu" => Ok((Device::Cpu, format!("device: cpu (rayon kernels, {isa})"))),
            "auto" => Ok(Device::auto()),
            "gpu" => Device::any_gpu(),
            other => Err(Error::BadArgument {
                op: "device",
                message: format!("unknown device `{other}` (expected auto, gpu or cpu)"),
            }),
        }
    }

    #[cfg(feature = "gpu")]
    fn auto() -> (Device, String) {
        match GpuContext::new(AdapterChoice::Auto) {
            Ok(ctx) => {
                let note = format!(
                    "device: gpu, {} (auto: a hardware adapter)",
                    ctx.adapter_name()
                );
                (Device::Gpu(ctx), note)
            }
            Err(e) => (
                Device::Cpu,
                format!("device: cpu (auto: {e}; `--device gpu` takes a software adapter)"),
            ),
        }
    }

    #[cfg(not(feature = "gpu"))]
    fn auto() -> (Device, String) {
        let note = "device: cpu (auto: this build has no GPU support)";
        (Device::Cpu, note.into())
    }

    #[cfg(feature = "gpu")]
    fn any_gpu() -> Result<(Device, String)> {
        let ctx = GpuContext::new(AdapterChoice::Any).map_err(|e| Error::Gpu(e.to_string()))?;
        let kind = if ctx.is_software() {
            "a software adapter: slow"
        } else {
            "hardware"
        };
        let note = format!("device: gpu, {} ({kind})", ctx.adapter_name());
        Ok((Device::Gpu(ctx), note))
    }

    #[cfg(not(feature = "gpu"))]
    fn any_gpu() -> Result<(Device, String)> {
        Err(Error::Gpu(
            "this build has no GPU support (built without the `gpu` feature)".into(),
        ))
    }

    /// True when both are the same device (the same GPU context, not only the same kind).
    pub fn same(&self, other: &Device) -> bool {
        match (self, other) {
            (Device::Cpu, Device::Cpu) => true,
            #[cfg(feature = "gpu")]
            (Device::Gpu(a), Device::Gpu(b)) => Arc::ptr_eq(a, b),
            #[cfg(feature = "gpu")]
            _ => false,
        }
    }

    /// True for a GPU that is a software rasterizer (Mesa's llvmpipe): correct, but far
    /// slower than the CPU kernels.
    pub fn is_software(&self) -> bool {
        match self {
            Device::Cpu => false,
            #[cfg(feature = "gpu")]
            Device::Gpu(ctx) => ctx.is_software(),
        }
    }

    /// Sends the work recorded so far to the GPU without waiting for it; nothing on the
    /// CPU, whose kernels have already run. A training step ends with one.
    pub fn submit(&self) {
        match self {
            Device::Cpu => {}
            #[cfg(feature = "gpu")]
            Device::Gpu(ctx) => ctx.flush(),
        }
    }

    /// The submits and dispatches of this device's queue so far; `None` on the CPU,
    /// which has no queue. The difference of two readings is the work in between.
    pub fn queue_stats(&self) -> Option<QueueStats> {
        match self {
            Device::Cpu => None,
            #[cfg(feature = "gpu")]
            Device::Gpu(ctx) => Some(ctx.queue_stats()),
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => write!(f, "cpu"),
            #[cfg(feature = "gpu")]
            Device::Gpu(ctx) => write!(f, "gpu ({})", ctx.adapter_name()),
        }
    }
}
