//! The hand-written launchers: kernels whose work a single grid does not cover well.
//!
//! - `matmul` and `conv2d_backward_weight` cut a long reduction into pieces, so that a
//!   small output still fills the GPU; the pieces' partial results go to a scratch buffer
//!   and `sum_axis` adds them in piece order (deterministic);
//! - `sum_axis` over zero channels clears its output instead of launching.
//!
//! Every other kernel goes through the launcher the registry generates.

use super::launch::{check_args, elements, launch, r, tiles, w};
use super::{GpuBuffer, GpuContext, GpuError};
use crate::params::{AxisParams, Conv2dParams, MatmulParams};
use crate::registry::KernelId;

/// NOTE: `MATMUL_K_CHUNK`, `FEW_TILES` and [`k_splits`] repeat `matmul.wgsl`.
const MATMUL_K_CHUNK: u64 = 256;
const FEW_TILES: u64 = 64;

/// The length of each piece of the weight gradient's reduction over `n · h_out · w_out`
/// (`K_CHUNK` in `conv2d_backward_weight.wgsl`).
const CONV_K_CHUNK: u64 = 1024;

/// Pieces of the reduction over `k`: more than one only when the output has few tiles
/// (a `(64, 128)` linear layer's output is 2 tiles, however long its `k = 9216` is).
fn k_splits(p: &MatmulParams) -> u64 {
    let k = p.k as u64;
    if tiles(p.m, p.n) >= FEW_TILES || k <= MATMUL_K_CHUNK {
        1
    } else {
        k.div_ceil(MATMUL_K_CHUNK)
    }
}

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
    let (mn, op) = (p.c_len(), KernelId::Matmul);
    let args = [r("a", a, p.a_len()), r("b", b, p.b_len()), w("c", c, mn)];
    let splits = k_splits(p);
    if p.k == 0 && p.accumulate == 0 {
        // An empty sum: the shader would never run its loop, but c must still be zeroed.
        check_args(ctx, op.name(), &args)?;
        return ctx.clear(c, mn);
    }
    if splits == 1 {
        return launch(ctx, op, p, &args, tiles(p.m, p.n));
    }
    check_args(ctx, op.name(), &args)?;
    let slices = splits as usize + p.accumulate as usize;
    let partial = c.context().scratch(slices * mn)?;
    if p.accumulate == 1 {
        ctx.copy_words(c, &partial, mn);
    }
    let [a, b, _] = args;
    let args = [a, b, w("c", &partial, slices * mn)];
    launch(ctx, op, p, &args, tiles(p.m, p.n) * splits)?;
    sum_axis(ctx, &partial, c, &AxisParams::new(1, slices, mn)?)
}

/// `grad_weight (c_out, c_in, kh, kw)`, overwritten, summed over the batch.
///
/// The reduction over `n · h_out · w_out` is cut into pieces of `CONV_K_CHUNK`, so that
/// a big batch fills the GPU even though the output is small; with more than one piece
/// the partial gradients go to a scratch buffer and `sum_axis` adds them in piece order.
pub fn conv2d_backward_weight(
    ctx: &GpuContext,
    x: &GpuBuffer,
    grad_out: &GpuBuffer,
    grad_weight: &GpuBuffer,
    p: &Conv2dParams,
) -> Result<(), GpuError> {
    let op = KernelId::Conv2dBackwardWeight;
    let reduce = (p.n * p.h_out * p.w_out) as u64;
    let splits = reduce.div_ceil(CONV_K_CHUNK).max(1) as usize;
    let groups = tiles(p.c_out, p.c_in * p.kh * p.kw) * splits as u64;
    let [x, g] = [
        r("x", x, p.input_len()),
        r("grad_out", grad_out, p.output_len()),
    ];
    let weights = p.weight_len();
    if splits == 1 {
        let args = [x, g, w("grad_weight", grad_weight, weights)];
        return launch(ctx, op, p, &args, groups);
    }
    // Checked first, so that a short grad_weight fails before any work is recorded.
    check_args(ctx, op.name(), &[w("grad_weight", grad_weight, weights)])?;
    let partial = grad_weight.context().scratch(splits * weights)?;
    launch(
        ctx,
        op,
        p,
        &[x, g, w("partial", &partial, splits * weights)],
        groups,
    )?;
    sum_axis(
        ctx,
        &partial,
        grad_weight,
        &AxisParams::new(1, splits, weights)?,
    )
}

/// `out[o, i] = Σ_c x[o, c, i]`, overwriting `out`.
pub fn sum_axis(
    ctx: &GpuContext,
    x: &GpuBuffer,
    out: &GpuBuffer,
    p: &AxisParams,
) -> Result<(), GpuError> {
    let n_out = p.outer as usize * p.inner as usize;
    if p.channels == 0 {
        // An empty sum: zeros, which the shader's loop would also give, but cheaper.
        return ctx.clear(out, n_out);
    }
    let args = [r("x", x, p.len()), w("out", out, n_out)];
    launch(ctx, KernelId::SumAxis, p, &args, elements(n_out))
}
