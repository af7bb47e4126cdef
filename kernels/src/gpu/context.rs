//! The device, its queue, the pending command encoder, and the only sync point: `read`.

use super::buffer::{BufferPool, GpuBuffer, Reuse};
use super::pipeline::{Compiled, PipelineCache};
use super::profile::Profiler;
use super::GpuError;
use crate::error::KernelError;
use crate::registry::KernelId;
use crate::QueueStats;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Which adapters [`GpuContext::new`] may pick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdapterChoice {
    /// Hardware only: a discrete GPU, else an integrated one; `Err` if only a software
    /// rasterizer (llvmpipe) is found, since the CPU kernels beat it by far.
    Auto,
    /// Any adapter, software included: for tests on machines without a GPU.
    Any,
}

/// A wgpu device with its queue, pipeline cache, buffer pool and pending work.
pub struct GpuContext {
    info: wgpu::AdapterInfo,
    pub(crate) device: wgpu::Device,
    queue: wgpu::Queue,
    pub(crate) limits: wgpu::Limits,
    pipelines: PipelineCache,
    pool: BufferPool,
    pending: Mutex<Pending>,
    /// One slot per dispatch of a submit; see [`super::launch`].
    pub(crate) uniforms: wgpu::Buffer,
    pub(crate) uniform_slot: u64,
    /// The first error wgpu reported outside an error scope, returned by the next `read`.
    error: Arc<Mutex<Option<String>>>,
    dispatch_limit: AtomicU32,
    /// Kernel timing for `--profile`; see [`super::profile`].
    pub(crate) profiler: Profiler,
    /// `queue.submit` calls and recorded dispatches since creation.
    submits: AtomicU64,
    dispatches: AtomicU64,
}

/// Work recorded since the last submit.
#[derive(Default)]
pub(crate) struct Pending {
    pub encoder: Option<wgpu::CommandEncoder>,
    /// The params of each recorded dispatch, one uniform slot each.
    pub uniform_bytes: Vec<u8>,
    pub dispatches: u64,
    /// The kernels of the dispatches that write timestamps, in query order.
    pub profiled: Vec<KernelId>,
}

impl GpuContext {
    /// Opens the best adapter allowed by `choice`; `Err(NoAdapter)` names what was found.
    pub fn new(choice: AdapterChoice) -> Result<Arc<GpuContext>, GpuError> {
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
        // NOTE: Vulkan, Metal and DX12 only, unless WGPU_BACKEND asks for more: probing
        // the GL backend on a headless machine prints EGL errors and finds nothing better.
        if std::env::var_os("WGPU_BACKEND").is_none() {
            desc.backends = wgpu::Backends::PRIMARY;
        }
        let backends = desc.backends;
        let adapter = pick_adapter(&wgpu::Instance::new(desc), backends, choice)?;
        // All the adapter allows: big storage bindings on big GPUs.
        let limits = adapter.limits();
        // NOTE: timestamp queries whenever the adapter has them: unused, they cost
        // nothing, and `set_profiling` can then time kernels without serializing.
        let desc = wgpu::DeviceDescriptor {
            label: Some("kernels::gpu"),
            required_features: adapter.features() & wgpu::Features::TIMESTAMP_QUERY,
            required_limits: limits.clone(),
            ..Default::default()
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&desc))
            .map_err(|e| GpuError::RequestDevice(format!("{}: {e}", adapter.get_info().name)))?;
        let error = Arc::new(Mutex::new(None));
        let sink = error.clone();
        // NOTE: wgpu's default handler panics; keep the first error for the next read.
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let mut slot = sink.lock().unwrap_or_else(|p| p.into_inner());
            slot.get_or_insert_with(|| e.to_string());
        }));
        let uniform_slot = super::launch::uniform_slot_bytes(&limits);
        let uniforms = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("kernels::gpu params ring"),
            size: uniform_slot * super::launch::MAX_PENDING,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Ok(Arc::new(GpuContext {
            info: adapter.get_info(),
            profiler: Profiler::new(&device, &queue),
            dispatch_limit: AtomicU32::new(limits.max_compute_workgroups_per_dimension),
            pool: BufferPool::new(limits.max_buffer_size),
            pipelines: PipelineCache::default(),
            pending: Mutex::default(),
            device,
            queue,
            limits,
            uniforms,
            uniform_slot,
            error,
            submits: AtomicU64::new(0),
            dispatches: AtomicU64::new(0),
        }))
    }

    /// The adapter's name and backend, e.g. `llvmpipe (LLVM 15.0.6, 256 bits) (Vulkan)`.
    pub fn adapter_name(&self) -> String {
        format!("{} ({:?})", self.info.name, self.info.backend)
    }

    /// True for a software rasterizer (`DeviceType::Cpu`, e.g. llvmpipe).
    pub fn is_software(&self) -> bool {
        self.info.device_type == wgpu::DeviceType::Cpu
    }

    /// A new buffer holding `data`; [`GpuError::TooLarge`] past the adapter's largest
    /// buffer.
    pub fn upload(self: &Arc<Self>, data: &[f32]) -> Result<GpuBuffer, GpuError> {
        self.upload_bytes(bytemuck::cast_slice(data), data.len())
    }

    /// A new buffer holding `data` (labels, argmax indices).
    pub fn upload_u32(self: &Arc<Self>, data: &[u32]) -> Result<GpuBuffer, GpuError> {
        self.upload_bytes(bytemuck::cast_slice(data), data.len())
    }

    fn upload_bytes(self: &Arc<Self>, bytes: &[u8], len: usize) -> Result<GpuBuffer, GpuError> {
        // NOTE: write_buffer lands before every command of the next submit, so the buffer
        // must be one that no recorded command can see: `Reuse::Written` (buffer.rs).
        // Then the upload needs no submit, and a step's inputs can be staged mid-step.
        let buffer = self.take("upload", len, Reuse::Written)?;
        if !bytes.is_empty() {
            self.queue.write_buffer(&buffer, 0, bytes);
        }
        Ok(GpuBuffer::new(self.clone(), buffer, len))
    }

    /// A new buffer of `len` zero words (`0.0` or `0u32`); [`GpuError::TooLarge`] past
    /// the adapter's largest buffer.
    pub fn zeros(self: &Arc<Self>, len: usize) -> Result<GpuBuffer, GpuError> {
        let buffer = self.take("zeros", len, Reuse::Recorded)?;
        self.encode(|enc| enc.clear_buffer(&buffer, 0, None));
        Ok(GpuBuffer::new(self.clone(), buffer, len))
    }

    /// A pooled buffer of `len` words, or the error naming `op` when the adapter allows
    /// none that large (wgpu would only report it at the next read, as a lost device).
    fn take(&self, op: &'static str, len: usize, reuse: Reuse) -> Result<wgpu::Buffer, GpuError> {
        let limit = self.limits.max_buffer_size;
        match (len.max(1) as u64).checked_mul(4) {
            Some(bytes) if bytes <= limit => Ok(self.pool.take(&self.device, bytes, reuse)),
            bytes => Err(GpuError::TooLarge {
                op,
                arg: "buffer",
                bytes: bytes.unwrap_or(u64::MAX),
                limit,
            }),
        }
    }

    /// Records `buf[..len] = 0`.
    pub(crate) fn clear(&self, buf: &GpuBuffer, len: usize) -> Result<(), GpuError> {
        super::launch::check_args(self, "clear", &[super::launch::w("buf", buf, len)])?;
        if len > 0 {
            self.encode(|enc| enc.clear_buffer(buf.raw(), 0, Some(4 * len as u64)));
        }
        Ok(())
    }

    /// A buffer of `len` words with unspecified contents, for partial results.
    pub(crate) fn scratch(self: &Arc<Self>, len: usize) -> Result<GpuBuffer, GpuError> {
        let buffer = self.take("scratch", len, Reuse::Recorded)?;
        Ok(GpuBuffer::new(self.clone(), buffer, len))
    }

    /// Records `dst[..src.len()] = src`; `dst` must be at least as long (a buffer copied
    /// onto itself is left as it is).
    pub fn copy(&self, src: &GpuBuffer, dst: &GpuBuffer) -> Result<(), GpuError> {
        match std::ptr::eq(src, dst) {
            true => Ok(()),
            false => self.copy_to(src, dst, 0),
        }
    }

    /// Records `dst[offset..offset + src.len()] = src`.
    pub fn copy_to(&self, src: &GpuBuffer, dst: &GpuBuffer, offset: usize) -> Result<(), GpuError> {
        let (len, needed) = (dst.len(), offset + src.len());
        if len < needed {
            return Err(GpuError::Kernel(KernelError::TooShort {
                op: "copy_to",
                arg: "dst",
                len,
                needed,
            }));
        }
        if std::ptr::eq(src, dst) {
            return Err(GpuError::Aliased {
                op: "copy_to",
                a: "src",
                b: "dst",
            });
        }
        if !src.is_empty() {
            let (at, bytes) = (4 * offset as u64, 4 * src.len() as u64);
            self.encode(|enc| enc.copy_buffer_to_buffer(src.raw(), 0, dst.raw(), at, bytes));
        }
        Ok(())
    }

    /// Records `dst[..words] = src[..words]`; the caller checked both lengths.
    pub(crate) fn copy_words(&self, src: &GpuBuffer, dst: &GpuBuffer, words: usize) {
        if words > 0 {
            let bytes = 4 * words as u64;
            self.encode(|enc| enc.copy_buffer_to_buffer(src.raw(), 0, dst.raw(), 0, bytes));
        }
    }

    /// The submits and dispatches this context has made since it was created; the
    /// difference of two readings is the work in between.
    pub fn queue_stats(&self) -> QueueStats {
        QueueStats {
            submits: self.submits.load(Ordering::Relaxed),
            dispatches: self.dispatches.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn count_dispatch(&self) {
        self.dispatches.fetch_add(1, Ordering::Relaxed);
    }

    /// Submits the recorded work, waits for it, and returns the buffer's values.
    pub fn read(&self, buf: &GpuBuffer) -> Result<Vec<f32>, GpuError> {
        self.read_words(buf)
    }

    /// [`GpuContext::read`] for `u32` buffers.
    pub fn read_u32(&self, buf: &GpuBuffer) -> Result<Vec<u32>, GpuError> {
        self.read_words(buf)
    }

    /// Submits the recorded work without waiting for it.
    pub fn flush(&self) {
        self.submit_locked(&mut self.lock_pending());
    }

    /// Frees the buffers kept for reuse (live buffers are untouched).
    pub fn trim_pool(&self) {
        self.pool.clear();
    }

    /// NOTE: for tests only: split dispatches at `n` workgroups per dimension instead of
    /// the adapter's limit, to exercise the 2-D split on small shapes.
    #[doc(hidden)]
    pub fn set_dispatch_limit(&self, n: u32) {
        let max = self.limits.max_compute_workgroups_per_dimension;
        self.dispatch_limit
            .store(n.clamp(1, max), Ordering::Relaxed);
    }

    pub(crate) fn dispatch_limit(&self) -> u32 {
        self.dispatch_limit.load(Ordering::Relaxed)
    }

    pub(crate) fn pool(&self) -> &BufferPool {
        &self.pool
    }

    pub(crate) fn pipeline(&self, id: KernelId) -> Result<Arc<Compiled>, GpuError> {
        self.pipelines.get(&self.device, id)
    }

    pub(crate) fn lock_pending(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records into the pending encoder (created on demand).
    fn encode(&self, f: impl FnOnce(&mut wgpu::CommandEncoder)) {
        let mut pending = self.lock_pending();
        f(pending.encoder.get_or_insert_with(|| self.new_encoder()));
    }

    pub(crate) fn new_encoder(&self) -> wgpu::CommandEncoder {
        self.device.create_command_encoder(&Default::default())
    }

    /// Writes the dispatches' params into the uniform ring, then submits their commands.
    pub(crate) fn submit_locked(&self, pending: &mut Pending) {
        let Some(mut encoder) = pending.encoder.take() else {
            return;
        };
        let timestamps = self.before_submit(pending, &mut encoder);
        if !pending.uniform_bytes.is_empty() {
            self.queue
                .write_buffer(&self.uniforms, 0, &pending.uniform_bytes);
        }
        self.queue.submit([encoder.finish()]);
        self.submits.fetch_add(1, Ordering::Relaxed);
        self.pool.settle();
        pending.uniform_bytes.clear();
        pending.dispatches = 0;
        self.after_submit(timestamps);
    }

    fn read_words<T: bytemuck::Pod>(&self, buf: &GpuBuffer) -> Result<Vec<T>, GpuError> {
        if buf.is_empty() {
            return self.take_error().map(|_| Vec::new());
        }
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("kernels::gpu readback"),
            size: buf.bytes(),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        {
            let mut pending = self.lock_pending();
            let enc = pending.encoder.get_or_insert_with(|| self.new_encoder());
            enc.copy_buffer_to_buffer(buf.raw(), 0, &staging, 0, buf.bytes());
            self.submit_locked(&mut pending);
        }
        let (tx, rx) = std::sync::mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| GpuError::Readback(format!("waiting for the device: {e}")))?;
        self.take_error()?;
        match rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(GpuError::Readback(format!("mapping {buf:?}: {e}"))),
            Err(_) => return Err(GpuError::Readback(format!("mapping {buf:?}: no callback"))),
        }
        let view = staging
            .get_mapped_range(..)
            .map_err(|e| GpuError::Readback(format!("mapping {buf:?}: {e}")))?;
        let out = bytemuck::pod_collect_to_vec(&view[..]);
        drop(view);
        staging.unmap();
        Ok(out)
    }

    /// Returns (and clears) the first error wgpu reported since the last read.
    fn take_error(&self) -> Result<(), GpuError> {
        let mut slot = self.error.lock().unwrap_or_else(|e| e.into_inner());
        match slot.take() {
            Some(msg) => Err(GpuError::Device(msg)),
            None => Ok(()),
        }
    }
}

impl std::fmt::Debug for GpuContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GpuContext({})", self.adapter_name())
    }
}

/// The best adapter allowed by `choice`: by device type, then Vulkan/Metal/DX12 before GL.
fn pick_adapter(
    instance: &wgpu::Instance,
    backends: wgpu::Backends,
    choice: AdapterChoice,
) -> Result<wgpu::Adapter, GpuError> {
    let adapters = pollster::block_on(instance.enumerate_adapters(backends));
    if adapters.is_empty() {
        return Err(GpuError::NoAdapter(
            "wgpu found no adapter: no Vulkan, Metal or DX12 driver could be loaded \
             (on Debian, `apt-get install mesa-vulkan-drivers libvulkan1` gives a software one)"
                .into(),
        ));
    }
    let rank = |a: &wgpu::Adapter| {
        let info = a.get_info();
        let kind = match (info.device_type, choice) {
            (wgpu::DeviceType::DiscreteGpu, _) => 0,
            (wgpu::DeviceType::IntegratedGpu, _) => 1,
            (_, AdapterChoice::Auto) => return None,
            (wgpu::DeviceType::VirtualGpu, _) => 2,
            (wgpu::DeviceType::Other, _) => 3,
            (wgpu::DeviceType::Cpu, _) => 4,
        };
        Some((kind, info.backend == wgpu::Backend::Gl))
    };
    let names: Vec<String> = adapters
        .iter()
        .map(|a| {
            format!(
                "{} ({:?}, {:?})",
                a.get_info().name,
                a.get_info().device_type,
                a.get_info().backend
            )
        })
        .collect();
    adapters
        .into_iter()
        .filter_map(|a| Some((rank(&a)?, a)))
        .min_by_key(|(r, _)| *r)
        .map(|(_, a)| a)
        .ok_or_else(|| {
            GpuError::NoAdapter(format!(
                "no hardware adapter, only {} (AdapterChoice::Any takes it)",
                names.join(", ")
            ))
        })
}
