//! The four architectures, as data (`Arch::layers`) and as networks (`Network`).

use crate::layers::{Conv2d, Dropout, Flatten, Linear, MaxPool2d, ReLU};
use crate::module::{Mode, Module};
use engine::{Device, Error, Tensor};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::fmt;
use std::str::FromStr;

/// One image as every network takes it: `(channels, height, width)`. A batch is
/// `(n, 1, 28, 28)`; the MLPs flatten it themselves.
pub const INPUT_SHAPE: [usize; 3] = [1, 28, 28];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Arch {
    TeacherCnn,
    StudentCnn,
    TeacherMlp,
    StudentMlp,
}

/// One layer of an architecture, with the sizes its parameters need. Trainable layers
/// carry their `state_dict` prefix.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LayerSpec {
    Conv2d {
        name: &'static str,
        c_in: usize,
        c_out: usize,
        kernel: usize,
        stride: usize,
        pad: usize,
    },
    Linear {
        name: &'static str,
        in_features: usize,
        out_features: usize,
    },
    MaxPool2d {
        kernel: usize,
        stride: usize,
    },
    ReLU,
    Flatten,
    Dropout {
        p: f32,
    },
}

impl Arch {
    pub const ALL: [Arch; 4] = [
        Arch::TeacherCnn,
        Arch::StudentCnn,
        Arch::TeacherMlp,
        Arch::StudentMlp,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Arch::TeacherCnn => "teacher-cnn",
            Arch::StudentCnn => "student-cnn",
            Arch::TeacherMlp => "teacher-mlp",
            Arch::StudentMlp => "student-mlp",
        }
    }

    /// The layers in forward order.
    pub fn layers(self) -> Vec<LayerSpec> {
        use LayerSpec::{Flatten, MaxPool2d, ReLU};
        let conv = |name, c_in, c_out| LayerSpec::Conv2d {
            name,
            c_in,
            c_out,
            kernel: 3,
            stride: 1,
            pad: 0,
        };
        let linear = |name, in_features, out_features| LayerSpec::Linear {
            name,
            in_features,
            out_features,
        };
        let pool = MaxPool2d {
            kernel: 2,
            stride: 2,
        };
        let dropout = |p| LayerSpec::Dropout { p };
        match self {
            // 28 -conv3-> 26 -pool-> 13 -conv3-> 11 -pool-> 5: 64 · 5 · 5 = 1600
            Arch::TeacherCnn => vec![
                conv("conv1", 1, 32),
                ReLU,
                pool,
                conv("conv2", 32, 64),
                ReLU,
                pool,
                Flatten,
                linear("fc1", 1600, 128),
                ReLU,
                linear("fc2", 128, 10),
            ],
            // 28 -conv3-> 26 -pool-> 13: 16 · 13 · 13 = 2704
            Arch::StudentCnn => vec![
                conv("conv1", 1, 16),
                ReLU,
                pool,
                Flatten,
                linear("fc1", 2704, 64),
                ReLU,
                linear("fc2", 64, 10),
            ],
            // Hinton et al. 2015 / Srivastava et al. 2014: 20% dropout on the input
            // pixels, 50% on each hidden layer.
            Arch::TeacherMlp => vec![
                Flatten,
                dropout(0.2),
                linear("fc1", 784, 1200),
                ReLU,
                dropout(0.5),
                linear("fc2", 1200, 1200),
                ReLU,
                dropout(0.5),
                linear("fc3", 1200, 10),
            ],
            Arch::StudentMlp => vec![
                Flatten,
                linear("fc1", 784, 800),
                ReLU,
                linear("fc2", 800, 800),
                ReLU,
                linear("fc3", 800, 10),
            ],
        }
    }

    /// The `state_dict`: every parameter's name and shape, in order.
    pub fn parameter_shapes(self) -> Vec<(String, Vec<usize>)> {
        self.layers()
            .iter()
            .flat_map(LayerSpec::parameter_shapes)
            .collect()
    }

    pub fn parameter_count(self) -> usize {
        self.parameter_shapes()
            .iter()
            .map(|(_, shape)| shape.iter().product::<usize>())
            .sum()
    }

    /// FLOPs of one image's forward pass: 2 per multiply-add of the conv and linear
    /// layers plus 1 per bias add. ReLU, pooling, dropout and flatten are not counted.
    pub fn forward_flops_per_image(self) -> u64 {
        let mut shape = INPUT_SHAPE.to_vec();
        let mut flops = 0;
        for layer in self.layers() {
            flops += layer.flops(&shape);
            shape = layer.output_shape(&shape);
        }
        flops
    }
}

impl LayerSpec {
    /// `(name, shape)` of each parameter, names with the layer's prefix.
    pub fn parameter_shapes(&self) -> Vec<(String, Vec<usize>)> {
        match *self {
            LayerSpec::Conv2d {
                name,
                c_in,
                c_out,
                kernel,
                ..
            } => vec![
                (format!("{name}.weight"), vec![c_out, c_in, kernel, kernel]),
                (format!("{name}.bias"), vec![c_out]),
            ],
            LayerSpec::Linear {
                name,
                in_features,
                out_features,
            } => vec![
                (format!("{name}.weight"), vec![out_features, in_features]),
                (format!("{name}.bias"), vec![out_features]),
            ],
            _ => Vec::new(),
        }
    }

    /// The per-image output shape for a per-image input shape (no batch axis).
    ///
    /// NOTE: assumes the input fits (checked by the tests of every `Arch`); the
    /// real forward pass checks shapes and returns errors.
    pub fn output_shape(&self, input: &[usize]) -> Vec<usize> {
        let window = |size: usize, kernel: usize, stride: usize, pad: usize| {
            (size + 2 * pad).saturating_sub(kernel) / stride.max(1) + 1
        };
        match (*self, input) {
            (
                LayerSpec::Conv2d {
                    c_out,
                    kernel,
                    stride,
                    pad,
                    ..
                },
                &[_, h, w],
            ) => vec![
                c_out,
                window(h, kernel, stride, pad),
                window(w, kernel, stride, pad),
            ],
            (LayerSpec::MaxPool2d { kernel, stride }, &[c, h, w]) => {
                vec![
                    c,
                    window(h, kernel, stride, 0),
                    window(w, kernel, stride, 0),
                ]
            }
            (LayerSpec::Linear { out_features, .. }, _) => vec![out_features],
            (LayerSpec::Flatten, _) => vec![input.iter().product()],
            _ => input.to_vec(),
        }
    }

    /// FLOPs of this layer for one image of shape `input`; see
    /// [`Arch::forward_flops_per_image`].
    pub fn flops(&self, input: &[usize]) -> u64 {
        let out: usize = self.output_shape(input).iter().product();
        let flops = match *self {
            // Each output value: c_in·k·k multiply-adds and one bias add.
            LayerSpec::Conv2d { c_in, kernel, .. } => out * (2 * c_in * kernel * kernel + 1),
            LayerSpec::Linear { in_features, .. } => out * (2 * in_features + 1),
            _ => 0,
        };
        flops as u64
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The error of `"...".parse::<Arch>()`: names the input and the valid names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseArchError {
    pub name: String,
}

impl fmt::Display for ParseArchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let valid: Vec<&str> = Arch::ALL.iter().map(|a| a.name()).collect();
        write!(
            f,
            "unknown architecture `{}`; expected one of: {}",
            self.name,
            valid.join(", ")
        )
    }
}

impl std::error::Error for ParseArchError {}

impl FromStr for Arch {
    type Err = ParseArchError;

    fn from_str(s: &str) -> Result<Arch, ParseArchError> {
        Arch::ALL
            .into_iter()
            .find(|a| a.name() == s)
            .ok_or_else(|| ParseArchError {
                name: s.to_string(),
            })
    }
}

/// A built layer of a [`Network`].
#[derive(Clone, Debug)]
pub enum Layer {
    Conv2d(Conv2d),
    Linear(Linear),
    MaxPool2d(MaxPool2d),
    ReLU(ReLU),
    Flatten(Flatten),
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
}

impl Module for Layer {
    fn forward(&self, x: &Tensor, mode: Mode) -> engine::Result<Tensor> {
        match self {
            Layer::Conv2d(l) => l.forward(x, mode),
            Layer::Linear(l) => l.forward(x, mode),
            Layer::MaxPool2d(l) => l.forward(x, mode),
            Layer::ReLU(l) => l.forward(x, mode),
            Layer::Flatten(l) => l.forward(x, mode),
            Layer::Dropout(l) => l.forward(x, mode),
        }
    }

    fn parameters(&self) -> Vec<(String, Tensor)> {
        match self {
            Layer::Conv2d(l) => l.parameters(),
            Layer::Linear(l) => l.parameters(),
            Layer::MaxPool2d(l) => l.parameters(),
            Layer::ReLU(l) => l.parameters(),
            Layer::Flatten(l) => l.parameters(),
            Layer::Dropout(l) => l.parameters(),
        }
    }
}

/// A built architecture: its layers with their `state_dict` prefixes, on one device.
///
/// `Clone` is shallow: the clone shares the parameter tensors (use
/// [`Network::to_device`] for an independent copy).
#[derive(Clone, Debug)]
pub struct Network {
    arch: Arch,
    device: Device,
    // (state_dict prefix, layer); stateless layers have an empty prefix.
    layers: Vec<(&'static str, Layer)>,
    // `-MNIST_MEAN` as a one-channel bias, a constant on `device`.
    input_shift: Tensor,
}

/// The mean and standard deviation of MNIST's training pixels (in [0, 1]): every network
/// standardises its input with them first, as `transforms.Normalize((0.1307,), (0.3081,))`
/// does in PyTorch's MNIST example, which the reference accuracies come from.
pub const MNIST_MEAN: f32 = 0.1307;
pub const MNIST_STD: f32 = 0.3081;

fn input_shift(device: &Device) -> engine::Result<Tensor> {
    Tensor::from_vec(vec![-MNIST_MEAN], &[1], device)
}

impl Network {
    /// Builds `arch` on `device` with PyTorch's default init, drawing every parameter
    /// from one RNG seeded with `seed`, layer by layer, weight before bias: the same
    /// seed gives bit-identical parameters.
    ///
    /// NOTE: the RNG is `rand`'s `StdRng`, which may change between `rand` versions;
    /// a checkpoint, not a seed, is what pins a network across builds.
    pub fn new(arch: Arch, seed: u64, device: &Device) -> engine::Result<Network> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut layers = Vec::new();
        for (index, spec) in arch.layers().into_iter().enumerate() {
            let layer = match spec {
                LayerSpec::Conv2d {
                    name,
                    c_in,
                    c_out,
                    kernel,
                    stride,
                    pad,
                } => {
                    let conv = Conv2d::new(c_in, c_out, kernel, stride, pad, &mut rng, device)?;
                    (name, Layer::Conv2d(conv))
                }
                LayerSpec::Linear {
                    name,
                    in_features,
                    out_features,
                } => {
                    let linear = Linear::new(in_features, out_features, &mut rng, device)?;
                    (name, Layer::Linear(linear))
                }
                LayerSpec::MaxPool2d { kernel, stride } => {
                    ("", Layer::MaxPool2d(MaxPool2d { kernel, stride }))
                }
                LayerSpec::ReLU => ("", Layer::ReLU(ReLU)),
                LayerSpec::Flatten => ("", Layer::Flatten(Flatten)),
                LayerSpec::Dropout { p } => ("", Layer::Dropout(Dropout::new(p, index as u32)?)),
            };
            layers.push(layer);
        }
        Ok(Network {
            arch,
            device: device.clone(),
            layers,
            input_shift: input_shift(device)?,
        })
    }

    pub fn arch(&self) -> Arch {
        self.arch
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The layers in forward order with their `state_dict` prefixes (empty for
    /// layers without parameters).
    pub fn layers(&self) -> &[(&'static str, Layer)] {
        &self.layers
    }

    pub fn parameter_count(&self) -> usize {
        self.parameters().iter().map(|(_, t)| t.numel()).sum()
    }

    /// See [`Arch::forward_flops_per_image`].
    pub fn forward_flops_per_image(&self) -> u64 {
        self.arch.forward_flops_per_image()
    }

    /// A copy on `device` whose parameters are new trainable leaves (on the same device
    /// too: the copy shares nothing with `self`).
    pub fn to_device(&self, device: &Device) -> engine::Result<Network> {
        let layers = self
            .layers
            .iter()
            .map(|(name, layer)| Ok((*name, layer.to_device(device)?)))
            .collect::<engine::Result<_>>()?;
        Ok(Network {
            arch: self.arch,
            device: device.clone(),
            layers,
            input_shift: input_shift(device)?,
        })
    }
}

impl Module for Network {
    /// `x: (n, 1, 28, 28)` images -> `(n, 10)` logits.
    fn forward(&self, x: &Tensor, mode: Mode) -> engine::Result<Tensor> {
        let shape = x.shape();
        if shape.len() != 4 || shape[0] == 0 || shape[1..] != INPUT_SHAPE {
            return Err(Error::BadShape {
                op: self.arch.name(),
                shape: shape.to_vec(),
                expected: "(n, 1, 28, 28) images with n >= 1",
            });
        }
        // (x - mean) / std, per pixel.
        let mut x = x.bias_add(&self.input_shift)?.scale(1.0 / MNIST_STD)?;
        for (_, layer) in &self.layers {
            x = layer.forward(&x, mode)?;
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
}
