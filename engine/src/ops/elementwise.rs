//! Elementwise arithmetic, reshapes and sums.

use crate::autograd::Op;
use crate::backend;
use crate::error::{numel, Error, Result};
use crate::tensor::Tensor;
use kernels::params::AxisParams;

impl Tensor {
    /// `self + rhs`, same shapes.
    pub fn add(&self, rhs: &Tensor) -> Result<Tensor> {
        self.check_same_device("add", rhs)?;
        if self.shape() != rhs.shape() {
            return Err(Error::ShapeMismatch {
                op: "add",
                lhs: self.shape().to_vec(),
                rhs: rhs.shape().to_vec(),
            });
        }
        let out = backend::add(&self.storage(), &rhs.storage())?;
        let record = Op::Add {
            a: self.clone(),
            b: rhs.clone(),
        };
        Ok(Tensor::from_op(
            out,
            self.shape().to_vec(),
            self.device(),
            record,
        ))
    }

    /// `alpha · self`.
    pub fn scale(&self, alpha: f32) -> Result<Tensor> {
        let out = backend::scale(&self.storage(), alpha)?;
        let record = Op::Scale {
            x: self.clone(),
            alpha,
        };
        Ok(Tensor::from_op(
            out,
            self.shape().to_vec(),
            self.device(),
            record,
        ))
    }

    /// The same values under `shape` (same element count); shares the storage.
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        if numel(shape) != self.numel() {
            return Err(Error::ShapeMismatch {
                op: "reshape",
                lhs: self.shape().to_vec(),
                rhs: shape.to_vec(),
            });
        }
        Ok(self.view(shape.to_vec(), Op::Reshape { x: self.clone() }))
    }

    /// `(n, ...)` -> `(n, rest)`.
    pub fn flatten(&self) -> Result<Tensor> {
        match self.shape() {
            [] => Err(Error::BadShape {
                op: "flatten",
                shape: vec![],
                expected: "rank >= 1",
            }),
            [n, rest @ ..] => self.reshape(&[*n, numel(rest)]),
        }
    }

    /// Sums axis `axis` away: `(a, b, c).sum_axis(1) -> (a, c)`.
    pub fn sum_axis(&self, axis: usize) -> Result<Tensor> {
        let shape = self.shape();
        if axis >= shape.len() {
            return Err(Error::BadShape {
                op: "sum_axis",
                shape: shape.to_vec(),
                expected: "axis < rank",
            });
        }
        let p = AxisParams::new(
            numel(&shape[..axis]),
            shape[axis],
            numel(&shape[axis + 1..]),
        );
        let out = backend::sum_axis(&self.storage(), &p)?;
        let mut out_shape = shape.to_vec();
        out_shape.remove(axis);
        let record = Op::SumAxis {
            x: self.clone(),
            params: p,
        };
        Ok(Tensor::from_op(out, out_shape, self.device(), record))
    }

    /// The sum of all values, as a scalar (shape `[]`).
    pub fn sum(&self) -> Result<Tensor> {
        self.reshape(&[self.numel()])?.sum_axis(0)
    }

    /// The mean of all values, as a scalar.
    pub fn mean(&self) -> Result<Tensor> {
        if self.numel() == 0 {
            return Err(Error::BadShape {
                op: "mean",
                shape: self.shape().to_vec(),
                expected: "at least one value",
            });
        }
        self.sum()?.scale(1.0 / self.numel() as f32)
    }
}
