//! The hand-written launchers: kernels whose work a single grid does not cover well.
//!
//! - `matmul` and the conv weight gradients cut a long reduction into pieces, so that a
//!   small output still fills the GPU; the pieces' partial results go to a scratch buffer
//!   and `sum_axis` adds them in piece order (deterministic);
//! - `sum_axis` over zero channels clears its output instead of launching.
//!
//! What each records is its `Kernel::plan` (`crate::plan`), which `record` runs.
//! Every other kernel goes through the launcher the registry generates.

use super::launch::{check_args, launch_bytes, r, w, Arg};
use super::{GpuBuffer, GpuContext, GpuError};
use crate::params::{AxisParams, Conv2dParams, MatmulParams};
use crate::plan::{Buffer, Command, Plan};
use crate::registry::{
    Access, Conv2dBackwardWeight, Conv2dPoolBackwardWeight, Kernel, Matmul, SumAxis,
};

/// `c (m, n) = op(a) · op(b)`, or `c +=` with `accumulate`; `a` is `(m, k)` or, with
/// `trans_a`, `(k, m)`; `b` is `(k, n)` or, with `trans_b`, `(n, k)`.
///
/// A long `k` with few output tiles is split: the pieces' products go to a scratch
/// buffer (after a copy of `c` when accumulating) and `sum_axis` adds them in order.
pub fn matmul(
    ctx: &GpuContext,
    a: &GpuBuffer,
    b: &GpuBuffer,
    c: &GpuBuffer,
    p: &MatmulParams,
) -> Result<(), GpuError> {
    record::<Matmul>(ctx, &[a, b, c], p)
}

/// `grad_weight (c_out, c_in, kh, kw)`, overwritten, summed over the batch.
///
/// The reduction over `n · h_out · w_out` is cut into pieces, so that a big batch fills
/// the GPU even though the output is small; with more than one piece the partial
/// gradients go to a scratch buffer and `sum_axis` adds them in piece order.
pub fn conv2d_backward_weight(
    ctx: &GpuContext,
    x: &GpuBuffer,
    grad_out: &GpuBuffer,
    grad_weight: &GpuBuffer,
    p: &Conv2dParams,
) -> Result<(), GpuError> {
    record::<Conv2dBackwardWeight>(ctx, &[x, grad_out, grad_weight], p)
}

/// `grad_weight` and `grad_bias`, overwritten: the fused conv block's weight and bias
/// gradients from its 2×2 pool's `grad_out` and `argmax`, the weight's in pieces as
/// [`conv2d_backward_weight`]'s.
pub fn conv2d_pool_backward_weight(
    ctx: &GpuContext,
    x: &GpuBuffer,
    grad_out: &GpuBuffer,
    argmax: &GpuBuffer,
    grad_weight: &GpuBuffer,
    grad_bias: &GpuBuffer,
    p: &Conv2dParams,
) -> Result<(), GpuError> {
    let bufs = [x, grad_out, argmax, grad_weight, grad_bias];
    record::<Conv2dPoolBackwardWeight>(ctx, &bufs, p)
}

/// `out[o, i] = Σ_c x[o, c, i]`, overwriting `out`.
pub fn sum_axis(
    ctx: &GpuContext,
    x: &GpuBuffer,
    out: &GpuBuffer,
    p: &AxisParams,
) -> Result<(), GpuError> {
    record::<SumAxis>(ctx, &[x, out], p)
}

/// Checks `bufs` (`K`'s arguments, in order) against `p`, then records `K::plan(p)`:
/// nothing is recorded when an argument is short, foreign or aliased.
fn record<K: Kernel>(ctx: &GpuContext, bufs: &[&GpuBuffer], p: &K::Params) -> Result<(), GpuError> {
    let op = K::ID.name();
    let args: Vec<Arg> = K::ARGS
        .iter()
        .zip(bufs)
        .zip(K::lens(p))
        .map(|((arg, buf), len)| match arg.access {
            Access::Read => r(arg.name, buf, len),
            _ => w(arg.name, buf, len),
        })
        .collect();
    check_args(ctx, op, &args)?;
    let Plan { scratch, commands } = K::plan(p)?;
    let scratch = scratch
        .iter()
        .map(|&words| bufs[0].context().scratch(words))
        .collect::<Result<Vec<_>, _>>()?;
    let buffer = |b: Buffer| match b {
        Buffer::Arg(i) => bufs[i],
        Buffer::Scratch(i) => &scratch[i],
    };
    for command in commands {
        match command {
            Command::Dispatch {
                kernel,
                params,
                bindings,
                workgroups,
            } => {
                let args: Vec<Arg> = kernel
                    .args()
                    .iter()
                    .zip(&bindings)
                    .map(|(arg, b)| match arg.access {
                        Access::Read => r(arg.name, buffer(b.buffer), b.words),
                        _ => w(arg.name, buffer(b.buffer), b.words),
                    })
                    .collect();
                launch_bytes(ctx, kernel, &params, &args, workgroups)?;
            }
            Command::Clear { buffer: b, words } => ctx.clear(buffer(b), words)?,
            Command::Copy { src, dst, words } => ctx.copy_words(buffer(src), buffer(dst), words),
        }
    }
    Ok(())
}
