//! Optimizer steps on tensors, in place: the update rules live in `kernels`, the state
//! and schedule in `distill::optim`.

use crate::backend::run_into;
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use kernels::params::{AdamParams, MaxNormParams, SgdParams};
use kernels::registry as k;

/// SGD's hyper-parameters, as PyTorch's `SGD`: `g = grad + weight_decay · p;
/// v = momentum · v + g; p -= lr · v` (plain `p -= lr · g` when `momentum == 0`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sgd {
    /// The learning rate.
    pub lr: f32,
    /// The velocity's decay; 0 for plain SGD.
    pub momentum: f32,
    /// L2 decay added to the gradient.
    pub weight_decay: f32,
}

/// Adam's hyper-parameters, as PyTorch's `Adam`, or `AdamW` with `decoupled`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Adam {
    /// The learning rate.
    pub lr: f32,
    /// The first moment's decay.
    pub beta1: f32,
    /// The second moment's decay.
    pub beta2: f32,
    /// Added to the root of the second moment.
    pub eps: f32,
    /// L2 decay added to the gradient (Adam) or applied to the parameter (AdamW).
    pub weight_decay: f32,
    /// AdamW: `p -= lr · weight_decay · p` before the update instead of the L2 term.
    pub decoupled: bool,
}

/// No two of `tensors` share their values: one is read while the others are written,
/// and a read and a write of the same storage would wait on each other forever.
fn distinct(op: &'static str, tensors: &[(&Tensor, &str)]) -> Result<()> {
    for (i, (a, a_name)) in tensors.iter().enumerate() {
        if let Some((_, b_name)) = tensors[i + 1..].iter().find(|(b, _)| a.shares_storage(b)) {
            return Err(Error::BadArgument {
                op,
                message: format!("the {a_name} and the {b_name} are the same tensor"),
            });
        }
    }
    Ok(())
}

/// `other` has the shape and device of `param`, and is not the same tensor (a step on a
/// parameter with itself as its gradient would wait forever on its own lock).
fn check(op: &'static str, param: &Tensor, other: &Tensor, name: &str) -> Result<()> {
    param.check_same_device(op, other)?;
    if param.shape() != other.shape() {
        return Err(Error::ShapeMismatch {
            op,
            lhs: param.shape().to_vec(),
            rhs: other.shape().to_vec(),
        });
    }
    if param.shares_storage(other) {
        return Err(Error::BadArgument {
            op,
            message: format!("the {name} is the parameter itself"),
        });
    }
    Ok(())
}

impl Tensor {
    /// The max-norm constraint on this weight, in place: each unit's incoming weights
    /// (a row along the first dimension: `(out, in)`, or `(out, in, kh, kw)`) whose L2
    /// norm exceeds `max_norm` are scaled down onto it (Hinton et al. 2012).
    pub fn max_norm_rows(&self, max_norm: f32) -> Result<()> {
        const OP: &str = "max_norm_rows";
        if !(max_norm > 0.0 && max_norm.is_finite()) {
            return Err(Error::BadArgument {
                op: OP,
                message: format!("max_norm must be > 0 and finite, got {max_norm}"),
            });
        }
        let rows = match self.shape() {
            [rows, _, ..] => *rows,
            shape => {
                return Err(Error::BadShape {
                    op: OP,
                    shape: shape.to_vec(),
                    expected: "a weight of 2 or more dimensions, rows along the first",
                })
            }
        };
        let cols = self.numel() / rows.max(1);
        let p = MaxNormParams::new(rows, cols, max_norm)?;
        run_into::<k::MaxNormRows>(&p, &[], &mut [&mut *self.storage_mut()])
    }

    /// One SGD step on this parameter; `velocity` is its momentum buffer.
    pub fn sgd_step(&self, grad: &Tensor, velocity: &Tensor, h: &Sgd) -> Result<()> {
        check("sgd_step", self, grad, "gradient")?;
        check("sgd_step", self, velocity, "velocity")?;
        distinct("sgd_step", &[(grad, "gradient"), (velocity, "velocity")])?;
        let p = SgdParams::new(self.numel(), h.lr, h.momentum, h.weight_decay)?;
        let mut writes = [&mut *self.storage_mut(), &mut *velocity.storage_mut()];
        run_into::<k::SgdStep>(&p, &[&grad.storage()], &mut writes)
    }

    /// Step `t` (counted from 1) of Adam on this parameter with moments `m` and `v`.
    pub fn adam_step(&self, grad: &Tensor, m: &Tensor, v: &Tensor, h: &Adam, t: u64) -> Result<()> {
        check("adam_step", self, grad, "gradient")?;
        check("adam_step", self, m, "first moment")?;
        check("adam_step", self, v, "second moment")?;
        let state = [
            (grad, "gradient"),
            (m, "first moment"),
            (v, "second moment"),
        ];
        distinct("adam_step", &state)?;
        let p = AdamParams::new(
            self.numel(),
            h.lr,
            h.beta1,
            h.beta2,
            h.eps,
            h.weight_decay,
            h.decoupled,
            t,
        )?;
        let mut writes = [
            &mut *self.storage_mut(),
            &mut *m.storage_mut(),
            &mut *v.storage_mut(),
        ];
        run_into::<k::AdamStep>(&p, &[&grad.storage()], &mut writes)
    }
}
