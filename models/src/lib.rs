//! Layers, networks built from descriptions, and their safetensors checkpoints.
//!
//! A network is data: a [`NetworkSpec`] lists its layers (the five built-in ones are
//! entries in [`builtin`]; others come from a JSON file or a few lines of code), and
//! [`Network::new`] builds it on a device. Every layer and network is a [`Module`]:
//! `forward` maps a tensor to a tensor through the ops of `engine`, and `parameters`
//! lists the trainable tensors under the names a PyTorch `state_dict` would give them
//! (`conv1.weight`, `fc1.bias`, ...), which are also the names in a checkpoint file.
//! Any `Module` can be trained, distilled and checkpointed by `distill`.
//!
//! This crate never looks at the device: it builds tensors on the one it is given and
//! calls tensor methods, and `engine` sends each op to the CPU or the GPU.
#![warn(missing_docs)]

pub mod builtin;
pub mod checkpoint;
mod init;
mod layers;
mod module;
mod network;
pub mod onnx;
pub mod spec;
pub mod web;

pub use checkpoint::{Checkpoint, CheckpointError};
pub use init::pytorch_uniform;
pub use layers::{Conv2d, Dropout, Flatten, LeakyReLU, Linear, MaxPool2d, ReLU};
pub use module::{Mode, Module};
pub use network::{Layer, ModelError, Network};
pub use spec::{LayerSpec, NetworkSpec, Normalize, SpecError, MNIST_INPUT, MNIST_MEAN, MNIST_STD};
