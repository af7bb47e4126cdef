//! Network descriptions: a network as data.
//!
//! A [`NetworkSpec`] lists the layers in forward order with the sizes their parameters
//! need. The five built-in networks are entries in [`crate::builtin`]; any other is a
//! JSON file (`distill train --model my-student.json`) or a few lines of code:
//!
//! ```
//! use models::NetworkSpec;
//!
//! // 28 -conv3-> 26 -pool-> 13: 8 · 13 · 13 = 1352 values into the first linear layer.
//! let spec = NetworkSpec::new("tiny-cnn")
//!     .conv2d("conv1", 1, 8, 3)
//!     .leaky_relu(0.2)
//!     .max_pool2d(2)
//!     .flatten()
//!     .linear("fc1", 1352, 10);
//! spec.check().unwrap();
//! assert_eq!(spec.parameter_count(), (8 * 9 + 8) + (1352 * 10 + 10));
//! // The same description as a file holds:
//! let json = spec.to_json();
//! assert!(json.contains(r#""type": "leaky_relu""#));
//! assert_eq!(NetworkSpec::from_json(&json).unwrap(), spec);
//! ```
//!
//! The JSON form, field by field (`stride`, `padding`, `input` and `normalize` may be
//! left out; they default to 1, 0, `[1, 28, 28]` and MNIST's mean and std):
//!
//! ```json
//! {
//!   "name": "tiny-cnn",
//!   "input": [1, 28, 28],
//!   "normalize": {"mean": 0.1307, "std": 0.3081},
//!   "layers": [
//!     {"type": "conv2d", "name": "conv1", "in_channels": 1, "out_channels": 8,
//!      "kernel": 3, "stride": 1, "padding": 0},
//!     {"type": "leaky_relu", "negative_slope": 0.2},
//!     {"type": "max_pool2d", "kernel": 2},
//!     {"type": "flatten"},
//!     {"type": "dropout", "p": 0.5},
//!     {"type": "linear", "name": "fc1", "in_features": 1352, "out_features": 10}
//!   ]
//! }
//! ```
//!
//! Layer types: `conv2d`, `linear` (trainable, named: their parameters are
//! `<name>.weight` and `<name>.bias`, PyTorch's `state_dict` names), `max_pool2d`
//! (`stride` defaults to `kernel`), `relu`, `leaky_relu` (`negative_slope`, default
//! 0.01), `flatten`, `dropout` (`p`, the drop probability). [`NetworkSpec::check`] walks
//! the shapes through the layers and names the first layer that does not fit.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::Path;

/// MNIST's training-set pixel mean and standard deviation (pixels in `[0, 1]`), as
/// `transforms.Normalize((0.1307,), (0.3081,))` in PyTorch's MNIST example.
pub const MNIST_MEAN: f32 = 0.1307;
/// See [`MNIST_MEAN`].
pub const MNIST_STD: f32 = 0.3081;

/// One MNIST image: `(channels, height, width)`.
pub const MNIST_INPUT: [usize; 3] = [1, 28, 28];

/// The most values any size, activation or parameter tensor of a description may have:
/// the kernels index with `u32`.
pub const MAX_VALUES: usize = u32::MAX as usize;

/// `shape`'s product, or `None` past [`MAX_VALUES`].
fn values(shape: &[usize]) -> Option<usize> {
    shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .filter(|&n| n <= MAX_VALUES)
}

/// A network: its name, the shape of one input image, the standardisation every input
/// goes through first, and its layers in forward order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSpec {
    /// Names the network in messages, reports and checkpoints (`student-cnn`).
    pub name: String,
    /// One image: `(channels, height, width)`; a batch is `(n, channels, height, width)`.
    #[serde(default = "mnist_input")]
    pub input: [usize; 3],
    /// `(x - mean) / std`, per pixel, before the first layer.
    #[serde(default)]
    pub normalize: Normalize,
    /// In forward order.
    pub layers: Vec<LayerSpec>,
}

fn mnist_input() -> [usize; 3] {
    MNIST_INPUT
}

/// The input standardisation `(x - mean) / std`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Normalize {
    /// Subtracted from every pixel.
    pub mean: f32,
    /// Divides every pixel after the mean is taken off.
    pub std: f32,
}

impl Default for Normalize {
    /// MNIST's: [`MNIST_MEAN`], [`MNIST_STD`].
    fn default() -> Normalize {
        Normalize {
            mean: MNIST_MEAN,
            std: MNIST_STD,
        }
    }
}

/// One layer, with the sizes its parameters need.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum LayerSpec {
    /// `(c_in, h, w) -> (c_out, h_out, w_out)`, PyTorch's `nn.Conv2d` with a bias and
    /// square kernels: `weight (out_channels, in_channels, kernel, kernel)`.
    Conv2d {
        /// The `state_dict` prefix: `<name>.weight`, `<name>.bias`.
        name: String,
        /// Channels of the input.
        in_channels: usize,
        /// Channels of the output (filters).
        out_channels: usize,
        /// Side of the square kernel.
        kernel: usize,
        /// Step between windows.
        #[serde(default = "one")]
        stride: usize,
        /// Zeros added on every side.
        #[serde(default)]
        padding: usize,
    },
    /// `(in_features) -> (out_features)`, PyTorch's `nn.Linear`: `weight (out, in)`.
    Linear {
        /// The `state_dict` prefix: `<name>.weight`, `<name>.bias`.
        name: String,
        /// Values of the (flat) input.
        in_features: usize,
        /// Values of the output.
        out_features: usize,
    },
    /// The max of each `kernel × kernel` window, windows `stride` apart, floor mode.
    MaxPool2d {
        /// Side of the window.
        kernel: usize,
        /// Step between windows; the window's side when left out, as PyTorch.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stride: Option<usize>,
    },
    /// `max(x, 0)`. NOTE: `{}`, an empty struct rather than a unit variant, so that serde
    /// refuses unknown keys in it too (`{"type": "relu", "negative_slope": 0.2}`).
    Relu {},
    /// `x` where `x > 0`, else `negative_slope · x`.
    LeakyRelu {
        /// PyTorch's default is 0.01; the Keras distillation example's teacher uses 0.2.
        #[serde(default = "default_slope")]
        negative_slope: f32,
    },
    /// `(c, h, w) -> (c · h · w)`; `{}` as [`LayerSpec::Relu`].
    Flatten {},
    /// Inverted dropout while training, identity while evaluating.
    Dropout {
        /// The probability of zeroing each value, in `[0, 1)`.
        p: f32,
    },
}

fn one() -> usize {
    1
}

fn default_slope() -> f32 {
    0.01
}

/// What is wrong with a description: the network, the layer at fault (if one is), and
/// what does not fit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecError {
    /// The description file it came from, when it came from one.
    pub file: Option<String>,
    /// The network's name, or `(description)` when the text could not be read as one.
    pub network: String,
    /// `(index from 1, a short description)` of the layer at fault.
    pub layer: Option<(usize, String)>,
    /// What does not fit, and what would.
    pub message: String,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{file}: ")?;
        }
        write!(f, "network `{}`: ", self.network)?;
        if let Some((i, layer)) = &self.layer {
            write!(f, "layer {i} ({layer}): ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for SpecError {}

impl LayerSpec {
    /// `conv2d conv1`, `relu`, ...: how messages name the layer.
    pub fn describe(&self) -> String {
        match self {
            LayerSpec::Conv2d { name, .. } => format!("conv2d `{name}`"),
            LayerSpec::Linear { name, .. } => format!("linear `{name}`"),
            LayerSpec::MaxPool2d { .. } => "max_pool2d".into(),
            LayerSpec::Relu {} => "relu".into(),
            LayerSpec::LeakyRelu { .. } => "leaky_relu".into(),
            LayerSpec::Flatten {} => "flatten".into(),
            LayerSpec::Dropout { .. } => "dropout".into(),
        }
    }

    /// Every size the layer is given (channels, features, kernel, stride, padding).
    fn sizes(&self) -> Vec<usize> {
        match *self {
            LayerSpec::Conv2d {
                in_channels,
                out_channels,
                kernel,
                stride,
                padding,
                ..
            } => vec![in_channels, out_channels, kernel, stride, padding],
            LayerSpec::Linear {
                in_features,
                out_features,
                ..
            } => vec![in_features, out_features],
            LayerSpec::MaxPool2d { kernel, stride } => vec![kernel, stride.unwrap_or(kernel)],
            _ => Vec::new(),
        }
    }

    /// The `state_dict` prefix of a trainable layer.
    pub fn name(&self) -> Option<&str> {
        match self {
            LayerSpec::Conv2d { name, .. } | LayerSpec::Linear { name, .. } => Some(name),
            _ => None,
        }
    }

    /// `(name, shape)` of each parameter, names with the layer's prefix.
    pub fn parameter_shapes(&self) -> Vec<(String, Vec<usize>)> {
        match self {
            LayerSpec::Conv2d {
                name,
                in_channels,
                out_channels,
                kernel,
                ..
            } => vec![
                (
                    format!("{name}.weight"),
                    vec![*out_channels, *in_channels, *kernel, *kernel],
                ),
                (format!("{name}.bias"), vec![*out_channels]),
            ],
            LayerSpec::Linear {
                name,
                in_features,
                out_features,
            } => vec![
                (format!("{name}.weight"), vec![*out_features, *in_features]),
                (format!("{name}.bias"), vec![*out_features]),
            ],
            _ => Vec::new(),
        }
    }

    /// The per-image output shape for a per-image input shape, or what does not fit.
    pub fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>, String> {
        let image = |what: &str| -> Result<[usize; 3], String> {
            match *input {
                [c, h, w] => Ok([c, h, w]),
                _ => Err(format!(
                    "{what} takes images (channels, height, width), but the layer before \
                     gives {input:?}"
                )),
            }
        };
        // `size` padded by `pad` on both sides; `None` past usize (a size no check let by).
        let padded = |size: usize, pad: usize| pad.checked_mul(2)?.checked_add(size);
        let window = |padded: usize, kernel: usize, stride: usize| (padded - kernel) / stride + 1;
        let overflow = || "sizes too large to compute with".to_string();
        match *self {
            LayerSpec::Conv2d {
                in_channels,
                out_channels,
                kernel,
                stride,
                padding,
                ..
            } => {
                let [c, h, w] = image("a convolution")?;
                if c != in_channels {
                    return Err(format!(
                        "in_channels is {in_channels}, but its input has {c} channels"
                    ));
                }
                if out_channels == 0 || kernel == 0 || stride == 0 {
                    return Err("out_channels, kernel and stride must be at least 1".into());
                }
                let (hp, wp) = (
                    padded(h, padding).ok_or_else(overflow)?,
                    padded(w, padding).ok_or_else(overflow)?,
                );
                if kernel > hp || kernel > wp {
                    return Err(format!(
                        "a {kernel}x{kernel} kernel does not fit a {h}x{w} input padded by \
                         {padding}"
                    ));
                }
                let (h_out, w_out) = (window(hp, kernel, stride), window(wp, kernel, stride));
                Ok(vec![out_channels, h_out, w_out])
            }
            LayerSpec::Linear {
                in_features,
                out_features,
                ..
            } => match *input {
                [n] if n == in_features && out_features > 0 => Ok(vec![out_features]),
                [n] if n == in_features => Err("out_features must be at least 1".into()),
                [n] => Err(format!(
                    "in_features is {in_features}, but its input has {n} values"
                )),
                _ => Err(format!(
                    "a linear layer takes flat inputs, but the layer before gives {input:?}; \
                     add {{\"type\": \"flatten\"}} before it (that gives {} values)",
                    input.iter().product::<usize>()
                )),
            },
            LayerSpec::MaxPool2d { kernel, stride } => {
                let [c, h, w] = image("max pooling")?;
                let stride = stride.unwrap_or(kernel);
                if kernel == 0 || stride == 0 {
                    return Err("kernel and stride must be at least 1".into());
                }
                if kernel > h || kernel > w {
                    return Err(format!(
                        "a {kernel}x{kernel} window does not fit a {h}x{w} input"
                    ));
                }
                Ok(vec![
                    c,
                    window(h, kernel, stride),
                    window(w, kernel, stride),
                ])
            }
            LayerSpec::Flatten {} => {
                let n = input.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
                Ok(vec![n.ok_or_else(overflow)?])
            }
            LayerSpec::Dropout { p } if !(0.0..1.0).contains(&p) => {
                Err(format!("p is the drop probability, in [0, 1); got {p}"))
            }
            LayerSpec::LeakyRelu { negative_slope } if !negative_slope.is_finite() => Err(format!(
                "negative_slope must be finite, got {negative_slope}"
            )),
            LayerSpec::Relu {} | LayerSpec::LeakyRelu { .. } | LayerSpec::Dropout { .. } => {
                Ok(input.to_vec())
            }
        }
    }

    /// FLOPs of this layer for one image of shape `input`: 2 per multiply-add of a conv
    /// or linear layer plus 1 per bias add; 0 for the others. `input` must fit.
    pub fn flops(&self, input: &[usize]) -> u64 {
        let out = match self.output_shape(input) {
            Ok(shape) => shape.iter().fold(1u64, |n, &d| n.saturating_mul(d as u64)),
            Err(_) => 0,
        };
        // NOTE: saturating: a description too large to train still gets a count.
        let per_value = |n: usize, k: usize| (2 * n as u64).saturating_mul((k * k) as u64) + 1;
        match *self {
            // Each output value: c_in·k·k multiply-adds and one bias add.
            LayerSpec::Conv2d {
                in_channels,
                kernel,
                ..
            } => out.saturating_mul(per_value(in_channels, kernel)),
            LayerSpec::Linear { in_features, .. } => out.saturating_mul(per_value(in_features, 1)),
            _ => 0,
        }
    }
}

impl NetworkSpec {
    /// An empty network for MNIST images (`[1, 28, 28]`, MNIST's standardisation); add
    /// layers with the builder methods below.
    pub fn new(name: &str) -> NetworkSpec {
        NetworkSpec {
            name: name.to_string(),
            input: MNIST_INPUT,
            normalize: Normalize::default(),
            layers: Vec::new(),
        }
    }

    /// Adds any layer.
    pub fn layer(mut self, layer: LayerSpec) -> NetworkSpec {
        self.layers.push(layer);
        self
    }

    /// Adds a `kernel × kernel` convolution, stride 1, no padding.
    pub fn conv2d(
        self,
        name: &str,
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
    ) -> NetworkSpec {
        self.conv2d_padded(name, in_channels, out_channels, kernel, 0)
    }

    /// Adds a `kernel × kernel` convolution, stride 1, with `padding` zeros on each side
    /// (`kernel / 2` keeps the image's size).
    pub fn conv2d_padded(
        self,
        name: &str,
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        padding: usize,
    ) -> NetworkSpec {
        self.layer(LayerSpec::Conv2d {
            name: name.into(),
            in_channels,
            out_channels,
            kernel,
            stride: 1,
            padding,
        })
    }

    /// Adds a linear layer.
    pub fn linear(self, name: &str, in_features: usize, out_features: usize) -> NetworkSpec {
        self.layer(LayerSpec::Linear {
            name: name.into(),
            in_features,
            out_features,
        })
    }

    /// Adds max pooling over `kernel × kernel` windows, `kernel` apart.
    pub fn max_pool2d(self, kernel: usize) -> NetworkSpec {
        self.layer(LayerSpec::MaxPool2d {
            kernel,
            stride: None,
        })
    }

    /// Adds a ReLU.
    pub fn relu(self) -> NetworkSpec {
        self.layer(LayerSpec::Relu {})
    }

    /// Adds a leaky ReLU with `negative_slope`.
    pub fn leaky_relu(self, negative_slope: f32) -> NetworkSpec {
        self.layer(LayerSpec::LeakyRelu { negative_slope })
    }

    /// Adds a flatten.
    pub fn flatten(self) -> NetworkSpec {
        self.layer(LayerSpec::Flatten {})
    }

    /// Adds dropout with drop probability `p`.
    pub fn dropout(self, p: f32) -> NetworkSpec {
        self.layer(LayerSpec::Dropout { p })
    }

    /// Walks the shapes through the layers: the per-image output shape of each layer, or
    /// the first thing that does not fit (a layer's sizes, a name, the input).
    pub fn check(&self) -> Result<Vec<Vec<usize>>, SpecError> {
        let fail = |layer: Option<(usize, &LayerSpec)>, message: String| SpecError {
            file: None,
            network: self.name.clone(),
            layer: layer.map(|(i, l)| (i + 1, l.describe())),
            message,
        };
        let valid_name = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        if !valid_name(&self.name) {
            return Err(fail(
                None,
                "a name of letters, digits, `-`, `_` and `.` is needed".into(),
            ));
        }
        if self.input.contains(&0) {
            return Err(fail(
                None,
                format!("input {:?} has an empty axis", self.input),
            ));
        }
        let too_large =
            |what: &str| format!("{what} past {MAX_VALUES} values (the kernels index with u32)");
        if values(&self.input).is_none() {
            let what = format!("input {:?} holds", self.input);
            return Err(fail(None, too_large(&what)));
        }
        let Normalize { mean, std } = self.normalize;
        if !(mean.is_finite() && std.is_finite() && std > 0.0) {
            return Err(fail(
                None,
                format!("normalize needs a finite mean and a std > 0, got {mean} and {std}"),
            ));
        }
        if self.layers.is_empty() {
            return Err(fail(None, "no layers".into()));
        }
        let mut names = std::collections::HashSet::new();
        let mut shape = self.input.to_vec();
        let mut shapes = Vec::with_capacity(self.layers.len());
        for (i, layer) in self.layers.iter().enumerate() {
            if let Some(name) = layer.name() {
                let identifier = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !identifier || name == "optim" {
                    return Err(fail(
                        Some((i, layer)),
                        "a trainable layer's name must be an identifier (letters, digits, \
                         `_`), not `optim`"
                            .into(),
                    ));
                }
                if !names.insert(name) {
                    return Err(fail(Some((i, layer)), "another layer has this name".into()));
                }
            }
            if layer.sizes().iter().any(|&n| n > MAX_VALUES) {
                return Err(fail(Some((i, layer)), too_large("a size")));
            }
            shape = layer
                .output_shape(&shape)
                .map_err(|message| fail(Some((i, layer)), message))?;
            if values(&shape).is_none() {
                return Err(fail(
                    Some((i, layer)),
                    too_large(&format!("its output {shape:?} holds")),
                ));
            }
            for (name, shape) in layer.parameter_shapes() {
                if values(&shape).is_none() {
                    return Err(fail(
                        Some((i, layer)),
                        too_large(&format!("`{name}` {shape:?} holds")),
                    ));
                }
            }
            shapes.push(shape.clone());
        }
        if shape.len() != 1 {
            return Err(fail(
                None,
                format!("the last layer must give one value per class, not {shape:?}"),
            ));
        }
        Ok(shapes)
    }

    /// The per-image output shape, `[classes]`, of a network that passes [`check`].
    ///
    /// [`check`]: NetworkSpec::check
    pub fn output_shape(&self) -> Result<Vec<usize>, SpecError> {
        Ok(self.check()?.pop().unwrap_or_default())
    }

    /// The `state_dict`: every parameter's name and shape, in order.
    pub fn parameter_shapes(&self) -> Vec<(String, Vec<usize>)> {
        self.layers
            .iter()
            .flat_map(LayerSpec::parameter_shapes)
            .collect()
    }

    /// Trainable values in all.
    pub fn parameter_count(&self) -> usize {
        self.parameter_shapes()
            .iter()
            .map(|(_, shape)| shape.iter().product::<usize>())
            .sum()
    }

    /// FLOPs of one image's forward pass: 2 per multiply-add of the conv and linear
    /// layers plus 1 per bias add. ReLU, pooling, dropout and flatten are not counted.
    pub fn forward_flops_per_image(&self) -> u64 {
        let mut shape = self.input.to_vec();
        let mut flops = 0;
        for layer in &self.layers {
            flops += layer.flops(&shape);
            match layer.output_shape(&shape) {
                Ok(next) => shape = next,
                Err(_) => break,
            }
        }
        flops
    }

    /// Parses a description from JSON text and [`check`]s it.
    ///
    /// [`check`]: NetworkSpec::check
    pub fn from_json(text: &str) -> Result<NetworkSpec, SpecError> {
        let spec: NetworkSpec = serde_json::from_str(text).map_err(|e| SpecError {
            file: None,
            network: "(description)".into(),
            layer: None,
            message: format!("not a network description: {e}"),
        })?;
        spec.check()?;
        Ok(spec)
    }

    /// The description as pretty-printed JSON, as [`NetworkSpec::from_json`] reads it.
    pub fn to_json(&self) -> String {
        // NOTE: every field is a string, a number or a list of them: serializing cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Reads and checks the description in the JSON file `path`.
    pub fn load(path: &Path) -> Result<NetworkSpec, SpecError> {
        let file = Some(path.display().to_string());
        let text = std::fs::read_to_string(path).map_err(|e| SpecError {
            file: file.clone(),
            network: "(description)".into(),
            layer: None,
            message: format!("cannot read the description file: {e}"),
        })?;
        NetworkSpec::from_json(&text).map_err(|e| SpecError { file, ..e })
    }

    /// What a `--model` flag names: a built-in network (`student-cnn`), else a
    /// description file.
    pub fn resolve(model: &str) -> Result<NetworkSpec, SpecError> {
        if let Some(spec) = crate::builtin::builtin(model) {
            return Ok(spec);
        }
        let path = Path::new(model);
        if path.exists() {
            return NetworkSpec::load(path);
        }
        let message = match model.contains(['/', '\\']) || model.ends_with(".json") {
            true => "no such description file".to_string(),
            false => format!(
                "neither a built-in network ({}) nor a description file",
                crate::builtin::NAMES.join(", ")
            ),
        };
        Err(SpecError {
            file: None,
            network: model.to_string(),
            layer: None,
            message,
        })
    }
}
