//! Where the time goes: calls and seconds per kernel, for `distill --profile`.
//!
//! ```text
//! profile::enable(true)          start counting (off by default)
//! ... train ...
//! profile::report()              -> Vec<KernelStat>, slowest first
//! profile::table(&stats, wall)   the table `--profile` prints
//! profile::reset()               forget what was counted
//! ```
//!
//! On the CPU each backend function times its `kernels::cpu` call with `Instant` (the
//! guard `profile::cpu`); the autograd bookkeeping around it is not kernel time.
//! NOTE: the output `Vec` is taken (from the storage pool) before the clock starts; in
//! the first step, before the pool holds it, the OS hands out its pages on first touch,
//! so those page faults count as the kernel's.
//! On the GPU a launch returns as soon as it is recorded, so the host's clock would
//! only measure the recording: instead the backend hands the context to `profile::gpu`,
//! which turns on the context's own timing (device timestamps around each dispatch,
//! see `kernels::gpu::GpuTiming`), and [`report`] collects it.
//!
//! The counters are global, like the device a process trains on. Off, a kernel call
//! pays one relaxed atomic load.

#[cfg(feature = "gpu")]
use kernels::gpu::{GpuContext, GpuTiming};
use kernels::KernelId;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
#[cfg(feature = "gpu")]
use std::sync::{Arc, Weak};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

static ENABLED: AtomicBool = AtomicBool::new(false);

/// `(calls, seconds)` of the CPU kernels, indexed by `KernelId as usize`.
static CPU: Mutex<[(u64, f64); KernelId::COUNT]> = Mutex::new([(0, 0.0); KernelId::COUNT]);

/// The GPU contexts that ran a kernel while profiling was on.
#[cfg(feature = "gpu")]
static GPUS: Mutex<Vec<Weak<GpuContext>>> = Mutex::new(Vec::new());

/// One kernel's share of the time on one device.
#[derive(Clone, Debug, PartialEq)]
pub struct KernelStat {
    /// As in `kernels::cpu` and `KernelId::name`: `matmul`, `conv2d_backward_weight`, ...
    pub name: &'static str,
    /// Calls counted.
    pub calls: u64,
    /// Their total time in seconds: host clock on the CPU, device timestamps on the GPU.
    pub seconds: f64,
    /// `cpu` or `gpu`.
    pub device: &'static str,
}

impl KernelStat {
    /// Seconds per call.
    pub fn mean_seconds(&self) -> f64 {
        self.seconds / self.calls.max(1) as f64
    }
}

/// Starts (or stops) counting kernel calls and their time, on every device.
pub fn enable(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
    #[cfg(feature = "gpu")]
    for ctx in contexts() {
        ctx.set_profiling(on);
    }
}

/// Whether kernel calls are being counted.
pub fn is_enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Forgets every call counted so far.
pub fn reset() {
    *lock(&CPU) = [(0, 0.0); KernelId::COUNT];
    #[cfg(feature = "gpu")]
    for ctx in contexts() {
        ctx.profile_reset();
    }
}

/// Calls and seconds per kernel and device since the last [`reset`], slowest first.
/// Waits for the GPU work recorded so far, so that all of it is counted.
///
/// NOTE: a GPU context that was dropped takes its counts with it.
pub fn report() -> Vec<KernelStat> {
    let cpu = *lock(&CPU);
    let mut stats: Vec<KernelStat> = KernelId::ALL
        .iter()
        .zip(cpu)
        .filter(|(_, (calls, _))| *calls > 0)
        .map(|(id, (calls, seconds))| KernelStat {
            name: id.name(),
            calls,
            seconds,
            device: "cpu",
        })
        .collect();
    #[cfg(feature = "gpu")]
    for ctx in contexts() {
        for (name, calls, seconds) in ctx.profile_report() {
            match stats
                .iter_mut()
                .find(|s| s.device == "gpu" && s.name == name)
            {
                Some(s) => {
                    s.calls += calls;
                    s.seconds += seconds;
                }
                None => stats.push(KernelStat {
                    name,
                    calls,
                    seconds,
                    device: "gpu",
                }),
            }
        }
    }
    stats.sort_by(|a, b| b.seconds.total_cmp(&a.seconds).then(a.name.cmp(b.name)));
    stats
}

/// How the GPU kernels were timed, when a GPU ran any while profiling: a line for the
/// header of the table.
fn gpu_timing() -> Option<(&'static str, bool)> {
    #[cfg(feature = "gpu")]
    if let Some(ctx) = contexts().first() {
        let timing = ctx.profile_timing();
        return Some((timing.describe(), timing == GpuTiming::Timestamps));
    }
    None
}

/// True when a GPU that ran kernels while profiling times them by submitting and waiting
/// around each one (no timestamp queries): its queue then counts those submits too.
pub fn gpu_submits_per_kernel() -> bool {
    matches!(gpu_timing(), Some((_, false)))
}

/// Times one CPU kernel call until dropped; `None` (nothing to do) while profiling is off.
#[inline]
pub(crate) fn cpu(id: KernelId) -> Option<CpuScope> {
    is_enabled().then(|| CpuScope {
        id,
        start: Instant::now(),
    })
}

pub(crate) struct CpuScope {
    id: KernelId,
    start: Instant,
}

impl Drop for CpuScope {
    fn drop(&mut self) {
        let seconds = self.start.elapsed().as_secs_f64();
        let slot = &mut lock(&CPU)[self.id as usize];
        slot.0 += 1;
        slot.1 += seconds;
    }
}

/// Before a GPU launch: while profiling, makes sure `ctx` times its kernels and is
/// counted by [`report`].
#[cfg(feature = "gpu")]
#[inline]
pub(crate) fn gpu(ctx: &Arc<GpuContext>) {
    if is_enabled() && !ctx.profiling() {
        watch(ctx);
    }
}

#[cfg(feature = "gpu")]
#[cold]
fn watch(ctx: &Arc<GpuContext>) {
    let mut gpus = lock(&GPUS);
    gpus.retain(|w| w.strong_count() > 0);
    if !gpus
        .iter()
        .any(|w| std::ptr::eq(w.as_ptr(), Arc::as_ptr(ctx)))
    {
        gpus.push(Arc::downgrade(ctx));
    }
    ctx.set_profiling(true);
}

#[cfg(feature = "gpu")]
fn contexts() -> Vec<Arc<GpuContext>> {
    lock(&GPUS).iter().filter_map(Weak::upgrade).collect()
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The `--profile` table: each kernel's calls, total and mean time and share of
/// `wall_seconds` (the whole run), then the share spent outside the kernels.
pub fn table(stats: &[KernelStat], wall_seconds: f64) -> String {
    let wall = wall_seconds.max(1e-9);
    let mut s = String::new();
    let _ = writeln!(s, "Kernel profile: {} of wall time", duration(wall_seconds));
    if stats.iter().any(|k| k.device == "cpu") {
        let _ = writeln!(s, "CPU times: Instant around each kernel call");
    }
    if let Some((timing, timestamps)) =
        gpu_timing().filter(|_| stats.iter().any(|k| k.device == "gpu"))
    {
        let _ = writeln!(s, "GPU times: {timing}");
        if timestamps {
            let _ = writeln!(
                s,
                "(the device runs kernels while the host records the next ones: `other` is \
                 the wall time the device's kernel time does not cover)"
            );
        }
    }
    let _ = writeln!(
        s,
        "{:<28} {:<6} {:>9} {:>11} {:>7} {:>11}",
        "kernel", "device", "calls", "total", "% wall", "mean/call"
    );
    let (mut calls, mut seconds) = (0, 0.0);
    for k in stats {
        calls += k.calls;
        seconds += k.seconds;
        let _ = writeln!(
            s,
            "{:<28} {:<6} {:>9} {:>11} {:>6.1}% {:>11}",
            k.name,
            k.device,
            k.calls,
            duration(k.seconds),
            100.0 * k.seconds / wall,
            duration(k.mean_seconds())
        );
    }
    let other = wall_seconds - seconds;
    let _ = writeln!(
        s,
        "{:<35} {:>9} {:>11} {:>6.1}%",
        "all kernels",
        calls,
        duration(seconds),
        100.0 * seconds / wall
    );
    let _ = writeln!(
        s,
        "{:<45} {:>11} {:>6.1}%",
        "other: data, autograd bookkeeping, allocation",
        duration(other),
        100.0 * other / wall
    );
    s
}

/// `1.23 s`, `45.6 ms` or `789 µs`.
fn duration(seconds: f64) -> String {
    match seconds.abs() {
        t if t >= 1.0 => format!("{seconds:.2} s"),
        t if t >= 1e-3 => format!("{:.1} ms", 1e3 * seconds),
        _ => format!("{:.1} µs", 1e6 * seconds),
    }
}
