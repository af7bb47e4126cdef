//! Max pooling; the forward saves the argmax so that the backward is a scatter.

use crate::autograd::Op;
use crate::backend::run;
use crate::error::{Error, Result};
use crate::storage::Storage;
use crate::tensor::Tensor;
use kernels::params::Pool2dParams;
use kernels::registry as k;
use kernels::KernelError;

impl Tensor {
    /// `(n, c, h, w)` -> `(n, c, h_out, w_out)`, windows of `kernel × kernel` moved by
    /// `stride`, floor mode (as PyTorch's default).
    pub fn max_pool2d(&self, kernel: usize, stride: usize) -> Result<Tensor> {
        let &[n, c, h, w] = self.shape() else {
            return Err(Error::BadShape {
                op: "max_pool2d",
                shape: self.shape().to_vec(),
                expected: "(n, c, h, w)",
            });
        };
        let p = match Pool2dParams::new(n, c, h, w, kernel, stride) {
            Err(KernelError::BadParams { .. }) => Err(Error::BadShape {
                op: "max_pool2d",
                shape: self.shape().to_vec(),
                expected: "h, w >= kernel >= 1 and stride >= 1",
            }),
            p => Ok(p?),
        }?;
        let [out, argmax] = run(k::MaxPool2dForward, &p, &[&self.storage()])?;
        let shape = vec![n, c, p.h_out as usize, p.w_out as usize];
        let record = Op::MaxPool2d {
            input: self.clone(),
            argmax,
            params: p,
        };
        Ok(Tensor::from_op(out, shape, self.device(), record))
    }
}

// dx[argmax(window)] += g[window]; zero elsewhere.
pub(crate) fn max_pool2d_backward(
    argmax: &Storage,
    p: &Pool2dParams,
    g: &Storage,
) -> Result<Storage> {
    let [grad_x] = run(k::MaxPool2dBackward, p, &[g, argmax])?;
    Ok(grad_x)
}
