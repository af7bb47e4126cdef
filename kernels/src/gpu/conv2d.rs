//! 2-D convolution forward, backward-input and backward-weight on the GPU, each an
//! implicit GEMM tiled like `matmul` (see [`Conv2dParams`] and `wgsl/conv2d_*.wgsl`).

use super::elementwise::sum_axis;
use super::launch::{launch, r, w};
use super::matmul::tiles;
use super::{GpuBuffer, GpuContext, GpuError, KernelId};
use crate::params::{AxisParams, Conv2dParams};

/// The length of each piece of the weight gradient's reduction over `n · h_out · w_out`
/// (`K_CHUNK` in `conv2d_backward_weight.wgsl`).
const K_CHUNK: u64 = 1024;

/// `out (n, c_out, h_out, w_out) = conv2d(x (n, c_in, h, w), weight (c_out, c_in, kh, kw))`.
pub fn conv2d_forward(
    ctx: &GpuContext,
    x: &GpuBuffer,
    weight: &GpuBuffer,
    out: &GpuBuffer,
    p: &Conv2dParams,
) -> Result<(), GpuError> {
    let args = [
        r("x", x, p.input_len()),
        r("weight", weight, p.weight_len()),
        w("out", out, p.output_len()),
    ];
    let pixels = p.n * p.h_out * p.w_out;
    launch(
        ctx,
        KernelId::Conv2dForward,
        p,
        &args,
        tiles(p.c_out, pixels),
    )
}

/// `grad_x (n, c_in, h, w)`, overwritten, from `grad_out` and `weight`.
pub fn conv2d_backward_input(
    ctx: &GpuContext,
    grad_out: &GpuBuffer,
    weight: &GpuBuffer,
    grad_x: &GpuBuffer,
    p: &Conv2dParams,
) -> Result<(), GpuError> {
    let args = [
        r("grad_out", grad_out, p.output_len()),
        r("weight", weight, p.weight_len()),
        w("grad_x", grad_x, p.input_len()),
    ];
    launch(
        ctx,
        KernelId::Conv2dBackwardInput,
        p,
        &args,
        tiles(p.c_in, p.n * p.h * p.w),
    )
}

/// `grad_weight (c_out, c_in, kh, kw)`, overwritten, summed over the batch.
///
/// The reduction over `n · h_out · w_out` is cut into pieces of `K_CHUNK`, so that a big
/// batch fills the GPU even though the output is small; with more than one piece the
/// partial gradients go to a scratch buffer and `sum_axis` adds them in piece order.
pub fn conv2d_backward_weight(
    ctx: &GpuContext,
    x: &GpuBuffer,
    grad_out: &GpuBuffer,
    grad_weight: &GpuBuffer,
    p: &Conv2dParams,
) -> Result<(), GpuError> {
    let op = KernelId::Conv2dBackwardWeight;
    let reduce = (p.n * p.h_out * p.w_out) as u64;
    let splits = reduce.div_ceil(K_CHUNK).max(1) as usize;
    let (rows, cols) = (p.c_out, p.c_in * p.kh * p.kw);
    let groups = tiles(rows, cols) * splits as u64;
    let inputs = [
        r("x", x, p.input_len()),
        r("grad_out", grad_out, p.output_len()),
    ];
    if splits == 1 {
        let [x, g] = inputs;
        return launch(
            ctx,
            op,
            p,
            &[x, g, w("grad_weight", grad_weight, p.weight_len())],
            groups,
        );
    }
    // Checked first, so that a short grad_weight fails before any work is recorded.
    let sum = AxisParams::new(1, splits, p.weight_len());
    super::launch::check_args(
        ctx,
        op.name(),
        &[w("grad_weight", grad_weight, p.weight_len())],
    )?;
    let partial = grad_weight.context().scratch(splits * p.weight_len());
    let [x, g] = inputs;
    launch(
        ctx,
        op,
        p,
        &[x, g, w("partial", &partial, splits * p.weight_len())],
        groups,
    )?;
    sum_axis(ctx, &partial, grad_weight, &sum)
}
