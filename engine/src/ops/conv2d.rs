//! 2-D convolution, the per-channel bias that follows it (and a linear layer), and the
//! fused conv → bias → ReLU → 2×2 max-pool block.

use crate::autograd::{is_grad_enabled, Op};
use crate::backend::run;
use crate::error::{Error, Result};
use crate::storage::Storage;
use crate::tensor::Tensor;
use kernels::params::{AxisParams, Conv2dParams, ElementwiseParams};
use kernels::registry as k;
use kernels::KernelError;

impl Tensor {
    /// `x: (n, c_in, h, w)`, `weight: (c_out, c_in, kh, kw)` -> `(n, c_out, h_out, w_out)`;
    /// zero padding `pad` on every side, no bias (see [`Tensor::bias_add`]).
    pub fn conv2d(&self, weight: &Tensor, stride: usize, pad: usize) -> Result<Tensor> {
        self.check_same_device("conv2d", weight)?;
        let p = conv2d_params("conv2d", self, weight, stride, pad)?;
        let [out] = run(k::Conv2dForward, &p, &[&self.storage(), &weight.storage()])?;
        let shape = vec![
            p.n as usize,
            p.c_out as usize,
            p.h_out as usize,
            p.w_out as usize,
        ];
        let record = Op::Conv2d {
            x: self.clone(),
            weight: weight.clone(),
            params: p,
        };
        Ok(Tensor::from_op(out, shape, self.device(), record))
    }

    /// `max_pool2d(relu(conv2d(x, weight) + bias), 2)` with a 2×2 window at stride 2,
    /// as one kernel that never writes the conv's output: what a conv → ReLU → pool
    /// block computes, bit for bit, in one pass over memory instead of four.
    /// `x: (n, c_in, h, w)`, `weight: (c_out, c_in, kh, kw)`, `bias: (c_out)` ->
    /// `(n, c_out, h_out / 2, w_out / 2)`; the conv's output must be at least 2×2.
    pub fn conv2d_relu_pool(
        &self,
        weight: &Tensor,
        bias: &Tensor,
        stride: usize,
        pad: usize,
    ) -> Result<Tensor> {
        const OP: &str = "conv2d_relu_pool";
        self.check_same_device(OP, weight)?;
        self.check_same_device(OP, bias)?;
        let p = conv2d_params(OP, self, weight, stride, pad)?;
        if bias.shape() != [p.c_out as usize] {
            return Err(Error::ShapeMismatch {
                op: OP,
                lhs: weight.shape().to_vec(),
                rhs: bias.shape().to_vec(),
            });
        }
        if p.pool().is_err() {
            return Err(Error::BadShape {
                op: OP,
                shape: self.shape().to_vec(),
                expected: "images whose conv output is at least 2×2, for the 2×2 pool",
            });
        }
        let reads = [&*self.storage(), &*weight.storage(), &*bias.storage()];
        let [out, argmax] = run(k::Conv2dReluPoolForward, &p, &reads)?;
        // The backward masks with the output; copy it only when there will be one.
        let recorded = is_grad_enabled() && [self, weight, bias].iter().any(|t| t.requires_grad());
        let record = Op::Conv2dReluPool {
            x: self.clone(),
            weight: weight.clone(),
            bias: bias.clone(),
            out: if recorded {
                out.duplicate()?
            } else {
                out.output_beside(0, false)?
            },
            argmax,
            params: p,
        };
        let shape = vec![
            p.n as usize,
            p.c_out as usize,
            p.h_out as usize / 2,
            p.w_out as usize / 2,
        ];
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
        let p = AxisParams::new(shape[0], shape[1], shape[2..].iter().product())?;
        let [out] = run(k::BiasForward, &p, &[&self.storage(), &bias.storage()])?;
        let record = Op::BiasAdd {
            x: self.clone(),
            bias: bias.clone(),
            params: p,
        };
        Ok(Tensor::from_op(out, shape.to_vec(), self.device(), record))
    }
}

/// The shapes of `conv2d(x, weight)`, or the error naming `op` and both shapes.
fn conv2d_params(
    op: &'static str,
    x: &Tensor,
    weight: &Tensor,
    stride: usize,
    pad: usize,
) -> Result<Conv2dParams> {
    let mismatch = || Error::ShapeMismatch {
        op,
        lhs: x.shape().to_vec(),
        rhs: weight.shape().to_vec(),
    };
    let (&[n, c_in, h, w], &[c_out, wc_in, kh, kw]) = (x.shape(), weight.shape()) else {
        return Err(mismatch());
    };
    if c_in != wc_in {
        return Err(mismatch());
    }
    // A kernel that does not fit is a shape mismatch; sizes past 32 bits stay as they are.
    match Conv2dParams::new(n, c_in, h, w, c_out, kh, kw, stride, pad) {
        Err(KernelError::BadParams { .. }) => Err(mismatch()),
        p => Ok(p?),
    }
}

// out = pool(relu(z)) with z = conv2d(x, W) + b. At each window's winner relu(z) = out,
// so relu'(z) = [out > 0] there, and the other three get no gradient:
//   dz = scatter onto the winners of (g · [out > 0]),  db[c] = Σ dz[:, c],
//   dx, dW = conv2d_backward(dz)
// The mask is relu_backward on the pooled values (a quarter of z's size); the
// conv2d_pool_backward kernels then take dz's non-zero values, the winners, straight
// from the masked gradient and the argmax, and never store dz: what max_pool2d_backward,
// bias_backward and conv2d_backward give from a stored dz up to rounding, for a quarter
// of the multiply-adds (the bias comes with the weight's gradient).
pub(crate) fn conv2d_relu_pool_backward(
    [x, weight]: [&Tensor; 2],
    [out, argmax]: [&Storage; 2],
    p: &Conv2dParams,
    g: &Storage,
    [needs_x, needs_weight]: [bool; 2],
) -> Result<Vec<Option<Storage>>> {
    let masked = ElementwiseParams::new(p.pooled_len())?;
    let [g_masked] = run(k::ReluBackward, &masked, &[out, g])?;
    let dx = match needs_x {
        true => {
            let reads = [&g_masked, argmax, &weight.storage()];
            let [dx] = run(k::Conv2dPoolBackwardInput, p, &reads)?;
            Some(dx)
        }
        false => None,
    };
    // NOTE: the bias gradient comes with the weight's, wanted or not.
    let reads = [&x.storage(), &g_masked, argmax];
    let [dw, dbias] = run(k::Conv2dPoolBackwardWeight, p, &reads)?;
    Ok(vec![dx, needs_weight.then_some(dw), Some(dbias)])
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
