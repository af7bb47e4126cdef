//! Tensors on a CPU or GPU device, and a minimal reverse-mode autograd.
//!
//! A [`Tensor`] is an immutable, reference-counted f32 array with a shape and a
//! [`Device`]. Every op is a forward method on `Tensor` plus its backward in
//! `ops/<family>.rs`; when any input requires a gradient, the forward records an [`Op`]
//! that saves what the backward needs, and [`Tensor::backward`] walks those records
//! from the loss back to the parameters, returning a [`Gradients`] store.
//!
//! The engine is the only crate that matches on the device: `backend.rs` runs any kernel
//! of `kernels::registry` on the device of its operands, by one generic function.
//!
//! A tensor, an op, a backward:
//!
//! ```
//! use engine::{Device, Tensor};
//!
//! let device = Device::Cpu; // or the `Device::select("gpu")` one: the same code
//! // x (1, 2) and a parameter w (2, 2); y = relu(x · w), loss = Σ y.
//! let x = Tensor::from_vec(vec![1.0, -2.0], &[1, 2], &device)?;
//! let w = Tensor::parameter(vec![0.5, -1.0, 0.25, 1.0], &[2, 2], &device)?;
//! let y = x.matmul(&w)?.relu()?;
//! // x · w = [1·0.5 - 2·0.25, 1·(-1) - 2·1] = [0, -3]: both at or below ReLU's kink.
//! assert_eq!(y.to_vec()?, [0.0, 0.0]);
//! let loss = x.matmul(&w)?.scale(-1.0)?.relu()?.sum()?; // Σ relu(-x·w) = 0 + 3
//! assert_eq!(loss.to_scalar()?, 3.0);
//! // d loss / d w[i, j] = -x[i] · [(x·w)[j] < 0] = [[0, -1], [0, 2]]
//! let grads = loss.backward()?;
//! assert_eq!(grads.get(&w).unwrap().to_vec()?, [0.0, -1.0, 0.0, 2.0]);
//! assert!(grads.get(&x).is_none(), "x is a constant: no gradient");
//! # Ok::<(), engine::Error>(())
//! ```
#![warn(missing_docs)]

mod autograd;
mod backend;
mod device;
mod error;
mod ops;
pub mod profile;
mod storage;
mod tensor;
pub mod trace;

pub use autograd::{is_grad_enabled, no_grad, Gradients, NoGradGuard, Op, PointwiseBackward};
pub use device::{Device, QueueStats};
pub use error::{Error, Result};
pub use ops::loss::KdLoss;
pub use ops::optim::{Adam, Sgd};
pub use storage::Storage;
#[doc(hidden)]
pub use storage::{poison_unzeroed_outputs, pooled_words};
pub use tensor::{Labels, Tensor, TensorId};

pub use kernels;
