//! The WGSL kernels, launched through wgpu: the GPU twin of [`crate::cpu`].
//!
//! ```text
//! AdapterChoice::{Auto, Any}     Auto: hardware only (discrete, then integrated) or Err;
//!                                Any: software adapters (llvmpipe) too, for tests
//! GpuContext::new(choice)        -> Result<Arc<GpuContext>, GpuError>
//!   .adapter_name() .is_software()
//!   .upload(&[f32]) .upload_u32(&[u32]) .zeros(len)   -> Result<GpuBuffer> (len in 4-byte words)
//!   .read(&buf) .read_u32(&buf)  -> Result<Vec<_>, GpuError>   the only point that waits
//!   .flush()                     submit recorded work without waiting
//!   .copy(&src, &dst) .copy_to(&src, &dst, offset) -> Result   recorded, like a launcher
//!   .queue_stats()               submits and dispatches so far; .trim_pool()
//!   .set_profiling(bool) .profile_report() .profile_reset() .profile_timing()
//!                                kernel times for --profile (see profile.rs)
//! GpuBuffer                      .len(); on drop its wgpu::Buffer goes back to the pool
//! matmul(ctx, a, b, c, &p) ...   one launcher per kernel (see kernels::registry), same
//!                                names and argument order as kernels::cpu; outputs are
//!                                passed by & (the GPU writes)
//! ```
//!
//! Launchers check buffer lengths against the params, then *record* a dispatch into the
//! context's pending command encoder and return: nothing waits until [`GpuContext::read`].
//! The pending work is submitted on `read` / `flush`, or every `MAX_PENDING` (1024)
//! dispatches. Each dispatch gets its own slot of a uniform ring for its params, because
//! `queue.write_buffer` lands before *all* the commands of the next submit. For the same
//! reason an `upload` takes only a pooled buffer freed before the last submit (no
//! recorded command can still read it), so uploads never force a submit: a training step
//! stages its inputs and records its kernels, and one `flush` sends the whole step.
//! Errors wgpu raises later (out of memory, validation) are returned by the next `read`.
//!
//! Every shader binds its params struct (from [`crate::params`], the same bytes) at
//! `@binding(0)` and its buffers from `@binding(1)` in argument order, so shapes never
//! enter shader text and each pipeline is compiled once, on first use.

mod buffer;
mod context;
pub(crate) mod launch;
mod pipeline;
mod profile;
mod split;

pub use crate::registry::launchers::*;
pub use crate::QueueStats;
pub use buffer::GpuBuffer;
pub use context::{AdapterChoice, GpuContext};
pub use profile::GpuTiming;
pub use split::{conv2d_backward_weight, conv2d_pool_backward_weight, matmul, sum_axis};

use crate::error::KernelError;
use std::fmt;

/// What can go wrong on the GPU side; every variant names the op and the sizes involved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GpuError {
    /// No adapter of the kind asked for (or no Vulkan/Metal/DX12 driver at all).
    NoAdapter(String),
    /// The adapter refused to open a device.
    RequestDevice(String),
    /// What the CPU twin would refuse too: a buffer shorter than the params say the op
    /// reads or writes ([`KernelError::TooShort`]), a span no index reaches, bad params.
    Kernel(KernelError),
    /// A buffer larger than the adapter can make (`upload`, `zeros`: its largest
    /// buffer), or an argument larger than it can bind to one shader (a kernel: its
    /// largest storage-buffer binding).
    TooLarge {
        /// The kernel's name, or the allocation's (`upload`, `zeros`, `scratch`).
        op: &'static str,
        /// The argument that is too large (`buffer` for an allocation).
        arg: &'static str,
        /// Bytes it needs.
        bytes: u64,
        /// The adapter's limit, in bytes.
        limit: u64,
    },
    /// A dispatch needs more workgroups than even a 2-D split can launch.
    TooManyWorkgroups {
        /// The kernel's name.
        op: &'static str,
        /// Workgroups the dispatch needs.
        workgroups: u64,
        /// The most a 2-D split can launch: the per-dimension limit, squared.
        limit: u64,
    },
    /// A buffer was created by another context.
    ForeignBuffer {
        /// The kernel's name.
        op: &'static str,
        /// The argument whose buffer is foreign.
        arg: &'static str,
    },
    /// The same buffer was passed as an output and as another argument of one dispatch.
    Aliased {
        /// The kernel's name.
        op: &'static str,
        /// The first of the two arguments.
        a: &'static str,
        /// The second of the two arguments.
        b: &'static str,
    },
    /// Mapping a buffer for reading, or waiting for the device, failed.
    Readback(String),
    /// wgpu reported a validation or out-of-memory error for recorded work.
    Device(String),
}

impl fmt::Display for GpuError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GpuError::NoAdapter(msg) => write!(f, "no GPU adapter: {msg}"),
            GpuError::RequestDevice(msg) => write!(f, "GPU device request failed: {msg}"),
            GpuError::Kernel(e) => e.fmt(f),
            GpuError::TooLarge {
                op,
                arg,
                bytes,
                limit,
            } => {
                write!(
                    f,
                    "{op}: `{arg}` needs {bytes} bytes, the adapter allows {limit}"
                )
            }
            GpuError::TooManyWorkgroups {
                op,
                workgroups,
                limit,
            } => {
                write!(
                    f,
                    "{op}: needs {workgroups} workgroups, at most {limit} can be launched"
                )
            }
            GpuError::ForeignBuffer { op, arg } => {
                write!(f, "{op}: buffer `{arg}` belongs to another GPU context")
            }
            GpuError::Aliased { op, a, b } => {
                write!(
                    f,
                    "{op}: `{a}` and `{b}` are the same buffer; outputs must be distinct"
                )
            }
            GpuError::Readback(msg) => write!(f, "GPU readback failed: {msg}"),
            GpuError::Device(msg) => write!(f, "GPU error: {msg}"),
        }
    }
}

impl std::error::Error for GpuError {}

impl From<KernelError> for GpuError {
    fn from(e: KernelError) -> Self {
        GpuError::Kernel(e)
    }
}
