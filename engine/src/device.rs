//! Where a tensor lives. Moving between devices is explicit (`Tensor::to_device`), and
//! an op whose operands live on different devices is an error, never a silent copy.

use crate::error::{Error, Result};
use std::fmt;

#[derive(Clone, Debug, Default)]
pub enum Device {
    /// The rayon kernels of `kernels::cpu`.
    #[default]
    Cpu,
}

impl Device {
    /// True when both are the same device (the same GPU context, not only the same kind).
    pub fn same(&self, other: &Device) -> bool {
        match (self, other) {
            (Device::Cpu, Device::Cpu) => true,
        }
    }

    /// The device a `--device` flag names, and a line telling the user what was chosen:
    /// `auto` takes a hardware GPU when there is one and the CPU otherwise, `gpu` any
    /// adapter (software ones included), `cpu` the rayon kernels.
    pub fn select(choice: &str) -> Result<(Device, String)> {
        match choice {
            "cpu" => Ok((Device::Cpu, "device: cpu (rayon kernels)".into())),
            "auto" => Ok((
                Device::Cpu,
                "device: cpu (this build has no GPU backend)".into(),
            )),
            "gpu" => Err(Error::Gpu("this build has no GPU backend".into())),
            other => Err(Error::BadArgument {
                op: "device",
                message: format!("unknown device `{other}` (expected auto, gpu or cpu)"),
            }),
        }
    }

    pub fn is_cpu(&self) -> bool {
        matches!(self, Device::Cpu)
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => write!(f, "cpu"),
        }
    }
}
