//! CPU kernels: one op family per file, parallel over what each task owns (samples,
//! output channels, row blocks), no locks and no atomics, so results are deterministic.

pub mod activation;
pub mod conv2d;
pub mod conv2d_pool;
pub mod elementwise;
pub mod isa;
pub mod matmul;
pub mod optim;
pub mod pool;
pub mod softmax;
pub mod vmath;

pub use activation::*;
pub use conv2d::*;
pub use conv2d_pool::*;
pub use elementwise::*;
pub use isa::{Isa, IsaError, ISA_ENV};
pub use matmul::*;
pub use optim::*;
pub use pool::*;
pub use softmax::*;
