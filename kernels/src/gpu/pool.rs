//! Max pooling forward (recording the argmax) and backward on the GPU (see
//! [`Pool2dParams`] and `wgsl/max_pool2d_*.wgsl`).

use super::launch::{groups, launch, r, w};
use super::{GpuBuffer, GpuContext, GpuError, KernelId};
use crate::params::Pool2dParams;

/// `out, argmax (n, c, h_out, w_out)` from `x (n, c, h, w)`; `argmax` is a `u32` buffer
/// of indices within each `(h, w)` plane.
pub fn max_pool2d_forward(
    ctx: &GpuContext,
    x: &GpuBuffer,
    out: &GpuBuffer,
    argmax: &GpuBuffer,
    p: &Pool2dParams,
) -> Result<(), GpuError> {
    let (len_in, len_out) = (p.input_len(), p.output_len());
    let args = [
        r("x", x, len_in),
        w("out", out, len_out),
        w("argmax", argmax, len_out),
    ];
    launch(ctx, KernelId::MaxPool2dForward, p, &args, groups(len_out))
}

/// `grad_x (n, c, h, w)`, overwritten: each `grad_out` value added to its window's winner.
pub fn max_pool2d_backward(
    ctx: &GpuContext,
    grad_out: &GpuBuffer,
    argmax: &GpuBuffer,
    grad_x: &GpuBuffer,
    p: &Pool2dParams,
) -> Result<(), GpuError> {
    let (len_in, len_out) = (p.input_len(), p.output_len());
    let args = [
        r("grad_out", grad_out, len_out),
        r("argmax", argmax, len_out),
        w("grad_x", grad_x, len_in),
    ];
    launch(ctx, KernelId::MaxPool2dBackward, p, &args, groups(len_in))
}
