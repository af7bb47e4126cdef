//! MNIST, optimizers, the training loops of plain training and knowledge distillation,
//! and the pieces of the `distill` program.

pub mod data;
pub mod error;
pub mod optim;
pub mod presets;
pub mod progress;
pub mod study;
pub mod train;

pub use error::{DistillError, Result};
