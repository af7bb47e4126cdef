//! Pure compute: slices (or GPU buffers) and a params struct in, results out.
//!
//! Every kernel exists twice: a rayon function in [`cpu`] and a WGSL shader in `wgsl/`
//! launched from `gpu` (with the `gpu` feature). Both take the same `#[repr(C)]` params
//! struct from [`params`]; on the GPU it is the shader's uniform, so shapes never enter
//! shader text and one compiled pipeline serves every batch size. [`registry`] declares
//! each kernel once (name, params, WGSL, buffer arguments, grid) and derives the rest:
//! [`KernelId`], the composed sources, and the [`Kernel`] trait the engine runs them by.
//!
//! ```
//! use kernels::{cpu, params::MatmulParams};
//!
//! // c (2, 2) = a (2, 3) · b (3, 2)
//! let (a, b) = ([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [1.0, 0.0, 0.0, 1.0, 1.0, 1.0]);
//! let mut c = [0.0; 4];
//! cpu::matmul(&a, &b, &mut c, &MatmulParams::new(2, 2, 3)?)?;
//! assert_eq!(c, [4.0, 5.0, 10.0, 11.0]);
//! // A `c` too short for (2, 2) is an error, on the CPU as on the GPU.
//! assert!(cpu::matmul(&a, &b, &mut [0.0; 3], &MatmulParams::new(2, 2, 3)?).is_err());
//! # Ok::<(), kernels::KernelError>(())
//! ```
//!
//! This crate never sees a tensor: layouts are documented at the top of each kernel.
#![warn(missing_docs)]

pub mod cpu;
pub mod error;
#[cfg(feature = "gpu")]
pub mod gpu;
pub mod params;
pub mod plan;
pub mod registry;

pub use error::{KernelError, MAX_WORDS};
pub use params::*;
pub use registry::{Kernel, KernelId};

/// How much work a GPU queue was handed: `kernels::gpu::GpuContext::queue_stats`. Here
/// rather than in `gpu`, so that a CPU-only build can still name the type.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// `queue.submit` calls: each hands the device a batch of recorded commands.
    pub submits: u64,
    /// Compute dispatches recorded (copies and clears are not counted).
    pub dispatches: u64,
}

impl std::ops::Sub for QueueStats {
    type Output = QueueStats;
    /// The work between two readings: `later - earlier`.
    fn sub(self, earlier: QueueStats) -> QueueStats {
        QueueStats {
            submits: self.submits - earlier.submits,
            dispatches: self.dispatches - earlier.dispatches,
        }
    }
}
