//! ReLU and dropout, forward and backward, on the GPU (see `wgsl/relu_*.wgsl`,
//! `wgsl/dropout_*.wgsl`). Dropout draws the same mask as `kernels::cpu` for a seed.

use super::launch::{groups, launch, r, w};
use super::{GpuBuffer, GpuContext, GpuError, KernelId};
use crate::params::{DropoutParams, ElementwiseParams};

/// `out = max(x, 0)`.
pub fn relu_forward(
    ctx: &GpuContext,
    x: &GpuBuffer,
    out: &GpuBuffer,
    p: &ElementwiseParams,
) -> Result<(), GpuError> {
    let n = p.len as usize;
    launch(
        ctx,
        KernelId::ReluForward,
        p,
        &[r("x", x, n), w("out", out, n)],
        groups(n),
    )
}

/// `grad_x = grad_out` where `x > 0`, else 0 (relu'(0) = 0, as PyTorch).
pub fn relu_backward(
    ctx: &GpuContext,
    x: &GpuBuffer,
    grad_out: &GpuBuffer,
    grad_x: &GpuBuffer,
    p: &ElementwiseParams,
) -> Result<(), GpuError> {
    let n = p.len as usize;
    let args = [
        r("x", x, n),
        r("grad_out", grad_out, n),
        w("grad_x", grad_x, n),
    ];
    launch(ctx, KernelId::ReluBackward, p, &args, groups(n))
}

/// `mask = scale` where `dropout_hash(seed, i) >= threshold`, else 0; `out = x * mask`.
pub fn dropout_forward(
    ctx: &GpuContext,
    x: &GpuBuffer,
    out: &GpuBuffer,
    mask: &GpuBuffer,
    p: &DropoutParams,
) -> Result<(), GpuError> {
    let n = p.len as usize;
    let args = [r("x", x, n), w("out", out, n), w("mask", mask, n)];
    launch(ctx, KernelId::DropoutForward, p, &args, groups(n))
}

/// `grad_x = grad_out * mask`.
pub fn dropout_backward(
    ctx: &GpuContext,
    grad_out: &GpuBuffer,
    mask: &GpuBuffer,
    grad_x: &GpuBuffer,
    p: &DropoutParams,
) -> Result<(), GpuError> {
    let n = p.len as usize;
    let args = [
        r("grad_out", grad_out, n),
        r("mask", mask, n),
        w("grad_x", grad_x, n),
    ];
    launch(ctx, KernelId::DropoutBackward, p, &args, groups(n))
}
