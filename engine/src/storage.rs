//! The bytes behind a tensor: a `Vec` on the CPU or a buffer on the GPU.

use crate::device::Device;
use crate::error::Result;

/// f32 values on a device.
#[derive(Debug)]
pub enum Storage {
    Cpu(Vec<f32>),
}

/// u32 values on a device: class labels, max-pool argmax.
#[derive(Debug)]
pub enum IndexStorage {
    Cpu(Vec<u32>),
}

impl Storage {
    pub fn len(&self) -> usize {
        match self {
            Storage::Cpu(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn from_vec(data: Vec<f32>, device: &Device) -> Result<Storage> {
        match device {
            Device::Cpu => Ok(Storage::Cpu(data)),
        }
    }

    pub fn zeros(len: usize, device: &Device) -> Result<Storage> {
        match device {
            Device::Cpu => Ok(Storage::Cpu(vec![0.0; len])),
        }
    }

    /// Copies the values to the host; on the GPU this waits for the queued work.
    pub fn to_vec(&self) -> Result<Vec<f32>> {
        match self {
            Storage::Cpu(v) => Ok(v.clone()),
        }
    }

    /// A copy on the same device.
    pub fn duplicate(&self) -> Result<Storage> {
        match self {
            Storage::Cpu(v) => Ok(Storage::Cpu(v.clone())),
        }
    }
}

impl IndexStorage {
    pub fn from_vec(data: Vec<u32>, device: &Device) -> Result<IndexStorage> {
        match device {
            Device::Cpu => Ok(IndexStorage::Cpu(data)),
        }
    }

    pub fn zeros(len: usize, device: &Device) -> Result<IndexStorage> {
        match device {
            Device::Cpu => Ok(IndexStorage::Cpu(vec![0; len])),
        }
    }

    pub fn to_vec(&self) -> Result<Vec<u32>> {
        match self {
            IndexStorage::Cpu(v) => Ok(v.clone()),
        }
    }
}
