//! Optimizer steps on tensors, in place: the update rules live in `kernels`, the state
//! and schedule in `distill::optim`.

use crate::backend;
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use kernels::params::{AdamParams, SgdParams};

fn check(op: &'static str, param: &Tensor, other: &Tensor) -> Result<()> {
    param.check_same_device(op, other)?;
    if param.shape() != other.shape() {
        return Err(Error::ShapeMismatch {
            op,
            lhs: param.shape().to_vec(),
            rhs: other.shape().to_vec(),
        });
    }
    Ok(())
}

impl Tensor {
    /// One SGD step on this parameter; `velocity` is its momentum buffer.
    pub fn sgd_step(&self, grad: &Tensor, velocity: &Tensor, p: &SgdParams) -> Result<()> {
        check("sgd_step", self, grad)?;
        check("sgd_step", self, velocity)?;
        let p = SgdParams {
            len: self.numel() as u32,
            ..*p
        };
        backend::sgd_step(
            &mut self.storage_mut(),
            &grad.storage(),
            &mut velocity.storage_mut(),
            &p,
        )
    }

    /// One Adam (or AdamW) step on this parameter with moments `m` and `v`.
    pub fn adam_step(&self, grad: &Tensor, m: &Tensor, v: &Tensor, p: &AdamParams) -> Result<()> {
        check("adam_step", self, grad)?;
        check("adam_step", self, m)?;
        check("adam_step", self, v)?;
        let p = AdamParams {
            len: self.numel() as u32,
            ..*p
        };
        backend::adam_step(
            &mut self.storage_mut(),
            &grad.storage(),
            &mut m.storage_mut(),
            &mut v.storage_mut(),
            &p,
        )
    }
}
