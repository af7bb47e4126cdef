//! 2-D convolution forward, backward-input and backward-weight (see [`Conv2dParams`]).
//!
//! ```text
//! x, grad_x:            (n, c_in, h, w)
//! weight, grad_weight:  (c_out, c_in, kh, kw) = (c_out, K)      K = c_in·kh·kw
//! out, grad_out:        (n, c_out, h_out, w_out) = (n, c_out, P)  P = h_out·w_out
//! cols of a run:        (K, S·P)   S samples side by side; for sample j,
//!                       cols[(ci, ki, kj), j·P + (oy, ox)] = x[j, ci, oy·s + ki - pad, ox·s + kj - pad]
//! ```
//!
//! The batch is cut into runs of `S` samples (a power of two fixed by the shapes, so
//! that the runs fit a core's cache); each run is one im2col and one matmul,
//! `out_run (c_out, S·P) = weight · cols`, then unstacked into its samples' NCHW blocks.
//! A run's matmul is `S` times wider than one sample's, which pays for the unstacking
//! (the matmul repacks `weight` on every call). Rayon runs the runs in parallel, and
//! each matmul may split further on idle cores. A 1×1 kernel at stride 1 without
//! padding runs sample by sample with no im2col at all: `cols` is `x_s` itself.

use super::elementwise::par_chunked;
use super::matmul::matmul;
use super::pool::pool_plane_2x2;
use super::vmath::on_widest_vectors;
use crate::error::{words, words_mut, KernelError};
use crate::params::*;
use rayon::prelude::*;
use std::cell::Cell;
use std::thread::LocalKey;

thread_local! {
    /// One buffer per thread for a run's cols, grown to the largest run seen and then
    /// reused.
    static SCRATCH: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
    /// The calling thread's buffer for partial weight gradients.
    static PARTIALS: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// Runs `f` on a buffer of `len` floats from `key` (contents unspecified).
///
/// NOTE: the buffer is taken out of the thread-local, not borrowed: while a matmul
/// inside `f` waits on rayon, this thread may steal another run's task, which then
/// finds the cell empty and makes its own buffer instead of aliasing this one.
fn with_buffer<R>(
    key: &'static LocalKey<Cell<Vec<f32>>>,
    len: usize,
    f: impl FnOnce(&mut [f32]) -> R,
) -> R {
    let mut buf = key.take();
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    let result = f(&mut buf[..len]);
    let other = key.take();
    key.set(if other.len() > buf.len() { other } else { buf });
    result
}

fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    with_buffer(&SCRATCH, len, f)
}

/// Floats of scratch a run may use (its cols and its stacked output): 1 MiB, about
/// one core's L2 cache.
const RUN_SCRATCH: usize = 1 << 18;
/// Samples per run at most; more gains little once the matmul is wide.
const MAX_RUN: usize = 8;

/// The sizes every kernel derives from the params.
#[derive(Clone, Copy)]
struct Plan {
    /// Rows of cols, `c_in·kh·kw`.
    k: usize,
    /// Output pixels per channel, `h_out·w_out`.
    pixels: usize,
    c_out: usize,
    x_len: usize,
    out_len: usize,
    /// Samples per run, `S`.
    run: usize,
}

impl Plan {
    /// After checking that `p`'s fields are consistent (the sizes below then fit).
    fn new(p: &Conv2dParams) -> Result<Self, KernelError> {
        p.check()?;
        let (k, pixels, c_out) = (
            (p.c_in * p.kh * p.kw) as usize,
            (p.h_out * p.w_out) as usize,
            p.c_out as usize,
        );
        let per_sample = (k + c_out) * pixels;
        // A power of two divides the usual batch sizes into equal runs, which then
        // share out evenly between cores.
        let fit = (RUN_SCRATCH / per_sample.max(1)).clamp(1, MAX_RUN);
        let run = if is_pointwise(p) { 1 } else { 1 << fit.ilog2() };
        let x_len = (p.c_in * p.h * p.w) as usize;
        Ok(Self {
            k,
            pixels,
            c_out,
            x_len,
            out_len: c_out * pixels,
            run,
        })
    }
    /// Scratch for a run of `s` samples of the forward: cols `(K, s·P)`, then, when
    /// `s > 1`, the stacked output `(c_out, s·P)`.
    fn split_scratch<'a>(
        &self,
        scratch: &'a mut [f32],
        s: usize,
    ) -> (&'a mut [f32], &'a mut [f32]) {
        scratch.split_at_mut(self.k * s * self.pixels)
    }
    /// Floats of a run's cols: none for a pointwise conv, whose cols is `x` itself.
    fn cols_len(&self, s: usize, p: &Conv2dParams) -> usize {
        match is_pointwise(p) {
            true => 0,
            false => self.k * s * self.pixels,
        }
    }
    fn scratch_len(&self, s: usize) -> usize {
        (self.k + if s > 1 { self.c_out } else { 0 }) * s * self.pixels
    }
}

/// A 1×1 kernel at stride 1 without padding: `cols = x_s`.
fn is_pointwise(p: &Conv2dParams) -> bool {
    p.kh == 1 && p.kw == 1 && p.stride == 1 && p.pad == 0
}

/// The outputs `o` in `0..n_out` whose input `o·stride + k - pad` falls in `0..size`.
fn valid_range(k: usize, pad: usize, stride: usize, size: usize, n_out: usize) -> (usize, usize) {
    let hi = ((size + pad).saturating_sub(k)).div_ceil(stride).min(n_out);
    let lo = pad.saturating_sub(k).div_ceil(stride).min(hi);
    (lo, hi)
}

/// A stretch of one cols row that reads the image: cols row `r` (for `(ci, ki, kj)`),
/// output row `oy`, output columns `out_cols`, reading row `x_row` of a sample's
/// `(c_in·h, w)` rows from column `first` on, every `stride` columns.
struct Segment {
    r: usize,
    oy: usize,
    out_cols: std::ops::Range<usize>,
    x_row: usize,
    first: usize,
}

/// Calls `f` on every [`Segment`]; the rest of cols is padding. The ranges are worked
/// out once per `(ci, ki, kj)` and shared by every sample of a run.
fn for_each_segment(p: &Conv2dParams, mut f: impl FnMut(Segment)) {
    let [c_in, h, w, kh, kw, h_out, w_out] =
        [p.c_in, p.h, p.w, p.kh, p.kw, p.h_out, p.w_out].map(|v| v as usize);
    let (s, pad) = (p.stride as usize, p.pad as usize);
    for (ci, ki) in (0..c_in).flat_map(|ci| (0..kh).map(move |ki| (ci, ki))) {
        let (y_lo, y_hi) = valid_range(ki, pad, s, h, h_out);
        for kj in 0..kw {
            let (x_lo, x_hi) = valid_range(kj, pad, s, w, w_out);
            if x_lo == x_hi {
                continue; // NOTE: then `first` below could underflow.
            }
            let r = (ci * kh + ki) * kw + kj;
            for oy in y_lo..y_hi {
                let x_row = ci * h + oy * s + ki - pad;
                f(Segment {
                    r,
                    oy,
                    out_cols: x_lo..x_hi,
                    x_row,
                    first: x_lo * s + kj - pad,
                });
            }
        }
    }
}

/// Fills `cols: (K, s·P)` from a run `x_run: (s, c_in, h, w)`, zeros where the windows
/// overhang into the padding.
fn im2col(x_run: &[f32], cols: &mut [f32], plan: &Plan, p: &Conv2dParams) {
    let (w, stride, w_out) = (p.w as usize, p.stride as usize, p.w_out as usize);
    let ld = cols.len() / plan.k;
    if p.pad > 0 {
        cols.fill(0.0); // without padding every entry is written below
    }
    for_each_segment(p, |seg| {
        for (j, x_s) in x_run.chunks_exact(plan.x_len).enumerate() {
            let src = &x_s[seg.x_row * w..][..w];
            let dst =
                &mut cols[seg.r * ld + j * plan.pixels + seg.oy * w_out..][seg.out_cols.clone()];
            if stride == 1 {
                copy_short(dst, &src[seg.first..][..dst.len()]);
            } else {
                for (d, &v) in dst.iter_mut().zip(src[seg.first..].iter().step_by(stride)) {
                    *d = v;
                }
            }
        }
    });
}

/// Adds `cols: (K, s·P)` back onto `grad_x_run: (s, c_in, h, w)`, the adjoint of
/// [`im2col`]: padding entries are dropped and overlapping windows add up.
fn col2im(cols: &[f32], grad_x_run: &mut [f32], plan: &Plan, p: &Conv2dParams) {
    let (w, stride, w_out) = (p.w as usize, p.stride as usize, p.w_out as usize);
    let ld = cols.len() / plan.k;
    for_each_segment(p, |seg| {
        for (j, grad_x_s) in grad_x_run.chunks_exact_mut(plan.x_len).enumerate() {
            let dst = &mut grad_x_s[seg.x_row * w..][..w];
            let src = &cols[seg.r * ld + j * plan.pixels + seg.oy * w_out..][seg.out_cols.clone()];
            if stride == 1 {
                add_short(&mut dst[seg.first..][..src.len()], src);
            } else {
                for (d, &v) in dst[seg.first..].iter_mut().step_by(stride).zip(src) {
                    *d += v;
                }
            }
        }
    });
}

/// `dst = src` for rows of about ten floats.
///
/// NOTE: in blocks of 4, each one vector move, the last block overlapping the one
/// before; `copy_from_slice` or a loop per float would call `memmove`, which costs more
/// than the copy at this length.
fn copy_short(dst: &mut [f32], src: &[f32]) {
    let len = dst.len();
    if len < 4 {
        return dst.iter_mut().zip(src).for_each(|(d, s)| *d = *s);
    }
    let block = |i: usize| -> [f32; 4] { src[i..i + 4].try_into().unwrap() };
    for i in (0..len - 4).step_by(4) {
        dst[i..i + 4].copy_from_slice(&block(i));
    }
    dst[len - 4..].copy_from_slice(&block(len - 4));
}

/// `dst += src` for rows of about ten floats.
///
/// NOTE: in blocks of 4, which become single vector adds; LLVM's own vector loop only
/// starts at 16 floats, so a plain zip would add these rows one float at a time.
fn add_short(dst: &mut [f32], src: &[f32]) {
    let (mut dst, mut src) = (dst.chunks_exact_mut(4), src.chunks_exact(4));
    for (d, s) in (&mut dst).zip(&mut src) {
        // Both loaded before the store, so no aliasing question stops the vector add.
        let (mut sum, s): ([f32; 4], [f32; 4]) = ((*d).try_into().unwrap(), s.try_into().unwrap());
        for (sum, s) in sum.iter_mut().zip(s) {
            *sum += s;
        }
        d.copy_from_slice(&sum);
    }
    for (d, s) in dst.into_remainder().iter_mut().zip(src.remainder()) {
        *d += s;
    }
}

/// `(s, rows, P)` samples side by side as `(rows, s·P)`.
fn stack(samples: &[f32], stacked: &mut [f32], rows: usize, pixels: usize) {
    let s = samples.len() / (rows * pixels);
    for (j, sample) in samples.chunks_exact(rows * pixels).enumerate() {
        for (r, src) in sample.chunks_exact(pixels).enumerate() {
            stacked[(r * s + j) * pixels..][..pixels].copy_from_slice(src);
        }
    }
}

/// The inverse of [`stack`]: `(rows, s·P)` back to `(s, rows, P)`.
fn unstack(stacked: &[f32], samples: &mut [f32], rows: usize, pixels: usize) {
    let s = samples.len() / (rows * pixels);
    for (j, sample) in samples.chunks_exact_mut(rows * pixels).enumerate() {
        for (r, dst) in sample.chunks_exact_mut(pixels).enumerate() {
            dst.copy_from_slice(&stacked[(r * s + j) * pixels..][..pixels]);
        }
    }
}

/// `out[n, co, oy, ox] = Σ_{ci, ki, kj} weight[co, ci, ki, kj] · x[n, ci, oy·s + ki - pad, ox·s + kj - pad]`
/// (zero outside `x`), as PyTorch's `conv2d` without bias.
pub fn conv2d_forward(
    x: &[f32],
    weight: &[f32],
    out: &mut [f32],
    p: &Conv2dParams,
) -> Result<(), KernelError> {
    const OP: &str = "conv2d_forward";
    let plan = Plan::new(p)?;
    let (x, weight) = (
        words(OP, "x", x, p.input_len())?,
        words(OP, "weight", weight, p.weight_len())?,
    );
    let out = words_mut(OP, "out", out, p.output_len())?;
    let runs = out
        .par_chunks_mut(plan.run * plan.out_len)
        .zip(x.par_chunks(plan.run * plan.x_len));
    runs.try_for_each(|(out_run, x_run)| {
        let s = x_run.len() / plan.x_len;
        let mm = MatmulParams::new(plan.c_out, s * plan.pixels, plan.k)?;
        if is_pointwise(p) {
            return matmul(weight, x_run, out_run, &mm);
        }
        with_scratch(plan.scratch_len(s), |scratch| {
            let (cols, stacked) = plan.split_scratch(scratch, s);
            im2col(x_run, cols, &plan, p);
            if s == 1 {
                return matmul(weight, cols, out_run, &mm);
            }
            matmul(weight, cols, stacked, &mm)?;
            unstack(stacked, out_run, plan.c_out, plan.pixels);
            Ok(())
        })
    })
}

/// `out, argmax (n, c_out, h_out / 2, w_out / 2)`: [`conv2d_forward`], `+ bias`, ReLU
/// and a 2×2 max-pool of stride 2, applied to each run's output while it is still in
/// the cache, so the conv's output is never written to memory. Bit for bit what
/// `conv2d_forward`, `bias_forward`, `relu_forward` and `max_pool2d_forward` give in
/// turn; `argmax` indexes each `(h_out, w_out)` plane, as `max_pool2d_forward`'s does.
/// An output under 2×2 is [`KernelError::BadParams`].
pub fn conv2d_relu_pool_forward(
    x: &[f32],
    weight: &[f32],
    bias: &[f32],
    out: &mut [f32],
    argmax: &mut [u32],
    p: &Conv2dParams,
) -> Result<(), KernelError> {
    const OP: &str = "conv2d_relu_pool_forward";
    let plan = Plan::new(p)?;
    let pool = p.pool()?;
    let (x, weight) = (
        words(OP, "x", x, p.input_len())?,
        words(OP, "weight", weight, p.weight_len())?,
    );
    let bias = words(OP, "bias", bias, plan.c_out)?;
    let out = words_mut(OP, "out", out, p.pooled_len())?;
    let argmax = words_mut(OP, "argmax", argmax, p.pooled_len())?;
    let pooled = (pool.h_out * pool.w_out) as usize;
    let run_out = plan.run * plan.c_out * pooled;
    let runs = out
        .par_chunks_mut(run_out)
        .zip(argmax.par_chunks_mut(run_out))
        .zip(x.par_chunks(plan.run * plan.x_len));
    runs.try_for_each(|((out_run, argmax_run), x_run)| {
        let s = x_run.len() / plan.x_len;
        let cols_len = plan.cols_len(s, p);
        with_scratch(cols_len + plan.c_out * s * plan.pixels, |scratch| {
            let (cols, z) = scratch.split_at_mut(cols_len);
            // NOTE: a pointwise conv runs one sample a run, whose x is its cols.
            let cols: &[f32] = if is_pointwise(p) {
                x_run
            } else {
                im2col(x_run, cols, &plan, p);
                cols
            };
            let mm = MatmulParams::new(plan.c_out, s * plan.pixels, plan.k)?;
            matmul(weight, cols, z, &mm)?;
            // z: (c_out, s·P), channel co's row holding sample j's plane at j·P.
            on_widest_vectors(
                #[inline(always)]
                || {
                    let rows = z.chunks_exact(s * plan.pixels).zip(bias);
                    for (co, (row, &b)) in rows.enumerate() {
                        // As bias_forward, then relu_forward, on each value the pool reads.
                        let bias_relu = |v: f32| {
                            let biased = v + b;
                            if biased < 0.0 {
                                0.0
                            } else {
                                biased
                            }
                        };
                        for (j, plane) in row.chunks_exact(plan.pixels).enumerate() {
                            let at = (j * plan.c_out + co) * pooled;
                            let (out, argmax) = (
                                &mut out_run[at..][..pooled],
                                &mut argmax_run[at..][..pooled],
                            );
                            pool_plane_2x2(plane, out, argmax, &pool, bias_relu);
                        }
                    }
                },
            );
            Ok(())
        })
    })
}

// out = W · cols  =>  dL/dcols = Wᵀ · dL/dout, and dL/dx = col2im(dL/dcols)
// (each x entry appears in cols once per window that covers it; col2im sums those).
/// `grad_x`, overwritten, from `grad_out` and `weight`.
pub fn conv2d_backward_input(
    grad_out: &[f32],
    weight: &[f32],
    grad_x: &mut [f32],
    p: &Conv2dParams,
) -> Result<(), KernelError> {
    const OP: &str = "conv2d_backward_input";
    let plan = Plan::new(p)?;
    let grad_out = words(OP, "grad_out", grad_out, p.output_len())?;
    let weight = words(OP, "weight", weight, p.weight_len())?;
    let grad_x = words_mut(OP, "grad_x", grad_x, p.input_len())?;
    let runs = grad_x
        .par_chunks_mut(plan.run * plan.x_len)
        .zip(grad_out.par_chunks(plan.run * plan.out_len));
    runs.try_for_each(|(grad_x_run, g_run)| {
        let s = g_run.len() / plan.out_len;
        // weight is stored (c_out, K): read it transposed.
        let mm = MatmulParams::new(plan.k, s * plan.pixels, plan.c_out)?.trans_a();
        if is_pointwise(p) {
            return matmul(weight, g_run, grad_x_run, &mm);
        }
        with_scratch(plan.scratch_len(s), |scratch| {
            let (grad_cols, stacked) = plan.split_scratch(scratch, s);
            let g: &[f32] = if s == 1 {
                g_run
            } else {
                stack(g_run, stacked, plan.c_out, plan.pixels);
                stacked
            };
            matmul(weight, g, grad_cols, &mm)?;
            grad_x_run.fill(0.0);
            col2im(grad_cols, grad_x_run, &plan, p);
            Ok(())
        })
    })
}

/// Partial weight gradients at most, summed at the end: the runs are grouped into this
/// many groups by the batch size alone, so that the sum's order, and its rounding,
/// never depends on the number of threads.
const MAX_PARTIALS: usize = 8;

// out = W · cols  =>  dL/dW = Σ_runs dL/dout · colsᵀ
/// `grad_weight`, overwritten, summed over the batch.
///
/// Each group of runs accumulates into its own partial gradient, in parallel; the
/// partials are then added in group order (no atomics, no locks: deterministic).
pub fn conv2d_backward_weight(
    x: &[f32],
    grad_out: &[f32],
    grad_weight: &mut [f32],
    p: &Conv2dParams,
) -> Result<(), KernelError> {
    const OP: &str = "conv2d_backward_weight";
    let plan = Plan::new(p)?;
    let x = words(OP, "x", x, p.input_len())?;
    let grad_out = words(OP, "grad_out", grad_out, p.output_len())?;
    let grad_weight = words_mut(OP, "grad_weight", grad_weight, p.weight_len())?;
    let runs = (p.n as usize).div_ceil(plan.run);
    let group = runs.div_ceil(MAX_PARTIALS) * plan.run; // samples per group
    let groups = (p.n as usize).div_ceil(group);
    // The first group writes straight into grad_weight; the others get a partial each.
    with_buffer(&PARTIALS, (groups - 1) * p.weight_len(), |partials| {
        let mut targets = vec![&mut grad_weight[..]];
        targets.extend(partials.chunks_mut(p.weight_len()));
        let inputs = x
            .par_chunks(group * plan.x_len)
            .zip(grad_out.par_chunks(group * plan.out_len));
        targets
            .into_par_iter()
            .zip(inputs)
            .try_for_each(|(target, (x_group, g_group))| {
                let runs = x_group
                    .chunks(plan.run * plan.x_len)
                    .zip(g_group.chunks(plan.run * plan.out_len));
                for (i, (x_run, g_run)) in runs.enumerate() {
                    weight_grad_of_run(x_run, g_run, target, i > 0, &plan, p)?;
                }
                Ok::<_, KernelError>(())
            })?;
        for partial in partials.chunks(p.weight_len()) {
            par_chunked(grad_weight, |start, grad| {
                for (g, &v) in grad.iter_mut().zip(&partial[start..]) {
                    *g += v;
                }
            });
        }
        Ok(())
    })
}

/// `grad_weight (+)= g_run · colsᵀ` for one run.
fn weight_grad_of_run(
    x_run: &[f32],
    g_run: &[f32],
    grad_weight: &mut [f32],
    accumulate: bool,
    plan: &Plan,
    p: &Conv2dParams,
) -> Result<(), KernelError> {
    let s = x_run.len() / plan.x_len;
    // cols is stored (K, s·P): read it transposed.
    let mut mm = MatmulParams::new(plan.c_out, plan.k, s * plan.pixels)?.trans_b();
    if accumulate {
        mm = mm.accumulate();
    }
    if is_pointwise(p) {
        return matmul(g_run, x_run, grad_weight, &mm);
    }
    with_scratch(plan.scratch_len(s), |scratch| {
        let (cols, stacked) = plan.split_scratch(scratch, s);
        im2col(x_run, cols, plan, p);
        let g: &[f32] = if s == 1 {
            g_run
        } else {
            stack(g_run, stacked, plan.c_out, plan.pixels);
            stacked
        };
        matmul(g, cols, grad_weight, &mm)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::{rngs::StdRng, Rng, SeedableRng};

    fn random(len: usize, seed: u64) -> Vec<f32> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..len).map(|_| rng.random_range(-1.0..1.0)).collect()
    }

    fn params(s: [usize; 9]) -> Conv2dParams {
        Conv2dParams::new(s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], s[8]).unwrap()
    }

    /// Calls `f(out, x, w)` with the flat indices of every multiply-add
    /// `out[out] += w[w] · x[x]` of the convolution whose input lies inside the image:
    /// the naive loop every reference below is built from.
    fn for_each_tap(p: &Conv2dParams, mut f: impl FnMut(usize, usize, usize)) {
        let [n, c_in, h, w, c_out, kh, kw, s, pad, h_out, w_out] = [
            p.n, p.c_in, p.h, p.w, p.c_out, p.kh, p.kw, p.stride, p.pad, p.h_out, p.w_out,
        ]
        .map(|v| v as isize);
        for (b, co, oy, ox) in grid4(n, c_out, h_out, w_out) {
            for (ci, ki, kj, _) in grid4(c_in, kh, kw, 1) {
                let (iy, ix) = (oy * s + ki - pad, ox * s + kj - pad);
                if iy < 0 || ix < 0 || iy >= h || ix >= w {
                    continue; // the zero padding adds nothing
                }
                let out = ((b * c_out + co) * h_out + oy) * w_out + ox;
                let x = ((b * c_in + ci) * h + iy) * w + ix;
                let weight = ((co * c_in + ci) * kh + ki) * kw + kj;
                f(out as usize, x as usize, weight as usize);
            }
        }
    }

    /// Every `(a, b, c, d)` below `(na, nb, nc, nd)`, in row-major order.
    fn grid4(
        na: isize,
        nb: isize,
        nc: isize,
        nd: isize,
    ) -> impl Iterator<Item = (isize, isize, isize, isize)> {
        (0..na).flat_map(move |a| {
            (0..nb).flat_map(move |b| (0..nc).flat_map(move |c| (0..nd).map(move |d| (a, b, c, d))))
        })
    }

    // Each tap does out += w·x, so it adds g·w to dL/dx and g·x to dL/dw.
    fn reference(x: &[f32], w: &[f32], g: &[f32], p: &Conv2dParams) -> [Vec<f64>; 3] {
        let (mut out, mut gx, mut gw) = (
            vec![0.0; p.output_len()],
            vec![0.0; x.len()],
            vec![0.0; w.len()],
        );
        for_each_tap(p, |o, xi, wi| {
            out[o] += w[wi] as f64 * x[xi] as f64;
            gx[xi] += g[o] as f64 * w[wi] as f64;
            gw[wi] += g[o] as f64 * x[xi] as f64;
        });
        [out, gx, gw]
    }

    fn run_all(x: &[f32], w: &[f32], g: &[f32], p: &Conv2dParams) -> [Vec<f32>; 3] {
        // NaN-filled outputs: every kernel must overwrite all of its output.
        let (mut out, mut gx, mut gw) = (
            vec![f32::NAN; p.output_len()],
            vec![f32::NAN; x.len()],
            vec![f32::NAN; w.len()],
        );
        conv2d_forward(x, w, &mut out, p).unwrap();
        conv2d_backward_input(g, w, &mut gx, p).unwrap();
        conv2d_backward_weight(x, g, &mut gw, p).unwrap();
        [out, gx, gw]
    }

    fn assert_close(got: &[f32], want: &[f64], what: &str) {
        assert_eq!(got.len(), want.len(), "{what}");
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g as f64 - w).abs() <= 1e-4 * (1.0 + w.abs()),
                "{what}[{i}]: {g} vs {w}"
            );
        }
    }

    fn check_against_reference(p: &Conv2dParams, seed: u64) {
        let (x, w) = (
            random(p.input_len(), seed),
            random(p.weight_len(), seed + 1),
        );
        let g = random(p.output_len(), seed + 2);
        let [out, gx, gw] = run_all(&x, &w, &g, p);
        let [r_out, r_gx, r_gw] = reference(&x, &w, &g, p);
        assert_close(&out, &r_out, &format!("out {p:?}"));
        assert_close(&gx, &r_gx, &format!("grad_x {p:?}"));
        assert_close(&gw, &r_gw, &format!("grad_weight {p:?}"));
    }

    #[test]
    fn conv2d_hand_computed_3x3_image_2x2_kernel() {
        // x = [1 2 3; 4 5 6; 7 8 9], w = [1 2; 3 4], no padding, stride 1: out is 2x2,
        // out[0,0] = 1·1 + 2·2 + 4·3 + 5·4 = 37, and each step right adds 1+2+3+4 = 10
        // (every x entry grows by 1), each step down adds 3·10 = 30: [37 47; 67 77].
        let p = params([1, 1, 3, 3, 1, 2, 2, 1, 0]);
        let x: Vec<f32> = (1..=9).map(|v| v as f32).collect();
        let w = [1.0, 2.0, 3.0, 4.0];
        let g = [1.0; 4];
        let [out, gx, gw] = run_all(&x, &w, &g, &p);
        assert_eq!(out, [37.0, 47.0, 67.0, 77.0]);
        // With dL/dout = 1 everywhere, dL/dx[i,j] sums w[i-oy, j-ox] over the windows
        // covering (i,j): a corner sees one weight, an edge two, the centre all four.
        assert_eq!(gx, [1.0, 3.0, 2.0, 4.0, 10.0, 6.0, 3.0, 7.0, 4.0]);
        // dL/dw[ki,kj] sums the 2x2 block of x at offset (ki,kj): 1+2+4+5 = 12,
        // 2+3+5+6 = 16, 4+5+7+8 = 24, 5+6+8+9 = 28.
        assert_eq!(gw, [12.0, 16.0, 24.0, 28.0]);
    }

    #[test]
    fn conv2d_one_pixel_image_with_padding_sees_the_centre_weight() {
        // A 1x1 image padded by 1 under a 3x3 kernel: the only output's window has the
        // pixel at its centre, w[1,1] = 5, so out = 5·x and the gradients follow.
        let p = params([1, 1, 1, 1, 1, 3, 3, 1, 1]);
        let w: Vec<f32> = (1..=9).map(|v| v as f32).collect();
        let [out, gx, gw] = run_all(&[2.0], &w, &[3.0], &p);
        assert_eq!((out, gx), (vec![10.0], vec![15.0]));
        assert_eq!(gw, [0.0, 0.0, 0.0, 0.0, 6.0, 0.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn conv2d_matches_reference_on_edge_shapes() {
        let shapes = [
            [1, 1, 1, 1, 1, 1, 1, 1, 0], // one pixel, 1x1 kernel (the pointwise path)
            [3, 5, 1, 1, 7, 1, 1, 1, 0], // one-pixel images, several channels
            [2, 3, 7, 5, 4, 1, 1, 1, 0], // pointwise on primes
            [2, 3, 7, 5, 4, 1, 1, 2, 0], // 1x1 but strided: not pointwise
            [1, 2, 1, 1, 3, 5, 5, 1, 2], // kernel larger than the image, all padding
            [1, 2, 2, 3, 2, 5, 3, 3, 2], // windows entirely in the padding
            [2, 3, 11, 13, 5, 3, 3, 2, 1], // primes, stride 2, padding 1
            [1, 2, 9, 7, 3, 4, 2, 3, 2], // non-square kernel, stride 3, padding 2
            [2, 1, 28, 28, 4, 3, 3, 1, 0], // the teacher's first layer, fewer channels
            [3, 8, 13, 13, 6, 3, 3, 1, 0], // its second, fewer channels
            [10, 2, 5, 5, 3, 3, 3, 1, 1], // a batch that splits into several partials
            [100, 2, 4, 4, 3, 2, 2, 1, 0], // 13 runs of 8 in 7 partials, the last run short
            [5, 3, 40, 40, 8, 3, 3, 1, 1], // big images: runs of 4 samples
        ];
        for (i, shape) in shapes.into_iter().enumerate() {
            check_against_reference(&params(shape), i as u64);
        }
    }

    fn conv_shape() -> impl Strategy<Value = Conv2dParams> {
        let sizes = (1..=3usize, 1..=4usize, 1..=9usize, 1..=9usize, 1..=5usize);
        let kernel = (1..=4usize, 1..=4usize, 1..=3usize, 0..=2usize);
        (sizes, kernel).prop_filter_map("kernel must fit the padded image", |(s, k)| {
            Conv2dParams::new(s.0, s.1, s.2, s.3, s.4, k.0, k.1, k.2, k.3).ok()
        })
    }

    fn dot(a: &[f32], b: &[f32]) -> f64 {
        a.iter().zip(b).map(|(&a, &b)| a as f64 * b as f64).sum()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        #[test]
        fn conv2d_kernels_match_reference(p in conv_shape(), seed in any::<u64>()) {
            check_against_reference(&p, seed);
        }

        // The conv is linear in x and in w, so its backward kernels are its adjoints:
        // <conv(x, w), g> = <x, backward_input(g, w)> = <w, backward_weight(x, g)>.
        // (For a linear map this is the exact form of a finite-difference check.)
        #[test]
        fn conv2d_backward_kernels_are_adjoints(p in conv_shape(), seed in any::<u64>()) {
            let (x, w) = (random(p.input_len(), seed), random(p.weight_len(), seed + 1));
            let g = random(p.output_len(), seed + 2);
            let [out, gx, gw] = run_all(&x, &w, &g, &p);
            let forward = dot(&out, &g);
            let scale = 1e-4 * (1.0 + forward.abs() + out.len() as f64);
            prop_assert!((forward - dot(&x, &gx)).abs() <= scale, "{forward} vs {}", dot(&x, &gx));
            prop_assert!((forward - dot(&w, &gw)).abs() <= scale, "{forward} vs {}", dot(&w, &gw));
        }
    }

    #[test]
    fn conv2d_backward_weight_is_deterministic() {
        let p = params([13, 4, 9, 9, 5, 3, 3, 1, 1]);
        let (x, g) = (random(p.input_len(), 1), random(p.output_len(), 2));
        let mut first = vec![0.0; p.weight_len()];
        conv2d_backward_weight(&x, &g, &mut first, &p).unwrap();
        for _ in 0..3 {
            let mut again = vec![0.0; p.weight_len()];
            conv2d_backward_weight(&x, &g, &mut again, &p).unwrap();
            assert_eq!(first, again);
        }
    }
}
