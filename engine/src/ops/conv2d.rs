//! 2-D convolution and the per-channel bias that follows it (and a linear layer).

use crate::autograd::Op;
use crate::backend::run;
use crate::error::{Error, Result};
use crate::storage::Storage;
use crate::tensor::Tensor;
use kernels::params::{AxisParams, Conv2dParams};
use kernels::registry as k;

impl Tensor {
    /// `x: (n, c_in, h, w)`, `weight: (c_out, c_in, kh, kw)` -> `(n, c_out, h_out, w_out)`;
    /// zero padding `pad` on every side, no bias (see [`Tensor::bias_add`]).
    pub fn conv2d(&self, weight: &Tensor, stride: usize, pad: usize) -> Result<Tensor> {
        self.check_same_device("conv2d", weight)?;
        let mismatch = || Error::ShapeMismatch {
            op: "conv2d",
            lhs: self.shape().to_vec(),
            rhs: weight.shape().to_vec(),
        };
        let (&[n, c_in, h, w], &[c_out, wc_in, kh, kw]) = (self.shape(), weight.shape()) else {
            return Err(mismatch());
        };
        if c_in != wc_in {
            return Err(mismatch());
        }
        let p =
            Conv2dParams::new(n, c_in, h, w, c_out, kh, kw, stride, pad).ok_or_else(mismatch)?;
        let [out] = run(k::Conv2dForward, &p, &[&self.storage(), &weight.storage()])?;
        let shape = vec![n, c_out, p.h_out as usize, p.w_out as usize];
        let record = Op::Conv2d {
            x: self.clone(),
            weight: weight.clone(),
            params: p,
        };
        Ok(Tensor::from_op(out, shape, self.device(), record))
    }

    /// Adds `bias[c]` along axis 1 of `(n, c, ...)`: a conv output or a linear output.
    pub fn bias_add(&self, bias: &Tensor) -> Result<Tensor> {
        self.check_same_device("bias_add", bias)?;
        let shape = self.shape();
        if shape.len() < 2 || bias.shape() != [shape[1]] {
            return Err(Error::ShapeMismatch {
                op: "bias_add",
                lhs: shape.to_vec(),
                rhs: bias.shape().to_vec(),
            });
        }
        let p = AxisParams::new(shape[0], shape[1], shape[2..].iter().product());
        let [out] = run(k::BiasForward, &p, &[&self.storage(), &bias.storage()])?;
        let record = Op::BiasAdd {
            x: self.clone(),
            bias: bias.clone(),
            params: p,
        };
        Ok(Tensor::from_op(out, shape.to_vec(), self.device(), record))
    }
}

// dx = conv2d_backward_input(g, W)  (a full correlation with the flipped kernel)
// dW = conv2d_backward_weight(x, g) (the correlation of x with g, summed over the batch)
pub(crate) fn conv2d_backward(
    x: &Tensor,
    weight: &Tensor,
    p: &Conv2dParams,
    g: &Storage,
    needs: [bool; 2],
) -> Result<Vec<Option<Storage>>> {
    let dx = match needs[0] {
        true => {
            let [dx] = run(k::Conv2dBackwardInput, p, &[g, &weight.storage()])?;
            Some(dx)
        }
        false => None,
    };
    let dw = match needs[1] {
        true => {
            let [dw] = run(k::Conv2dBackwardWeight, p, &[&x.storage(), g])?;
            Some(dw)
        }
        false => None,
    };
    Ok(vec![dx, dw])
}

// dx = g;  dbias[c] = Σ_{o,i} g[o, c, i]
pub(crate) fn bias_add_backward(
    p: &AxisParams,
    g: &Storage,
    needs_x: bool,
) -> Result<Vec<Option<Storage>>> {
    let dx = if needs_x { Some(g.duplicate()?) } else { None };
    let [dbias] = run(k::BiasBackward, p, &[g])?;
    Ok(vec![dx, Some(dbias)])
}
