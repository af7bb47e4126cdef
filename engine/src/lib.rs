//! Tensors on a CPU or GPU device, and a minimal reverse-mode autograd.
//!
//! A [`Tensor`] is an immutable, reference-counted f32 array with a shape and a
//! [`Device`]. Every op is a forward method on `Tensor` plus its backward in
//! `ops/<family>.rs`; when any input requires a gradient, the forward records an [`Op`]
//! that saves what the backward needs, and [`Tensor::backward`] walks those records
//! from the loss back to the parameters, returning a [`Gradients`] store.
//!
//! The engine is the only crate that matches on the device: `backend.rs` turns each
//! kernel call into the CPU function or the GPU launcher of `kernels`.

mod autograd;
mod backend;
mod device;
mod error;
pub mod host_memory;
mod ops;
pub mod profile;
mod storage;
mod tensor;

pub use autograd::{is_grad_enabled, no_grad, Gradients, NoGradGuard, Op};
pub use device::Device;
pub use error::{Error, Result};
pub use ops::loss::KdLoss;
pub use storage::{IndexStorage, Storage};
pub use tensor::{Labels, Tensor, TensorId};

pub use kernels;
