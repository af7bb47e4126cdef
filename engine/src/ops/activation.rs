//! Pointwise activations (ReLU, leaky ReLU) and inverted dropout.
//!
//! A pointwise activation is a pair of kernels of `kernels::registry`, its forward and
//! its backward; `Tensor::pointwise` runs the forward and records the backward in an
//! [`Op::Pointwise`]. A new one is a line here, beside its kernels.

use crate::autograd::Op;
use crate::backend::run;
use crate::error::{Error, Result};
use crate::storage::Storage;
use crate::tensor::Tensor;
use kernels::params::{DropoutParams, ElementwiseParams};
use kernels::registry::{self as k, Kernel};

impl Tensor {
    /// `max(x, 0)`, elementwise. NOTE: relu'(0) = 0, as PyTorch.
    pub fn relu(&self) -> Result<Tensor> {
        self.pointwise::<k::ReluForward, k::ReluBackward>(0.0)
    }

    /// `x` where `x > 0`, else `slope · x`: PyTorch's `LeakyReLU(negative_slope)`.
    pub fn leaky_relu(&self, slope: f32) -> Result<Tensor> {
        if !slope.is_finite() {
            return Err(Error::BadArgument {
                op: "leaky_relu",
                message: format!("the negative slope must be finite, got {slope}"),
            });
        }
        self.pointwise::<k::LeakyReluForward, k::LeakyReluBackward>(slope)
    }

    /// Runs the pointwise activation's forward kernel `F` (with `alpha`, its one scalar)
    /// and records its backward kernel `B` for the gradient, which reads the saved input.
    fn pointwise<F, B>(&self, alpha: f32) -> Result<Tensor>
    where
        F: Kernel<Params = ElementwiseParams> + Default,
        B: Kernel<Params = ElementwiseParams> + Default,
    {
        let p = ElementwiseParams::with_alpha(self.numel(), alpha)?;
        let [out] = run(F::default(), &p, &[&self.storage()])?;
        let record = Op::Pointwise {
            x: self.clone(),
            params: p,
            backward: pointwise_backward::<B>,
            name: F::ID.file(),
        };
        Ok(Tensor::from_op(
            out,
            self.shape().to_vec(),
            self.device(),
            record,
        ))
    }

    /// Zeroes each value with probability `p_drop` and scales the kept ones by
    /// `1 / (1 - p_drop)`; the mask is a pure function of `seed` and the position, so the
    /// CPU and GPU draw the same one.
    pub fn dropout(&self, p_drop: f32, seed: u32) -> Result<Tensor> {
        if !(0.0..1.0).contains(&p_drop) {
            return Err(Error::BadArgument {
                op: "dropout",
                message: format!("drop probability must be in [0, 1), got {p_drop}"),
            });
        }
        let p = DropoutParams::new(self.numel(), p_drop, seed)?;
        let [out, mask] = run(k::DropoutForward, &p, &[&self.storage()])?;
        let record = Op::Dropout {
            x: self.clone(),
            mask,
            params: p,
        };
        Ok(Tensor::from_op(
            out,
            self.shape().to_vec(),
            self.device(),
            record,
        ))
    }
}

/// The backward kernel `B` of a pointwise activation on `(x, g)`.
fn pointwise_backward<B: Kernel<Params = ElementwiseParams> + Default>(
    p: &ElementwiseParams,
    x: &Storage,
    g: &Storage,
) -> Result<Storage> {
    let [grad_x] = run(B::default(), p, &[x, g])?;
    Ok(grad_x)
}

// dx = g · mask
pub(crate) fn dropout_backward(mask: &Storage, p: &DropoutParams, g: &Storage) -> Result<Storage> {
    let [grad_x] = run(k::DropoutBackward, p, &[g, mask])?;
    Ok(grad_x)
}
