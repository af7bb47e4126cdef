//! The layers: `Linear`, `Conv2d` (trainable) and `MaxPool2d`, `ReLU`, `LeakyReLU`,
//! `Flatten`, `Dropout` (stateless). Each forward is one or two engine ops.

use crate::init::pytorch_uniform;
use crate::module::{Mode, Module};
use engine::{Device, Error, Tensor};
use rand::Rng;

/// `x: (n, in) -> x · Wᵀ + b: (n, out)`, with `weight: (out, in)`, `bias: (out)` as
/// PyTorch's `nn.Linear`.
#[derive(Clone, Debug)]
pub struct Linear {
    /// `(out, in)`, trainable.
    pub weight: Tensor,
    /// `(out)`, trainable.
    pub bias: Tensor,
}

impl Linear {
    /// PyTorch's default init: weight and bias from `U(-1/√in, 1/√in)`
    /// (see [`pytorch_uniform`]), weight drawn first.
    pub fn new(
        in_features: usize,
        out_features: usize,
        rng: &mut impl Rng,
        device: &Device,
    ) -> engine::Result<Linear> {
        let weight = pytorch_uniform(out_features * in_features, in_features, rng);
        let bias = pytorch_uniform(out_features, in_features, rng);
        Ok(Linear {
            weight: Tensor::parameter(weight, &[out_features, in_features], device)?,
            bias: Tensor::parameter(bias, &[out_features], device)?,
        })
    }

    /// A copy on `device` whose parameters are new trainable leaves.
    pub fn to_device(&self, device: &Device) -> engine::Result<Linear> {
        Ok(Linear {
            weight: copy_parameter(&self.weight, device)?,
            bias: copy_parameter(&self.bias, device)?,
        })
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor, _mode: Mode) -> engine::Result<Tensor> {
        x.matmul_t(&self.weight)?.bias_add(&self.bias)
    }

    fn parameters(&self) -> Vec<(String, Tensor)> {
        vec![
            ("weight".to_string(), self.weight.clone()),
            ("bias".to_string(), self.bias.clone()),
        ]
    }
}

/// `x: (n, c_in, h, w) -> (n, c_out, h_out, w_out)` with `weight: (c_out, c_in, k, k)`,
/// `bias: (c_out)`, zero padding `pad` on every side, as PyTorch's `nn.Conv2d`.
#[derive(Clone, Debug)]
pub struct Conv2d {
    /// `(c_out, c_in, k, k)`, trainable.
    pub weight: Tensor,
    /// `(c_out)`, trainable.
    pub bias: Tensor,
    /// Step of the kernel window, the same along both axes.
    pub stride: usize,
    /// Zeros added on every side of the input.
    pub pad: usize,
}

impl Conv2d {
    /// PyTorch's default init with `fan_in = c_in · k · k`: weight and bias from
    /// `U(-1/√fan_in, 1/√fan_in)`, weight drawn first.
    pub fn new(
        c_in: usize,
        c_out: usize,
        kernel: usize,
        stride: usize,
        pad: usize,
        rng: &mut impl Rng,
        device: &Device,
    ) -> engine::Result<Conv2d> {
        let fan_in = c_in * kernel * kernel;
        let weight = pytorch_uniform(c_out * fan_in, fan_in, rng);
        let bias = pytorch_uniform(c_out, fan_in, rng);
        Ok(Conv2d {
            weight: Tensor::parameter(weight, &[c_out, c_in, kernel, kernel], device)?,
            bias: Tensor::parameter(bias, &[c_out], device)?,
            stride,
            pad,
        })
    }

    /// A copy on `device` whose parameters are new trainable leaves.
    pub fn to_device(&self, device: &Device) -> engine::Result<Conv2d> {
        Ok(Conv2d {
            weight: copy_parameter(&self.weight, device)?,
            bias: copy_parameter(&self.bias, device)?,
            ..*self
        })
    }
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor, _mode: Mode) -> engine::Result<Tensor> {
        x.conv2d(&self.weight, self.stride, self.pad)?
            .bias_add(&self.bias)
    }

    fn parameters(&self) -> Vec<(String, Tensor)> {
        vec![
            ("weight".to_string(), self.weight.clone()),
            ("bias".to_string(), self.bias.clone()),
        ]
    }
}

fn copy_parameter(t: &Tensor, device: &Device) -> engine::Result<Tensor> {
    Tensor::parameter(t.to_vec()?, t.shape(), device)
}

/// `(n, c, h, w) -> (n, c, h_out, w_out)`: the max of each `kernel × kernel` window,
/// windows `stride` apart, floor mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaxPool2d {
    /// Side of the square window.
    pub kernel: usize,
    /// Step between windows, the same along both axes.
    pub stride: usize,
}

impl Module for MaxPool2d {
    fn forward(&self, x: &Tensor, _mode: Mode) -> engine::Result<Tensor> {
        x.max_pool2d(self.kernel, self.stride)
    }

    fn parameters(&self) -> Vec<(String, Tensor)> {
        Vec::new()
    }
}

/// `max(x, 0)`, elementwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReLU;

impl Module for ReLU {
    fn forward(&self, x: &Tensor, _mode: Mode) -> engine::Result<Tensor> {
        x.relu()
    }

    fn parameters(&self) -> Vec<(String, Tensor)> {
        Vec::new()
    }
}

/// `x` where `x > 0`, else `negative_slope · x`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LeakyReLU {
    /// The slope for negative inputs.
    pub negative_slope: f32,
}

impl Module for LeakyReLU {
    fn forward(&self, x: &Tensor, _mode: Mode) -> engine::Result<Tensor> {
        x.leaky_relu(self.negative_slope)
    }

    fn parameters(&self) -> Vec<(String, Tensor)> {
        Vec::new()
    }
}

/// `(n, ...) -> (n, rest)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flatten;

impl Module for Flatten {
    fn forward(&self, x: &Tensor, _mode: Mode) -> engine::Result<Tensor> {
        x.flatten()
    }

    fn parameters(&self) -> Vec<(String, Tensor)> {
        Vec::new()
    }
}

/// Inverted dropout with drop probability `p`, active only in [`Mode::Train`].
///
/// `index` tells the dropout layers of one network apart: each draws its mask from
/// [`Dropout::seed`], a mix of the step's seed and its index, so two layers never
/// share a mask in the same step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Dropout {
    p: f32,
    index: u32,
}

impl Dropout {
    /// `p` in `[0, 1)`: the probability of zeroing each value.
    pub fn new(p: f32, index: u32) -> engine::Result<Dropout> {
        if !(0.0..1.0).contains(&p) {
            return Err(Error::BadArgument {
                op: "dropout",
                message: format!("drop probability must be in [0, 1), got {p}"),
            });
        }
        Ok(Dropout { p, index })
    }

    /// The probability of zeroing each value.
    pub fn p(&self) -> f32 {
        self.p
    }

    /// The layer's position in its network's list of layers: what tells its masks apart.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The mask seed of this layer for a training step seeded with `step_seed`.
    pub fn seed(&self, step_seed: u32) -> u32 {
        // NOTE: the kernel hashes the seed again before use (`dropout_hash`), so this
        // only has to keep (step, layer) pairs apart, not to look random.
        step_seed.wrapping_mul(0x9E37_79B9) ^ self.index
    }
}

impl Module for Dropout {
    fn forward(&self, x: &Tensor, mode: Mode) -> engine::Result<Tensor> {
        match mode {
            Mode::Train { seed } => x.dropout(self.p, self.seed(seed)),
            // Inverted dropout scaled the kept values while training, so eval is identity.
            Mode::Eval => Ok(x.clone()),
        }
    }

    fn parameters(&self) -> Vec<(String, Tensor)> {
        Vec::new()
    }
}
