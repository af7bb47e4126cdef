//! Optimizer steps, in place on a parameter and its state, on the GPU (see
//! [`SgdParams`], [`AdamParams`] and `wgsl/{sgd,adam}_step.wgsl`).

use super::launch::{groups, launch, r, w};
use super::{GpuBuffer, GpuContext, GpuError, KernelId};
use crate::params::{AdamParams, SgdParams};

/// PyTorch's SGD: `g = grad + wd·param; v = momentum·v + g; param -= lr·v`
/// (`param -= lr·g` and `velocity` untouched when `momentum == 0`).
pub fn sgd_step(
    ctx: &GpuContext,
    param: &GpuBuffer,
    grad: &GpuBuffer,
    velocity: &GpuBuffer,
    p: &SgdParams,
) -> Result<(), GpuError> {
    let n = p.len as usize;
    let args = [
        w("param", param, n),
        r("grad", grad, n),
        w("velocity", velocity, n),
    ];
    launch(ctx, KernelId::SgdStep, p, &args, groups(n))
}

/// PyTorch's Adam, or AdamW with `decoupled == 1`; `m` and `v` are the moment buffers.
pub fn adam_step(
    ctx: &GpuContext,
    param: &GpuBuffer,
    grad: &GpuBuffer,
    m: &GpuBuffer,
    v: &GpuBuffer,
    p: &AdamParams,
) -> Result<(), GpuError> {
    let n = p.len as usize;
    let args = [
        w("param", param, n),
        r("grad", grad, n),
        w("m", m, n),
        w("v", v, n),
    ];
    launch(ctx, KernelId::AdamStep, p, &args, groups(n))
}
