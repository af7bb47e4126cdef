//! Where a tensor lives. Moving between devices is explicit (`Tensor::to_device`), and
//! an op whose operands live on different devices is an error, never a silent copy.

use crate::error::{Error, Result};
use kernels::gpu::{AdapterChoice, GpuContext};
use std::fmt;
use std::sync::Arc;

#[derive(Clone, Debug, Default)]
pub enum Device {
    /// The rayon kernels of `kernels::cpu`.
    #[default]
    Cpu,
    /// The WGSL kernels of `kernels::gpu`, on one wgpu device.
    Gpu(Arc<GpuContext>),
}

impl Device {
    /// The device a `--device` flag names, and a line telling the user what was chosen:
    /// `auto` takes a hardware GPU when there is one and the CPU otherwise, `gpu` any
    /// adapter (software ones included), `cpu` the rayon kernels.
    pub fn select(choice: &str) -> Result<(Device, String)> {
        match choice {
            "cpu" => Ok((Device::Cpu, "device: cpu (rayon kernels)".into())),
            "auto" => match GpuContext::new(AdapterChoice::Auto) {
                Ok(ctx) => {
                    let note = format!(
                        "device: gpu, {} (auto: a hardware adapter)",
                        ctx.adapter_name()
                    );
                    Ok((Device::Gpu(ctx), note))
                }
                Err(e) => Ok((
                    Device::Cpu,
                    format!("device: cpu (auto: {e}; `--device gpu` takes a software adapter)"),
                )),
            },
            "gpu" => {
                let ctx =
                    GpuContext::new(AdapterChoice::Any).map_err(|e| Error::Gpu(e.to_string()))?;
                let kind = if ctx.is_software() {
                    "a software adapter: slow"
                } else {
                    "hardware"
                };
                let note = format!("device: gpu, {} ({kind})", ctx.adapter_name());
                Ok((Device::Gpu(ctx), note))
            }
            other => Err(Error::BadArgument {
                op: "device",
                message: format!("unknown device `{other}` (expected auto, gpu or cpu)"),
            }),
        }
    }

    /// True when both are the same device (the same GPU context, not only the same kind).
    pub fn same(&self, other: &Device) -> bool {
        match (self, other) {
            (Device::Cpu, Device::Cpu) => true,
            (Device::Gpu(a), Device::Gpu(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => write!(f, "cpu"),
            Device::Gpu(ctx) => write!(f, "gpu ({})", ctx.adapter_name()),
        }
    }
}
