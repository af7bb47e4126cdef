//! Device buffers and the pool that recycles them by size class.
//!
//! Training allocates the same shapes every step; creating wgpu buffers is slow, so a
//! dropped [`GpuBuffer`] hands its `wgpu::Buffer` back to its context's pool and the next
//! request of the same size class reuses it.
//!
//! NOTE: reuse is safe while earlier recorded commands still read the old contents:
//! later work on the reused buffer is recorded (or, for uploads, written after a flush)
//! behind them, and wgpu orders commands that touch the same buffer.

use super::context::GpuContext;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A buffer of `len` 4-byte words (`f32` or `u32`) on the device of its context.
/// Usage `STORAGE | COPY_SRC | COPY_DST`; `Send + Sync`.
pub struct GpuBuffer {
    buffer: Option<wgpu::Buffer>,
    len: usize,
    ctx: Arc<GpuContext>,
}

impl GpuBuffer {
    pub(crate) fn new(ctx: Arc<GpuContext>, buffer: wgpu::Buffer, len: usize) -> Self {
        Self {
            buffer: Some(buffer),
            len,
            ctx,
        }
    }

    /// Length in 4-byte words.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The context that owns this buffer.
    pub fn context(&self) -> &Arc<GpuContext> {
        &self.ctx
    }

    /// The wgpu buffer; its size is the size class, at least `4 · len` bytes.
    pub fn raw(&self) -> &wgpu::Buffer {
        self.buffer
            .as_ref()
            .expect("a GpuBuffer holds its buffer until dropped")
    }

    /// Bytes the kernels see: `4 · len`, at least 4 so that empty buffers still bind.
    pub(crate) fn bytes(&self) -> u64 {
        4 * self.len.max(1) as u64
    }
}

impl Drop for GpuBuffer {
    fn drop(&mut self) {
        if let Some(buffer) = self.buffer.take() {
            self.ctx.pool().put(buffer);
        }
    }
}

impl std::fmt::Debug for GpuBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GpuBuffer({} words)", self.len)
    }
}

/// Free buffers keyed by size class, up to `cap` bytes in all.
pub(crate) struct BufferPool {
    free: Mutex<PoolState>,
    cap: u64,
    max_buffer: u64,
}

#[derive(Default)]
struct PoolState {
    by_class: HashMap<u64, Vec<wgpu::Buffer>>,
    bytes: u64,
}

impl BufferPool {
    /// A pool that keeps at most `max(max_buffer / 4, 1 GiB)` bytes of free buffers.
    pub(crate) fn new(max_buffer: u64) -> Self {
        Self {
            free: Mutex::default(),
            cap: (max_buffer / 4).max(1 << 30),
            max_buffer,
        }
    }

    /// A buffer of at least `bytes` bytes (rounded up to its size class).
    pub(crate) fn take(&self, device: &wgpu::Device, bytes: u64) -> wgpu::Buffer {
        let class = size_class(bytes, self.max_buffer);
        let mut state = self.free.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(buffer) = state.by_class.get_mut(&class).and_then(Vec::pop) {
            state.bytes -= class;
            return buffer;
        }
        drop(state);
        device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("kernels::gpu buffer"),
            size: class,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    pub(crate) fn put(&self, buffer: wgpu::Buffer) {
        let class = buffer.size();
        let mut state = self.free.lock().unwrap_or_else(|e| e.into_inner());
        if state.bytes + class <= self.cap {
            state.bytes += class;
            state.by_class.entry(class).or_default().push(buffer);
        }
    }

    /// Frees every pooled buffer.
    pub(crate) fn clear(&self) {
        let mut state = self.free.lock().unwrap_or_else(|e| e.into_inner());
        *state = PoolState::default();
    }
}

/// Rounds up to eighths of the next power of two (at most 12.5 % slack), at least 256 B;
/// a request near the device limit gets its exact (4-byte aligned) size.
fn size_class(bytes: u64, max_buffer: u64) -> u64 {
    let bytes = bytes.max(256).next_multiple_of(4);
    let step = (bytes.next_power_of_two() / 8).max(4);
    let class = bytes.next_multiple_of(step);
    if class > max_buffer {
        bytes
    } else {
        class
    }
}

#[cfg(test)]
mod tests {
    use super::size_class;

    #[test]
    fn size_classes_round_up_by_at_most_an_eighth() {
        assert_eq!(size_class(4, u64::MAX), 256);
        assert_eq!(size_class(256, u64::MAX), 256);
        // 300 B: next power 512, step 64 -> 320.
        assert_eq!(size_class(300, u64::MAX), 320);
        assert_eq!(size_class(1 << 20, u64::MAX), 1 << 20);
        assert_eq!(size_class((1 << 20) + 4, u64::MAX), (1 << 20) + (1 << 18));
        assert_eq!(size_class(1000, 1000), 1000);
    }
}
