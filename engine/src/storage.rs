//! The bytes behind a tensor: a `Vec` on the CPU or a buffer on the GPU.

use crate::device::Device;
use crate::error::{Error, Result};
use kernels::gpu::{GpuBuffer, GpuError};

/// f32 values on a device.
#[derive(Debug)]
pub enum Storage {
    Cpu(Vec<f32>),
    Gpu(GpuBuffer),
}

/// u32 values on a device: class labels, max-pool argmax.
#[derive(Debug)]
pub enum IndexStorage {
    Cpu(Vec<u32>),
    Gpu(GpuBuffer),
}

pub(crate) fn gpu_error(e: GpuError) -> Error {
    Error::Gpu(e.to_string())
}

impl Storage {
    pub fn len(&self) -> usize {
        match self {
            Storage::Cpu(v) => v.len(),
            Storage::Gpu(b) => b.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn from_vec(data: Vec<f32>, device: &Device) -> Result<Storage> {
        match device {
            Device::Cpu => Ok(Storage::Cpu(data)),
            Device::Gpu(ctx) => Ok(Storage::Gpu(ctx.upload(&data))),
        }
    }

    pub fn zeros(len: usize, device: &Device) -> Result<Storage> {
        match device {
            Device::Cpu => Ok(Storage::Cpu(vec![0.0; len])),
            Device::Gpu(ctx) => Ok(Storage::Gpu(ctx.zeros(len))),
        }
    }

    /// Copies the values to the host; on the GPU this waits for the queued work.
    pub fn to_vec(&self) -> Result<Vec<f32>> {
        match self {
            Storage::Cpu(v) => Ok(v.clone()),
            Storage::Gpu(b) => b.context().read(b).map_err(gpu_error),
        }
    }

    /// A copy on the same device.
    pub fn duplicate(&self) -> Result<Storage> {
        match self {
            Storage::Cpu(v) => Ok(Storage::Cpu(v.clone())),
            Storage::Gpu(b) => {
                let copy = b.context().zeros(b.len());
                b.context().copy(b, &copy).map_err(gpu_error)?;
                Ok(Storage::Gpu(copy))
            }
        }
    }
}

impl IndexStorage {
    pub fn from_vec(data: Vec<u32>, device: &Device) -> Result<IndexStorage> {
        match device {
            Device::Cpu => Ok(IndexStorage::Cpu(data)),
            Device::Gpu(ctx) => Ok(IndexStorage::Gpu(ctx.upload_u32(&data))),
        }
    }

    pub fn to_vec(&self) -> Result<Vec<u32>> {
        match self {
            IndexStorage::Cpu(v) => Ok(v.clone()),
            IndexStorage::Gpu(b) => b.context().read_u32(b).map_err(gpu_error),
        }
    }
}
