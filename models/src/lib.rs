//! Layers, the teacher and student networks, and their safetensors checkpoints.
//!
//! A network is a list of layers, each a [`Module`]: `forward` maps a tensor to a
//! tensor through the ops of `engine`, and `parameters` lists the trainable tensors
//! under the names a PyTorch `state_dict` would give them (`conv1.weight`,
//! `fc1.bias`, ...), which are also the names in a checkpoint file.
//!
//! This crate never looks at the device: it builds tensors on the one it is given and
//! calls tensor methods, and `engine` sends each op to the CPU or the GPU.

pub mod checkpoint;
mod init;
mod layers;
mod module;
mod network;

pub use checkpoint::{Checkpoint, CheckpointError};
pub use init::pytorch_uniform;
pub use layers::{Conv2d, Dropout, Flatten, Linear, MaxPool2d, ReLU};
pub use module::{Mode, Module};
pub use network::{Arch, Layer, LayerSpec, Network, ParseArchError, INPUT_SHAPE};
