//! Elementwise arithmetic, the per-channel bias and sums over an axis on the GPU (see
//! `wgsl/{add,mul,scale,axpy,bias_*,sum_axis*}.wgsl`).

use super::launch::{groups, launch, r, w};
use super::{GpuBuffer, GpuContext, GpuError, KernelId};
use crate::params::{AxisParams, ElementwiseParams};

/// `out = a + b`.
pub fn add(
    ctx: &GpuContext,
    a: &GpuBuffer,
    b: &GpuBuffer,
    out: &GpuBuffer,
    p: &ElementwiseParams,
) -> Result<(), GpuError> {
    let n = p.len as usize;
    launch(
        ctx,
        KernelId::Add,
        p,
        &[r("a", a, n), r("b", b, n), w("out", out, n)],
        groups(n),
    )
}

/// `out = a * b`, elementwise.
pub fn mul(
    ctx: &GpuContext,
    a: &GpuBuffer,
    b: &GpuBuffer,
    out: &GpuBuffer,
    p: &ElementwiseParams,
) -> Result<(), GpuError> {
    let n = p.len as usize;
    launch(
        ctx,
        KernelId::Mul,
        p,
        &[r("a", a, n), r("b", b, n), w("out", out, n)],
        groups(n),
    )
}

/// `out = alpha * x`.
pub fn scale(
    ctx: &GpuContext,
    x: &GpuBuffer,
    out: &GpuBuffer,
    p: &ElementwiseParams,
) -> Result<(), GpuError> {
    let n = p.len as usize;
    launch(
        ctx,
        KernelId::Scale,
        p,
        &[r("x", x, n), w("out", out, n)],
        groups(n),
    )
}

/// `y += alpha * x`.
pub fn axpy(
    ctx: &GpuContext,
    x: &GpuBuffer,
    y: &GpuBuffer,
    p: &ElementwiseParams,
) -> Result<(), GpuError> {
    let n = p.len as usize;
    launch(
        ctx,
        KernelId::Axpy,
        p,
        &[r("x", x, n), w("y", y, n)],
        groups(n),
    )
}

/// `out[o, c, i] = x[o, c, i] + bias[c]`.
pub fn bias_forward(
    ctx: &GpuContext,
    x: &GpuBuffer,
    bias: &GpuBuffer,
    out: &GpuBuffer,
    p: &AxisParams,
) -> Result<(), GpuError> {
    let (n, c) = (p.len(), p.channels as usize);
    let args = [r("x", x, n), r("bias", bias, c), w("out", out, n)];
    launch(ctx, KernelId::BiasForward, p, &args, groups(n))
}

/// `grad_bias[c] = Σ_{o, i} grad_out[o, c, i]`, overwriting `grad_bias`; one workgroup
/// per channel.
pub fn bias_backward(
    ctx: &GpuContext,
    grad_out: &GpuBuffer,
    grad_bias: &GpuBuffer,
    p: &AxisParams,
) -> Result<(), GpuError> {
    let c = p.channels as usize;
    let args = [
        r("grad_out", grad_out, p.len()),
        w("grad_bias", grad_bias, c),
    ];
    launch(ctx, KernelId::BiasBackward, p, &args, c as u64)
}

/// `out[o, i] = Σ_c x[o, c, i]`, overwriting `out`.
pub fn sum_axis(
    ctx: &GpuContext,
    x: &GpuBuffer,
    out: &GpuBuffer,
    p: &AxisParams,
) -> Result<(), GpuError> {
    let n_out = (p.outer * p.inner) as usize;
    if p.channels == 0 {
        // An empty sum: zeros, which the shader's loop would also give, but cheaper.
        return ctx.clear(out, n_out);
    }
    launch(
        ctx,
        KernelId::SumAxis,
        p,
        &[r("x", x, p.len()), w("out", out, n_out)],
        groups(n_out),
    )
}

/// `grad_x[o, c, i] = grad_out[o, i]`, overwriting `grad_x`.
pub fn sum_axis_backward(
    ctx: &GpuContext,
    grad_out: &GpuBuffer,
    grad_x: &GpuBuffer,
    p: &AxisParams,
) -> Result<(), GpuError> {
    let n_out = (p.outer * p.inner) as usize;
    let args = [r("grad_out", grad_out, n_out), w("grad_x", grad_x, p.len())];
    launch(ctx, KernelId::SumAxisBackward, p, &args, groups(p.len()))
}
