//! The words behind a tensor: a `Vec` on the CPU or a buffer on the GPU.
//!
//! A storage holds 4-byte words. Tensors keep `f32` values in them; [`crate::Labels`]
//! and a max-pool's argmax keep `u32` indices, bit for bit in the same words, as a GPU
//! buffer does. The kernels say which word each argument holds
//! (`kernels::registry::Word`).

use crate::device::Device;
#[cfg(feature = "gpu")]
use crate::error::Error;
use crate::error::Result;
#[cfg(feature = "gpu")]
use kernels::gpu::{GpuBuffer, GpuError};

/// 4-byte words on a device.
#[derive(Debug)]
pub enum Storage {
    /// Host memory; `u32` words as `f32` bit patterns.
    Cpu(Vec<f32>),
    /// A buffer of the GPU context it was made by.
    #[cfg(feature = "gpu")]
    Gpu(GpuBuffer),
}

#[cfg(feature = "gpu")]
pub(crate) fn gpu_error(e: GpuError) -> Error {
    Error::Gpu(e.to_string())
}

impl Storage {
    /// Length in words.
    pub fn len(&self) -> usize {
        match self {
            Storage::Cpu(v) => v.len(),
            #[cfg(feature = "gpu")]
            Storage::Gpu(b) => b.len(),
        }
    }

    /// True when it holds no words.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `f32` values on `device`.
    pub fn from_vec(data: Vec<f32>, device: &Device) -> Result<Storage> {
        match device {
            Device::Cpu => Ok(Storage::Cpu(data)),
            #[cfg(feature = "gpu")]
            Device::Gpu(ctx) => Ok(Storage::Gpu(ctx.upload(&data))),
        }
    }

    /// `u32` values on `device`.
    pub fn from_u32(data: &[u32], device: &Device) -> Result<Storage> {
        match device {
            Device::Cpu => Ok(Storage::Cpu(
                data.iter().map(|&v| f32::from_bits(v)).collect(),
            )),
            #[cfg(feature = "gpu")]
            Device::Gpu(ctx) => Ok(Storage::Gpu(ctx.upload_u32(data))),
        }
    }

    /// `len` zero words (`0.0` or `0u32`) on `device`.
    pub fn zeros(len: usize, device: &Device) -> Result<Storage> {
        match device {
            Device::Cpu => Ok(Storage::Cpu(vec![0.0; len])),
            #[cfg(feature = "gpu")]
            Device::Gpu(ctx) => Ok(Storage::Gpu(ctx.zeros(len))),
        }
    }

    /// `len` zero words on the device this storage is on.
    pub(crate) fn zeros_beside(&self, len: usize) -> Storage {
        match self {
            Storage::Cpu(_) => Storage::Cpu(vec![0.0; len]),
            #[cfg(feature = "gpu")]
            Storage::Gpu(b) => Storage::Gpu(b.context().zeros(len)),
        }
    }

    /// Copies the values to the host; on the GPU this waits for the queued work.
    pub fn to_vec(&self) -> Result<Vec<f32>> {
        match self {
            Storage::Cpu(v) => Ok(v.clone()),
            #[cfg(feature = "gpu")]
            Storage::Gpu(b) => b.context().read(b).map_err(gpu_error),
        }
    }

    /// [`Storage::to_vec`] of `u32` words.
    pub fn to_vec_u32(&self) -> Result<Vec<u32>> {
        match self {
            Storage::Cpu(v) => Ok(v.iter().map(|v| v.to_bits()).collect()),
            #[cfg(feature = "gpu")]
            Storage::Gpu(b) => b.context().read_u32(b).map_err(gpu_error),
        }
    }

    /// A copy on the same device.
    pub fn duplicate(&self) -> Result<Storage> {
        match self {
            Storage::Cpu(v) => Ok(Storage::Cpu(v.clone())),
            #[cfg(feature = "gpu")]
            Storage::Gpu(b) => {
                let copy = b.context().zeros(b.len());
                b.context().copy(b, &copy).map_err(gpu_error)?;
                Ok(Storage::Gpu(copy))
            }
        }
    }

    /// The words of `parts` one after the other, on `device` (where every part must be).
    pub(crate) fn concat(parts: &[&Storage], device: &Device) -> Result<Storage> {
        let total = parts.iter().map(|s| s.len()).sum();
        let mut out = Storage::zeros(total, device)?;
        let mut at = 0;
        for part in parts {
            match (&mut out, part) {
                (Storage::Cpu(out), Storage::Cpu(v)) => out[at..at + v.len()].copy_from_slice(v),
                #[cfg(feature = "gpu")]
                (Storage::Gpu(out), Storage::Gpu(b)) => {
                    out.context().copy_to(b, out, at).map_err(gpu_error)?
                }
                #[cfg(feature = "gpu")]
                _ => return Err(Error::Gpu("concat: parts on different devices".into())),
            }
            at += part.len();
        }
        Ok(out)
    }
}
