//! The `Module` trait and the train / eval switch.

use crate::spec::NetworkSpec;
use engine::Tensor;

/// Whether a forward pass trains (dropout active) or evaluates (dropout is identity).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Dropout draws its masks from `seed`: pass a new seed each step for fresh masks,
    /// the same seed to replay a step exactly.
    Train {
        /// The step's seed.
        seed: u32,
    },
    /// Evaluation: no dropout.
    Eval,
}

/// A layer or a network: a forward pass and its named trainable tensors.
///
/// Anything that implements it can be trained, distilled (as student or teacher),
/// evaluated and checkpointed by `distill`; a [`crate::Network`] also describes itself,
/// so that a checkpoint of it can be rebuilt without the code that made it.
///
/// ```
/// use engine::{Device, Tensor};
/// use models::{Linear, Mode, Module};
///
/// /// Two linear layers with a leaky ReLU between them.
/// struct Mlp { fc1: Linear, fc2: Linear }
///
/// impl Module for Mlp {
///     fn forward(&self, x: &Tensor, mode: Mode) -> engine::Result<Tensor> {
///         self.fc2.forward(&self.fc1.forward(&x.flatten()?, mode)?.leaky_relu(0.1)?, mode)
///     }
///     fn parameters(&self) -> Vec<(String, Tensor)> {
///         let named = |prefix: &str, l: &Linear| {
///             l.parameters().into_iter().map(|(n, t)| (format!("{prefix}.{n}"), t)).collect::<Vec<_>>()
///         };
///         [named("fc1", &self.fc1), named("fc2", &self.fc2)].concat()
///     }
/// }
///
/// let mut rng = rand::rng();
/// let mlp = Mlp {
///     fc1: Linear::new(4, 3, &mut rng, &Device::Cpu)?,
///     fc2: Linear::new(3, 2, &mut rng, &Device::Cpu)?,
/// };
/// let x = Tensor::from_vec(vec![0.5; 8], &[2, 4], &Device::Cpu)?;
/// assert_eq!(mlp.forward(&x, Mode::Eval)?.shape(), [2, 2]);
/// assert_eq!(mlp.parameters()[2].0, "fc2.weight");
/// # Ok::<(), engine::Error>(())
/// ```
pub trait Module {
    /// Maps a batch to a batch; [`Mode`] says whether dropout is active.
    fn forward(&self, x: &Tensor, mode: Mode) -> engine::Result<Tensor>;

    /// The trainable tensors with their `state_dict` names, in `state_dict` order.
    /// A layer names them relative to itself (`weight`, `bias`); a network prefixes
    /// them with the layer's name (`fc1.weight`). The tensors share their values with
    /// the module: an optimizer step on them updates the module.
    fn parameters(&self) -> Vec<(String, Tensor)>;

    /// The description that rebuilds this module, when it has one (a
    /// [`crate::Network`] does). Checkpoints save it, so that `distill eval` can load
    /// the file alone; a module without one is loaded into with
    /// `checkpoint::load_into`.
    fn spec(&self) -> Option<&NetworkSpec> {
        None
    }
}
