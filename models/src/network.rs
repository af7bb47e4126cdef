//! A network built from its description: layers with their `state_dict` prefixes, on
//! one device.

use crate::layers::{Conv2d, Dropout, Flatten, LeakyReLU, Linear, MaxPool2d, ReLU};
use crate::module::{Mode, Module};
use crate::spec::{LayerSpec, NetworkSpec, SpecError};
use engine::{Device, Error, Tensor};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::fmt;

/// A built layer of a [`Network`].
#[derive(Clone, Debug)]
pub enum Layer {
    /// A convolution with its bias.
    Conv2d(Conv2d),
    /// A fully connected layer.
    Linear(Linear),
    /// Max pooling.
    MaxPool2d(MaxPool2d),
    /// `max(x, 0)`.
    ReLU(ReLU),
    /// A leaky ReLU.
    LeakyReLU(LeakyReLU),
    /// `(n, ...) -> (n, rest)`.
    Flatten(Flatten),
    /// Dropout, active in [`Mode::Train`].
    Dropout(Dropout),
}

impl Layer {
    fn to_device(&self, device: &Device) -> engine::Result<Layer> {
        Ok(match self {
            Layer::Conv2d(conv) => Layer::Conv2d(conv.to_device(device)?),
            Layer::Linear(linear) => Layer::Linear(linear.to_device(device)?),
            stateless => stateless.clone(),
        })
    }

    fn module(&self) -> &dyn Module {
        match self {
            Layer::Conv2d(l) => l,
            Layer::Linear(l) => l,
            Layer::MaxPool2d(l) => l,
            Layer::ReLU(l) => l,
            Layer::LeakyReLU(l) => l,
            Layer::Flatten(l) => l,
            Layer::Dropout(l) => l,
        }
    }
}

impl Module for Layer {
    fn forward(&self, x: &Tensor, mode: Mode) -> engine::Result<Tensor> {
        self.module().forward(x, mode)
    }

    fn parameters(&self) -> Vec<(String, Tensor)> {
        self.module().parameters()
    }
}

/// Building a network failed: its description does not fit, or the engine refused.
#[derive(Clone, Debug, PartialEq)]
pub enum ModelError {
    /// The description: a layer that does not fit its input, a bad name, ...
    Spec(SpecError),
    /// Allocating the parameters (on a GPU, say).
    Engine(Error),
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelError::Spec(e) => e.fmt(f),
            ModelError::Engine(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ModelError {}

impl From<SpecError> for ModelError {
    fn from(e: SpecError) -> Self {
        ModelError::Spec(e)
    }
}

impl From<Error> for ModelError {
    fn from(e: Error) -> Self {
        ModelError::Engine(e)
    }
}

/// A network built from a [`NetworkSpec`], on one device.
///
/// `Clone` is shallow: the clone shares the parameter tensors (use
/// [`Network::to_device`] for an independent copy).
///
/// ```
/// use engine::{Device, Tensor};
/// use models::{builtin, Mode, Module, Network};
///
/// let net = Network::new(&builtin::builtin("student-cnn").unwrap(), 0, &Device::Cpu)?;
/// let images = Tensor::from_vec(vec![0.5; 2 * 784], &[2, 1, 28, 28], &Device::Cpu)?;
/// let logits = net.forward(&images, Mode::Eval)?;
/// assert_eq!(logits.shape(), [2, 10]);
/// assert_eq!(net.parameters()[0].0, "conv1.weight");
/// # Ok::<(), models::ModelError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Network {
    spec: NetworkSpec,
    device: Device,
    // (state_dict prefix, layer); stateless layers have an empty prefix.
    layers: Vec<(String, Layer)>,
    // `-mean` as a one-channel bias, a constant on `device`.
    input_shift: Tensor,
}

impl Network {
    /// Checks `spec` and builds it on `device` with PyTorch's default init, drawing every
    /// parameter from one RNG seeded with `seed`, layer by layer, weight before bias: the
    /// same seed gives bit-identical parameters.
    ///
    /// NOTE: the RNG is `rand`'s `StdRng`, which may change between `rand` versions;
    /// a checkpoint, not a seed, is what pins a network across builds.
    pub fn new(spec: &NetworkSpec, seed: u64, device: &Device) -> Result<Network, ModelError> {
        spec.check()?;
        let mut rng = StdRng::seed_from_u64(seed);
        let mut layers = Vec::new();
        for (index, layer) in spec.layers.iter().enumerate() {
            let built = match *layer {
                LayerSpec::Conv2d {
                    ref name,
                    in_channels,
                    out_channels,
                    kernel,
                    stride,
                    padding,
                } => {
                    let (c_in, c_out) = (in_channels, out_channels);
                    let conv = Conv2d::new(c_in, c_out, kernel, stride, padding, &mut rng, device)?;
                    (name.clone(), Layer::Conv2d(conv))
                }
                LayerSpec::Linear {
                    ref name,
                    in_features,
                    out_features,
                } => {
                    let linear = Linear::new(in_features, out_features, &mut rng, device)?;
                    (name.clone(), Layer::Linear(linear))
                }
                LayerSpec::MaxPool2d { kernel, stride } => {
                    let stride = stride.unwrap_or(kernel);
                    (
                        String::new(),
                        Layer::MaxPool2d(MaxPool2d { kernel, stride }),
                    )
                }
                LayerSpec::Relu {} => (String::new(), Layer::ReLU(ReLU)),
                LayerSpec::LeakyRelu { negative_slope } => (
                    String::new(),
                    Layer::LeakyReLU(LeakyReLU { negative_slope }),
                ),
                LayerSpec::Flatten {} => (String::new(), Layer::Flatten(Flatten)),
                LayerSpec::Dropout { p } => (
                    String::new(),
                    Layer::Dropout(Dropout::new(p, index as u32)?),
                ),
            };
            layers.push(built);
        }
        Ok(Network {
            spec: spec.clone(),
            device: device.clone(),
            layers,
            input_shift: input_shift(spec, device)?,
        })
    }

    /// The description it was built from.
    pub fn spec(&self) -> &NetworkSpec {
        &self.spec
    }

    /// The description's name (`student-cnn`).
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// Where its parameters live.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The layers in forward order with their `state_dict` prefixes (empty for
    /// layers without parameters).
    pub fn layers(&self) -> &[(String, Layer)] {
        &self.layers
    }

    /// Trainable values in all.
    pub fn parameter_count(&self) -> usize {
        self.parameters().iter().map(|(_, t)| t.numel()).sum()
    }

    /// See [`NetworkSpec::forward_flops_per_image`].
    pub fn forward_flops_per_image(&self) -> u64 {
        self.spec.forward_flops_per_image()
    }

    /// A copy on `device` whose parameters are new trainable leaves (on the same device
    /// too: the copy shares nothing with `self`).
    pub fn to_device(&self, device: &Device) -> engine::Result<Network> {
        let layers = self
            .layers
            .iter()
            .map(|(name, layer)| Ok((name.clone(), layer.to_device(device)?)))
            .collect::<engine::Result<_>>()?;
        Ok(Network {
            spec: self.spec.clone(),
            device: device.clone(),
            layers,
            input_shift: input_shift(&self.spec, device)?,
        })
    }
}

/// The conv of a conv → ReLU → 2×2 max-pool (stride 2) block at the start of `layers`,
/// which the forward runs as one fused op, `Tensor::conv2d_relu_pool`: the same values
/// as the three layers' own forwards, in one pass over memory.
fn fused_block(layers: &[(String, Layer)]) -> Option<&Conv2d> {
    match layers {
        [(_, Layer::Conv2d(conv)), (_, Layer::ReLU(_)), (_, Layer::MaxPool2d(pool)), ..]
            if (pool.kernel, pool.stride) == (2, 2) =>
        {
            Some(conv)
        }
        _ => None,
    }
}

fn input_shift(spec: &NetworkSpec, device: &Device) -> engine::Result<Tensor> {
    let channels = spec.input[0];
    Tensor::from_vec(vec![-spec.normalize.mean; channels], &[channels], device)
}

impl Module for Network {
    /// `x: (n, c, h, w)` images as the description's `input` says -> `(n, classes)`.
    fn forward(&self, x: &Tensor, mode: Mode) -> engine::Result<Tensor> {
        let shape = x.shape();
        if shape.len() != 4 || shape[0] == 0 || shape[1..] != self.spec.input {
            return Err(Error::BadArgument {
                op: "network forward",
                message: format!(
                    "{} takes (n, {}, {}, {}) images with n >= 1, got {shape:?}",
                    self.spec.name, self.spec.input[0], self.spec.input[1], self.spec.input[2]
                ),
            });
        }
        // (x - mean) / std, per pixel.
        let mut x = x
            .bias_add(&self.input_shift)?
            .scale(1.0 / self.spec.normalize.std)?;
        let mut rest = &self.layers[..];
        while !rest.is_empty() {
            let taken;
            (x, taken) = match fused_block(rest) {
                Some(conv) => (
                    x.conv2d_relu_pool(&conv.weight, &conv.bias, conv.stride, conv.pad)?,
                    3,
                ),
                None => (rest[0].1.forward(&x, mode)?, 1),
            };
            rest = &rest[taken..];
        }
        Ok(x)
    }

    fn parameters(&self) -> Vec<(String, Tensor)> {
        self.layers
            .iter()
            .flat_map(|(prefix, layer)| {
                layer
                    .parameters()
                    .into_iter()
                    .map(move |(name, t)| (format!("{prefix}.{name}"), t))
            })
            .collect()
    }

    fn spec(&self) -> Option<&NetworkSpec> {
        Some(&self.spec)
    }
}
