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

    /// Whether the buffer holds no words; it still binds, as 4 bytes.
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
///
/// NOTE: a buffer freed since the last submit may still be read by recorded commands.
/// Later *commands* on it are ordered after those, so [`Reuse::Recorded`] may take it;
/// but `queue.write_buffer` lands before every command of the next submit, so an upload
/// ([`Reuse::Written`]) takes only buffers freed before the last submit. That is what lets
/// an upload in the middle of a step go without a submit of its own.
pub(crate) struct BufferPool {
    free: Mutex<PoolState>,
    cap: u64,
    max_buffer: u64,
}

/// What the taker of a pooled buffer does with it first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reuse {
    /// Records commands on it (clear, dispatch, copy): any free buffer will do.
    Recorded,
    /// Writes it with `queue.write_buffer`: only buffers no recorded command can see.
    Written,
}

#[derive(Default)]
struct PoolState {
    /// Freed before the last submit.
    settled: HashMap<u64, Vec<wgpu::Buffer>>,
    /// Freed since the last submit.
    recent: HashMap<u64, Vec<wgpu::Buffer>>,
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

    fn lock(&self) -> std::sync::MutexGuard<'_, PoolState> {
        self.free.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A buffer of at least `bytes` bytes (rounded up to its size class).
    pub(crate) fn take(&self, device: &wgpu::Device, bytes: u64, reuse: Reuse) -> wgpu::Buffer {
        let class = size_class(bytes, self.max_buffer);
        let mut state = self.lock();
        let pop =
            |lists: &mut HashMap<u64, Vec<wgpu::Buffer>>| lists.get_mut(&class).and_then(Vec::pop);
        let found = match reuse {
            Reuse::Recorded => pop(&mut state.recent).or_else(|| pop(&mut state.settled)),
            Reuse::Written => pop(&mut state.settled),
        };
        if let Some(buffer) = found {
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
        let mut state = self.lock();
        if state.bytes + class <= self.cap {
            state.bytes += class;
            state.recent.entry(class).or_default().push(buffer);
        }
    }

    /// After a submit: every buffer freed before it may now be written.
    pub(crate) fn settle(&self) {
        let mut state = self.lock();
        let recent = std::mem::take(&mut state.recent);
        for (class, buffers) in recent {
            state.settled.entry(class).or_default().extend(buffers);
        }
    }

    /// Frees every pooled buffer.
    pub(crate) fn clear(&self) {
        *self.lock() = PoolState::default();
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
