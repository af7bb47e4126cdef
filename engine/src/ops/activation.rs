//! ReLU and inverted dropout.

use crate::autograd::Op;
use crate::backend;
use crate::error::{Error, Result};
use crate::storage::Storage;
use crate::tensor::Tensor;
use kernels::params::{DropoutParams, ElementwiseParams};

impl Tensor {
    pub fn relu(&self) -> Result<Tensor> {
        let out = backend::relu_forward(&self.storage(), &ElementwiseParams::new(self.numel()))?;
        let record = Op::Relu { x: self.clone() };
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
        let p = DropoutParams::new(self.numel(), p_drop, seed);
        let (out, mask) = backend::dropout_forward(&self.storage(), &p)?;
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

// NOTE: relu'(0) = 0, as PyTorch.  dx = g · [x > 0]
pub(crate) fn relu_backward(x: &Tensor, g: &Storage) -> Result<Storage> {
    backend::relu_backward(&x.storage(), g, &ElementwiseParams::new(x.numel()))
}

// dx = g · mask
pub(crate) fn dropout_backward(mask: &Storage, p: &DropoutParams, g: &Storage) -> Result<Storage> {
    backend::dropout_backward(g, mask, p)
}
