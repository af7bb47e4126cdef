//! `c = op(a) · op(b)` on the GPU (see [`MatmulParams`] and `wgsl/matmul.wgsl`).

use super::elementwise::sum_axis;
use super::launch::{check_args, launch, r, w};
use super::{GpuBuffer, GpuContext, GpuError, KernelId};
use crate::params::{AxisParams, MatmulParams};

/// Rows and columns of `c` per workgroup (`TILE` in the shader).
pub(crate) const TILE: u64 = 64;

/// NOTE: `K_CHUNK`, `FEW_TILES` and [`k_splits`] repeat `matmul.wgsl`.
const K_CHUNK: u64 = 256;
const FEW_TILES: u64 = 64;

/// Workgroups of a GEMM-tiled output of `rows × cols`.
pub(crate) fn tiles(rows: u32, cols: u32) -> u64 {
    (rows as u64).div_ceil(TILE) * (cols as u64).div_ceil(TILE)
}

/// Pieces of the reduction over `k`: more than one only when the output has few tiles
/// (a `(64, 128)` linear layer's output is 2 tiles, however long its `k = 9216` is).
fn k_splits(p: &MatmulParams) -> u64 {
    let k = p.k as u64;
    if tiles(p.m, p.n) >= FEW_TILES || k <= K_CHUNK {
        1
    } else {
        k.div_ceil(K_CHUNK)
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
    let (m, n, k) = (p.m as usize, p.n as usize, p.k as usize);
    let args = [r("a", a, m * k), r("b", b, k * n), w("c", c, m * n)];
    let splits = k_splits(p);
    if k == 0 && p.accumulate == 0 {
        // An empty sum: the shader would never run its loop, but c must still be zeroed.
        check_args(ctx, "matmul", &args)?;
        return ctx.clear(c, m * n);
    }
    if splits == 1 {
        return launch(ctx, KernelId::Matmul, p, &args, tiles(p.m, p.n));
    }
    check_args(ctx, "matmul", &args)?;
    let slices = splits as usize + p.accumulate as usize;
    let partial = c.context().scratch(slices * m * n);
    if p.accumulate == 1 {
        ctx.copy_words(c, &partial, m * n);
    }
    let [a, b, _] = args;
    let args = [a, b, w("c", &partial, slices * m * n)];
    launch(ctx, KernelId::Matmul, p, &args, tiles(p.m, p.n) * splits)?;
    sum_axis(ctx, &partial, c, &AxisParams::new(1, slices, m * n))
}
