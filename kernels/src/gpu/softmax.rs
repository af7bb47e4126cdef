//! Row-wise log-softmax, cross-entropy, the fused softmax-KL and distillation losses,
//! and argmax on the GPU (see [`RowParams`] and `wgsl/*softmax*.wgsl` and friends).
//! One thread per row: rows are short (10 classes) and many.

use super::launch::{launch, r, w};
use super::{GpuBuffer, GpuContext, GpuError, KernelId};
use crate::params::RowParams;

/// Threads per workgroup of the row kernels (`@workgroup_size(64)`), one row each.
const ROWS_PER_GROUP: u64 = 64;

fn shape(p: &RowParams) -> (usize, usize, u64) {
    let (rows, cols) = (p.rows as usize, p.cols as usize);
    // No columns: nothing to compute (and no label can be in range).
    let groups = if cols == 0 {
        0
    } else {
        (rows as u64).div_ceil(ROWS_PER_GROUP)
    };
    (rows, rows * cols, groups)
}

/// `out = log softmax(x)` per row.
pub fn log_softmax_forward(
    ctx: &GpuContext,
    x: &GpuBuffer,
    out: &GpuBuffer,
    p: &RowParams,
) -> Result<(), GpuError> {
    let (_, len, groups) = shape(p);
    launch(
        ctx,
        KernelId::LogSoftmaxForward,
        p,
        &[r("x", x, len), w("out", out, len)],
        groups,
    )
}

/// `grad_x = grad_out - exp(out) · Σ grad_out` per row, `out` the saved log-softmax.
pub fn log_softmax_backward(
    ctx: &GpuContext,
    out: &GpuBuffer,
    grad_out: &GpuBuffer,
    grad_x: &GpuBuffer,
    p: &RowParams,
) -> Result<(), GpuError> {
    let (_, len, groups) = shape(p);
    let args = [
        r("out", out, len),
        r("grad_out", grad_out, len),
        w("grad_x", grad_x, len),
    ];
    launch(ctx, KernelId::LogSoftmaxBackward, p, &args, groups)
}

/// Per row: `loss = -log softmax(logits)[label]`, `grad = softmax(logits) - onehot(label)`.
/// NOTE: a label `>= cols` gives a NaN loss (the CPU twin panics; the GPU cannot).
pub fn cross_entropy_forward(
    ctx: &GpuContext,
    logits: &GpuBuffer,
    labels: &GpuBuffer,
    loss: &GpuBuffer,
    grad: &GpuBuffer,
    p: &RowParams,
) -> Result<(), GpuError> {
    let (rows, len, groups) = shape(p);
    let args = [
        r("logits", logits, len),
        r("labels", labels, rows),
        w("loss", loss, rows),
        w("grad", grad, len),
    ];
    launch(ctx, KernelId::CrossEntropyForward, p, &args, groups)
}

/// Per row: `loss = T²·KL(softmax(t/T) ‖ softmax(s/T))`, `grad = T (softmax(s/T) - softmax(t/T))`.
pub fn softmax_kl_forward(
    ctx: &GpuContext,
    student: &GpuBuffer,
    teacher: &GpuBuffer,
    loss: &GpuBuffer,
    grad: &GpuBuffer,
    p: &RowParams,
) -> Result<(), GpuError> {
    let (rows, len, groups) = shape(p);
    let args = [
        r("student", student, len),
        r("teacher", teacher, len),
        w("loss", loss, rows),
        w("grad", grad, len),
    ];
    launch(ctx, KernelId::SoftmaxKlForward, p, &args, groups)
}

/// Per row: `loss[2r] = CE(y, s)`, `loss[2r + 1] = T²·KL`, `grad = (1 - α)(softmax(s) -
/// onehot(y)) + α·T·(softmax(s/T) - softmax(t/T))`. A label `>= cols` gives a NaN CE.
pub fn kd_loss_forward(
    ctx: &GpuContext,
    student: &GpuBuffer,
    teacher: &GpuBuffer,
    labels: &GpuBuffer,
    loss: &GpuBuffer,
    grad: &GpuBuffer,
    p: &RowParams,
) -> Result<(), GpuError> {
    let (rows, len, groups) = shape(p);
    let args = [
        r("student", student, len),
        r("teacher", teacher, len),
        r("labels", labels, rows),
        w("loss", loss, 2 * rows),
        w("grad", grad, len),
    ];
    launch(ctx, KernelId::KdLossForward, p, &args, groups)
}

/// `out[r]` (a `u32` buffer) = the column of the largest value of row `r`, first on ties.
pub fn argmax_rows(
    ctx: &GpuContext,
    x: &GpuBuffer,
    out: &GpuBuffer,
    p: &RowParams,
) -> Result<(), GpuError> {
    let (rows, len, groups) = shape(p);
    launch(
        ctx,
        KernelId::ArgmaxRows,
        p,
        &[r("x", x, len), w("out", out, rows)],
        groups,
    )
}
