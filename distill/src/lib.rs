//! MNIST, optimizers, the training loops of plain training and knowledge distillation,
//! and the pieces of the `distill` program.
//!
//! [`train::train`] trains any [`models::Module`] (a built-in network, one built from a
//! description, or a module of the caller's own), from the labels alone or distilled from
//! a teacher that is any module too. One step of it, by hand:
//!
//! ```
//! use distill::optim::{Optimizer, OptimizerConfig, OptimizerKind};
//! use engine::{Device, Labels, Tensor};
//! use models::{builtin, Mode, Module, Network};
//!
//! let device = Device::Cpu;
//! let student = Network::new(&builtin::builtin("student-cnn").unwrap(), 0, &device)?;
//! let teacher = Network::new(&builtin::builtin("teacher-cnn").unwrap(), 1, &device)?;
//! let params = student.parameters();
//! let adam = OptimizerConfig::new(OptimizerKind::Adam, 1e-3);
//! let mut optimizer = Optimizer::new(adam, &params)?;
//! let images = Tensor::from_vec(vec![0.5; 4 * 784], &[4, 1, 28, 28], &device)?;
//! let labels = Labels::new(&[3, 1, 4, 1], &device)?;
//! let soft = teacher.forward(&images, Mode::Eval)?.detach();
//! let mut step = || -> engine::Result<f32> {
//!     let logits = student.forward(&images, Mode::Train { seed: 0 })?;
//!     // (1 - α)·CE(y, s) + α·T²·KL(softmax(t/T) ‖ softmax(s/T)), T = 4, α = 0.5
//!     let loss = logits.kd_loss(&soft, &labels, 4.0, 0.5)?.loss;
//!     optimizer.step(&params, &loss.backward()?)?;
//!     loss.to_scalar()
//! };
//! let (first, second) = (step()?, step()?);
//! assert!(second < first, "a step lowers the loss on its batch: {first} -> {second}");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs)]

pub mod calibration;
pub mod data;
pub mod error;
pub mod optim;
pub mod plot;
pub mod presets;
pub mod progress;
pub mod stats;
pub mod study;
pub mod sweep;
pub mod train;

pub use error::{DistillError, Result};
