//! The words behind a tensor: a `Vec` on the CPU or a buffer on the GPU.
//!
//! A storage holds 4-byte words. Tensors keep `f32` values in them; [`crate::Labels`]
//! and a max-pool's argmax keep `u32` indices, bit for bit in the same words, as a GPU
//! buffer does. The kernels say which word each argument holds
//! (`kernels::registry::Word`).
//!
//! A training step makes the same outputs of the same sizes every step and drops them
//! all at its end. On the CPU a dropped storage's `Vec` therefore goes to a pool, by
//! length, and the next output of that length takes it back: no allocation, and no page
//! faults, after the first step. An output that its kernel writes whole
//! (`kernels::registry::Access::Out`) is handed over with the stale values in it; the
//! others are zeroed. The pool holds at most [`POOL_MAX_WORDS`].

use crate::device::Device;
#[cfg(feature = "gpu")]
use crate::error::Error;
use crate::error::Result;
#[cfg(feature = "gpu")]
use kernels::gpu::{GpuBuffer, GpuError};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

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
    match e {
        GpuError::Kernel(e) => Error::Kernel(e),
        e => Error::Gpu(e.to_string()),
    }
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
            Device::Gpu(ctx) => Ok(Storage::Gpu(ctx.upload(&data).map_err(gpu_error)?)),
        }
    }

    /// `u32` values on `device`.
    pub fn from_u32(data: &[u32], device: &Device) -> Result<Storage> {
        match device {
            Device::Cpu => Ok(Storage::Cpu(
                data.iter().map(|&v| f32::from_bits(v)).collect(),
            )),
            #[cfg(feature = "gpu")]
            Device::Gpu(ctx) => Ok(Storage::Gpu(ctx.upload_u32(data).map_err(gpu_error)?)),
        }
    }

    /// `len` zero words (`0.0` or `0u32`) on `device`.
    pub fn zeros(len: usize, device: &Device) -> Result<Storage> {
        match device {
            Device::Cpu => Ok(Storage::Cpu(host_zeros(len))),
            #[cfg(feature = "gpu")]
            Device::Gpu(ctx) => Ok(Storage::Gpu(ctx.zeros(len).map_err(gpu_error)?)),
        }
    }

    /// `len` words on the device this storage is on for a kernel's output: zeros, or
    /// with `written_whole` (an [`Access::Out`](kernels::registry::Access::Out)
    /// argument) on the CPU, whatever values a pooled buffer holds.
    pub(crate) fn output_beside(&self, len: usize, written_whole: bool) -> Result<Storage> {
        Ok(match self {
            Storage::Cpu(_) if written_whole => Storage::Cpu(host_unzeroed(len)),
            Storage::Cpu(_) => Storage::Cpu(host_zeros(len)),
            #[cfg(feature = "gpu")]
            Storage::Gpu(b) => Storage::Gpu(b.context().zeros(len).map_err(gpu_error)?),
        })
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
            Storage::Cpu(v) => {
                let mut copy = host_unzeroed(v.len());
                copy.copy_from_slice(v);
                Ok(Storage::Cpu(copy))
            }
            #[cfg(feature = "gpu")]
            Storage::Gpu(b) => {
                let copy = b.context().zeros(b.len()).map_err(gpu_error)?;
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

impl Drop for Storage {
    /// A host `Vec` goes to the pool for the next output of its length.
    fn drop(&mut self) {
        match self {
            Storage::Cpu(words) => give_back(std::mem::take(words)),
            #[cfg(feature = "gpu")]
            Storage::Gpu(_) => {}
        }
    }
}

/// The most words the pool keeps (1 GiB); a buffer that would pass it is freed.
pub const POOL_MAX_WORDS: usize = 1 << 28;
/// The most buffers of one length it keeps: more than a step holds at once, and a bound
/// on what buffers made outside the pool (`from_vec`'s batches) can pile up.
const POOL_MAX_PER_LEN: usize = 16;
/// Buffers shorter than this are freed: malloc is quick for them and zeroing is cheap.
const POOL_MIN_WORDS: usize = 1 << 10;

/// Freed host buffers by length, and the words they hold in all.
struct Pool {
    free: BTreeMap<usize, Vec<Vec<f32>>>,
    words: usize,
}

static POOL: Mutex<Pool> = Mutex::new(Pool {
    free: BTreeMap::new(),
    words: 0,
});

/// See [`poison_unzeroed_outputs`].
static POISON: AtomicBool = AtomicBool::new(false);

fn pool() -> std::sync::MutexGuard<'static, Pool> {
    // NOTE: the pool is consistent between any two statements, so a panic elsewhere
    // while it was held leaves nothing to repair.
    POOL.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A pooled buffer of exactly `len` words, if there is one.
fn take(len: usize) -> Option<Vec<f32>> {
    if len < POOL_MIN_WORDS {
        return None;
    }
    let mut pool = pool();
    let words = pool.free.get_mut(&len)?.pop()?;
    pool.words -= len;
    Some(words)
}

fn give_back(words: Vec<f32>) {
    let len = words.len();
    if len < POOL_MIN_WORDS || words.capacity() != len {
        return;
    }
    let mut pool = pool();
    if pool.words + len <= POOL_MAX_WORDS {
        let same = pool.free.entry(len).or_default();
        if same.len() < POOL_MAX_PER_LEN {
            same.push(words);
            pool.words += len;
        }
    }
}

fn host_zeros(len: usize) -> Vec<f32> {
    match take(len) {
        Some(mut words) => {
            words.fill(0.0);
            words
        }
        None => vec![0.0; len],
    }
}

fn host_unzeroed(len: usize) -> Vec<f32> {
    let mut words = take(len).unwrap_or_else(|| vec![0.0; len]);
    if POISON.load(Ordering::Relaxed) {
        words.fill(f32::NAN);
    }
    words
}

/// For tests: with `on`, every output the engine does not zero (see the module's docs)
/// is filled with NaN before its kernel runs, so that a kernel declared to write an
/// output whole but leaving part of it shows as NaNs instead of passing on zeros.
#[doc(hidden)]
pub fn poison_unzeroed_outputs(on: bool) {
    POISON.store(on, Ordering::Relaxed);
}

/// Words the pool holds now.
#[doc(hidden)]
pub fn pooled_words() -> usize {
    pool().words
}
