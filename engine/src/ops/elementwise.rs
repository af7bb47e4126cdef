//! Elementwise arithmetic, reshapes, sums, and the copies that record no gradient:
//! concatenation and gathered rows.

use crate::autograd::{is_grad_enabled, Op};
use crate::backend::run;
use crate::error::{checked_numel, numel, Error, Result};
use crate::storage::Storage;
use crate::tensor::{Labels, Tensor};
use kernels::params::{AxisParams, ElementwiseParams, GatherParams};
use kernels::registry as k;

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
        let p = ElementwiseParams::new(self.numel())?;
        let [out] = run(k::Add, &p, &[&self.storage(), &rhs.storage()])?;
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
        let p = ElementwiseParams::with_alpha(self.numel(), alpha)?;
        let [out] = run(k::Scale, &p, &[&self.storage()])?;
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
        if checked_numel(shape)? != self.numel() {
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
        )?;
        let [out] = run(k::SumAxis, &p, &[&self.storage()])?;
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

    /// The values of `parts`, each flattened, one after the other: a 1-D constant on
    /// their device. The training loop reads a run of steps' losses back in one read.
    ///
    /// No gradient flows through it: a part that needs one is an error (detach it).
    pub fn concat(parts: &[Tensor]) -> Result<Tensor> {
        let Some(first) = parts.first() else {
            return Err(Error::BadArgument {
                op: "concat",
                message: "no tensors to join".into(),
            });
        };
        for part in parts {
            first.check_same_device("concat", part)?;
            if part.requires_grad() && is_grad_enabled() {
                return Err(Error::BadArgument {
                    op: "concat",
                    message: "records no gradient; detach the parts that need one".into(),
                });
            }
        }
        let guards: Vec<_> = parts.iter().map(|t| t.storage()).collect();
        let storages: Vec<&Storage> = guards.iter().map(|g| &**g).collect();
        let out = Storage::concat(&storages, first.device())?;
        let len = out.len();
        Ok(Tensor::from_storage(out, vec![len], first.device()))
    }

    /// `out[r] = self[index[r]]`: the rows of `self (rows, cols)` that `index` names, as a
    /// constant on the same device (a batch's teacher logits from the training set's).
    ///
    /// No gradient flows through it: a `self` that needs one is an error (detach it).
    pub fn gather_rows(&self, index: &Labels) -> Result<Tensor> {
        let &[rows, cols] = self.shape() else {
            return Err(Error::BadShape {
                op: "gather_rows",
                shape: self.shape().to_vec(),
                expected: "(rows, cols)",
            });
        };
        if !index.device().same(self.device()) {
            return Err(Error::DeviceMismatch {
                op: "gather_rows",
                lhs: self.device().to_string(),
                rhs: index.device().to_string(),
            });
        }
        if !index.is_empty() && index.max() as usize >= rows {
            return Err(Error::BadArgument {
                op: "gather_rows",
                message: format!("index {} is past the table's {rows} rows", index.max()),
            });
        }
        if self.requires_grad() && is_grad_enabled() {
            return Err(Error::BadArgument {
                op: "gather_rows",
                message: "records no gradient; detach the table first".into(),
            });
        }
        let p = GatherParams::new(index.len(), cols, rows)?;
        let [out] = run(k::GatherRows, &p, &[&self.storage(), index.storage()])?;
        Ok(Tensor::from_storage(
            out,
            vec![index.len(), cols],
            self.device(),
        ))
    }
}

// out = alpha · x  =>  dx = alpha · g
pub(crate) fn scale_backward(alpha: f32, g: &Storage) -> Result<Storage> {
    let [dx] = run(
        k::Scale,
        &ElementwiseParams::with_alpha(g.len(), alpha)?,
        &[g],
    )?;
    Ok(dx)
}

// out[o, i] = Σ_c x[o, c, i]  =>  dx[o, c, i] = g[o, i]
pub(crate) fn sum_axis_backward(p: &AxisParams, g: &Storage) -> Result<Storage> {
    let [dx] = run(k::SumAxisBackward, p, &[g])?;
    Ok(dx)
}
