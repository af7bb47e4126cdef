//! Kernel timing on the device: calls and seconds per [`KernelId`], for `--profile`.
//!
//! A launcher returns as soon as its dispatch is recorded, so the host's clock says
//! nothing about a GPU kernel. With profiling on ([`GpuContext::set_profiling`]):
//!
//! - where the device has `TIMESTAMP_QUERY` (requested at device creation whenever the
//!   adapter offers it), each dispatch's compute pass writes a timestamp at its start
//!   and its end into a query set (indices `2i`, `2i + 1` for the `i`-th profiled
//!   dispatch of a submit). Each submit resolves the queries it used into a buffer and
//!   copies them to a mappable one, which is read once the device is done with it: the
//!   queue keeps its pace and nothing extra waits;
//! - elsewhere each kernel is submitted and waited for on its own, and timed on the host
//!   ([`GpuTiming::SubmitAndWait`]), which serializes the queue.
//!
//! With profiling off (the default) a launch pays one relaxed atomic load, and records
//! and submits exactly what it would without this module.

use super::context::{GpuContext, Pending};
use super::launch::MAX_PENDING;
use super::GpuError;
use crate::registry::KernelId;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

/// How a profiling context times its kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GpuTiming {
    /// Timestamp queries written by the device around each dispatch: device time, with
    /// the queue running as it does unprofiled.
    Timestamps,
    /// The adapter lacks timestamp queries: each kernel is submitted and waited for on
    /// its own and timed on the host, which serializes the queue.
    SubmitAndWait,
}

impl GpuTiming {
    /// One line for the header of a profile table.
    pub fn describe(self) -> &'static str {
        match self {
            GpuTiming::Timestamps => "timestamp queries around each dispatch (device time)",
            GpuTiming::SubmitAndWait => "submit-and-wait per kernel, which serializes the queue",
        }
    }
}

/// The profiling state of one context.
pub(crate) struct Profiler {
    on: AtomicBool,
    /// 1 forces [`GpuTiming::SubmitAndWait`] even with timestamp queries (tests).
    force_wait: AtomicU8,
    /// The device has `TIMESTAMP_QUERY`.
    has_timestamps: bool,
    /// Nanoseconds per timestamp tick.
    period_ns: f64,
    /// The query set and resolve buffer, made on the first profiled dispatch.
    queries: OnceLock<Queries>,
    state: Mutex<State>,
}

struct Queries {
    set: wgpu::QuerySet,
    /// `QUERY_RESOLVE | COPY_SRC`: every submit resolves into it, then copies it out.
    resolve: wgpu::Buffer,
}

struct State {
    /// `(calls, seconds)` per kernel, indexed by `KernelId as usize`.
    totals: [(u64, f64); KernelId::COUNT],
    /// One per submit with profiled dispatches, until the device has written it.
    in_flight: Vec<Readback>,
}

impl Default for State {
    fn default() -> State {
        State {
            totals: [(0, 0.0); KernelId::COUNT],
            in_flight: Vec::new(),
        }
    }
}

/// The resolved timestamps of one submit, on their way back to the host.
struct Readback {
    buffer: wgpu::Buffer,
    kernels: Vec<KernelId>,
    /// Set by the `map_async` callback: `Some(true)` once mapped, `Some(false)` if
    /// mapping failed.
    mapped: Arc<OnceLock<bool>>,
}

impl Profiler {
    pub(crate) fn new(device: &wgpu::Device, queue: &wgpu::Queue) -> Profiler {
        let has_timestamps = device.features().contains(wgpu::Features::TIMESTAMP_QUERY);
        Profiler {
            on: AtomicBool::new(false),
            force_wait: AtomicU8::new(0),
            has_timestamps,
            period_ns: queue.get_timestamp_period() as f64,
            queries: OnceLock::new(),
            state: Mutex::default(),
        }
    }

    /// The only cost of profiling while it is off.
    #[inline]
    pub(crate) fn is_on(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }

    fn timing(&self) -> GpuTiming {
        if self.has_timestamps && self.force_wait.load(Ordering::Relaxed) == 0 {
            GpuTiming::Timestamps
        } else {
            GpuTiming::SubmitAndWait
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn add(&self, id: KernelId, calls: u64, seconds: f64) {
        let mut state = self.lock();
        let slot = &mut state.totals[id as usize];
        slot.0 += calls;
        slot.1 += seconds;
    }

    fn queries(&self, device: &wgpu::Device) -> &Queries {
        self.queries.get_or_init(|| Queries {
            set: device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("kernels::gpu profile timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count: 2 * MAX_PENDING as u32,
            }),
            resolve: device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("kernels::gpu profile resolve"),
                size: 2 * MAX_PENDING * wgpu::QUERY_SIZE as u64,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            }),
        })
    }

    /// Adds the timestamps of every submit the device has finished; keeps the others.
    fn harvest(&self) {
        let mut state = self.lock();
        let in_flight = std::mem::take(&mut state.in_flight);
        for r in in_flight {
            match r.mapped.get() {
                None => state.in_flight.push(r),
                Some(false) => {}
                Some(true) => {
                    if let Ok(view) = r.buffer.get_mapped_range(..) {
                        let ticks: Vec<u64> = bytemuck::pod_collect_to_vec(&view[..]);
                        for (id, pair) in r.kernels.iter().zip(ticks.chunks_exact(2)) {
                            // NOTE: saturating: some drivers reset the counter between
                            // submits, and a pass can read end < begin across a reset.
                            let ns = pair[1].saturating_sub(pair[0]) as f64 * self.period_ns;
                            let slot = &mut state.totals[*id as usize];
                            slot.0 += 1;
                            slot.1 += ns * 1e-9;
                        }
                    }
                    r.buffer.unmap();
                }
            }
        }
    }
}

impl GpuContext {
    /// Turns kernel timing on or off (off by default); see [`GpuContext::profile_report`].
    pub fn set_profiling(&self, on: bool) {
        self.profiler.on.store(on, Ordering::Relaxed);
    }

    /// True while kernels are timed.
    pub fn profiling(&self) -> bool {
        self.profiler.is_on()
    }

    /// How this context times kernels: timestamp queries where the device has them.
    pub fn profile_timing(&self) -> GpuTiming {
        self.profiler.timing()
    }

    /// NOTE: for tests only: time by submit-and-wait even where timestamp queries exist,
    /// to exercise the fallback on any device.
    #[doc(hidden)]
    pub fn force_submit_and_wait_timing(&self, on: bool) {
        self.profiler.force_wait.store(on as u8, Ordering::Relaxed);
    }

    /// `(kernel, calls, seconds)` for every kernel dispatched while profiling since the
    /// last [`GpuContext::profile_reset`], in [`KernelId::ALL`] order. Submits the
    /// recorded work and waits for it, so that every profiled dispatch is counted.
    pub fn profile_report(&self) -> Vec<(&'static str, u64, f64)> {
        self.settle_profile();
        let state = self.profiler.lock();
        KernelId::ALL
            .iter()
            .zip(&state.totals)
            .filter(|(_, (calls, _))| *calls > 0)
            .map(|(id, &(calls, seconds))| (id.name(), calls, seconds))
            .collect()
    }

    /// Forgets the calls and times counted so far (work already recorded included).
    pub fn profile_reset(&self) {
        let unread = !self.lock_pending().profiled.is_empty();
        if unread || !self.profiler.lock().in_flight.is_empty() {
            self.settle_profile();
        }
        let mut state = self.profiler.lock();
        state.totals = [(0, 0.0); KernelId::COUNT];
        state.in_flight.clear();
    }

    /// Submits the pending work, waits for the device and adds up what it timed.
    fn settle_profile(&self) {
        self.flush();
        // NOTE: a wait that fails (device lost) leaves those submits uncounted; the
        // error itself is the next `read`'s to report.
        let _ = self.device.poll(wgpu::PollType::wait_indefinitely());
        self.profiler.harvest();
    }

    /// The `timestamp_writes` of the next dispatch, to be timed by the device (profiling
    /// on, [`GpuTiming::Timestamps`]); notes the kernel in `pending`, whose lock is held.
    pub(crate) fn timestamp_writes(
        &self,
        pending: &mut Pending,
        id: KernelId,
    ) -> wgpu::ComputePassTimestampWrites<'_> {
        let i = 2 * pending.profiled.len() as u32;
        pending.profiled.push(id);
        wgpu::ComputePassTimestampWrites {
            query_set: &self.profiler.queries(&self.device).set,
            beginning_of_pass_write_index: Some(i),
            end_of_pass_write_index: Some(i + 1),
        }
    }

    /// Submits the pending work and waits for it; for [`GpuTiming::SubmitAndWait`].
    pub(crate) fn submit_and_wait(&self, pending: &mut Pending) -> Result<(), GpuError> {
        self.submit_locked(pending);
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map(|_| ())
            .map_err(|e| GpuError::Readback(format!("waiting for the device: {e}")))
    }

    /// Counts one kernel timed by submit-and-wait.
    pub(crate) fn add_kernel_time(&self, id: KernelId, elapsed: Duration) {
        self.profiler.add(id, 1, elapsed.as_secs_f64());
    }

    /// Before a submit: resolves the timestamps of the profiled dispatches in `encoder`
    /// and copies them to a mappable buffer. Returns what [`after_submit`] maps.
    ///
    /// [`after_submit`]: GpuContext::after_submit
    pub(crate) fn before_submit(
        &self,
        pending: &mut Pending,
        encoder: &mut wgpu::CommandEncoder,
    ) -> Option<(wgpu::Buffer, Vec<KernelId>)> {
        if pending.profiled.is_empty() {
            return None;
        }
        let kernels = std::mem::take(&mut pending.profiled);
        let q = self.profiler.queries(&self.device);
        let bytes = 2 * kernels.len() as u64 * wgpu::QUERY_SIZE as u64;
        encoder.resolve_query_set(&q.set, 0..2 * kernels.len() as u32, &q.resolve, 0);
        let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("kernels::gpu profile readback"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        encoder.copy_buffer_to_buffer(&q.resolve, 0, &buffer, 0, bytes);
        Some((buffer, kernels))
    }

    /// After the submit: asks for the timestamps to be mapped once the device is done,
    /// and adds up those of earlier submits that have arrived.
    pub(crate) fn after_submit(&self, resolved: Option<(wgpu::Buffer, Vec<KernelId>)>) {
        if let Some((buffer, kernels)) = resolved {
            let mapped = Arc::new(OnceLock::new());
            let flag = mapped.clone();
            buffer.map_async(wgpu::MapMode::Read, .., move |r| {
                let _ = flag.set(r.is_ok());
            });
            self.profiler.lock().in_flight.push(Readback {
                buffer,
                kernels,
                mapped,
            });
        }
        if self.profiler.is_on() {
            self.profiler.harvest();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::{matmul, AdapterChoice};
    use crate::params::MatmulParams;

    fn gpu() -> Option<Arc<GpuContext>> {
        match GpuContext::new(AdapterChoice::Any) {
            Ok(ctx) => Some(ctx),
            Err(e) if std::env::var("KD_REQUIRE_GPU").is_ok_and(|v| v == "1") => {
                panic!("KD_REQUIRE_GPU=1 but no GPU: {e}")
            }
            Err(e) => {
                eprintln!("\n*** SKIPPED: {e}; set KD_REQUIRE_GPU=1 to fail instead ***\n");
                None
            }
        }
    }

    /// `count` products of (8, 8) · (8, 8), then the result read back.
    fn matmuls(ctx: &Arc<GpuContext>, count: usize) {
        let a = ctx.upload(&[1.0; 64]).unwrap();
        let c = ctx.zeros(64).unwrap();
        let p = MatmulParams::new(8, 8, 8).unwrap();
        for _ in 0..count {
            matmul(ctx, &a, &a, &c, &p).unwrap();
        }
        // 8 = Σ_k 1·1 over k = 0..8.
        assert_eq!(ctx.read(&c).unwrap(), vec![8.0; 64]);
    }

    fn matmul_stat(ctx: &GpuContext) -> Option<(u64, f64)> {
        let report = ctx.profile_report();
        assert!(
            report.iter().all(|(name, _, _)| *name == "matmul"),
            "{report:?}"
        );
        report.first().map(|&(_, calls, seconds)| (calls, seconds))
    }

    #[test]
    fn profiling_counts_each_dispatch_in_both_timings() {
        let Some(ctx) = gpu() else { return };
        matmuls(&ctx, 3);
        assert_eq!(matmul_stat(&ctx), None, "nothing is counted while off");

        ctx.set_profiling(true);
        // More than MAX_PENDING, so that the timestamps span several submits.
        matmuls(&ctx, MAX_PENDING as usize + 5);
        let (calls, seconds) = matmul_stat(&ctx).unwrap();
        assert_eq!(calls, MAX_PENDING + 5);
        assert!(seconds >= 0.0);
        if ctx.profile_timing() == GpuTiming::Timestamps {
            assert!(seconds > 0.0, "timestamps read {seconds} s");
        }

        ctx.profile_reset();
        ctx.force_submit_and_wait_timing(true);
        assert_eq!(ctx.profile_timing(), GpuTiming::SubmitAndWait);
        matmuls(&ctx, 4);
        let (calls, seconds) = matmul_stat(&ctx).unwrap();
        assert_eq!(calls, 4);
        assert!(seconds > 0.0);

        ctx.set_profiling(false);
        ctx.profile_reset();
        matmuls(&ctx, 2);
        assert_eq!(matmul_stat(&ctx), None);
    }
}
