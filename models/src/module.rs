//! The `Module` trait and the train / eval switch.

use engine::Tensor;

/// Whether a forward pass trains (dropout active) or evaluates (dropout is identity).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Dropout draws its masks from `seed`: pass a new seed each step for fresh masks,
    /// the same seed to replay a step exactly.
    Train {
        seed: u32,
    },
    Eval,
}

/// A layer or a network: a forward pass and its named trainable tensors.
pub trait Module {
    fn forward(&self, x: &Tensor, mode: Mode) -> engine::Result<Tensor>;

    /// The trainable tensors with their `state_dict` names, in `state_dict` order.
    /// A layer names them relative to itself (`weight`, `bias`); a network prefixes
    /// them with the layer's name (`fc1.weight`). The tensors share their values with
    /// the module: an optimizer step on them updates the module.
    fn parameters(&self) -> Vec<(String, Tensor)>;
}
