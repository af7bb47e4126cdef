//! The backward of a conv → bias → ReLU → 2×2 max-pool block, from the pool's gradient
//! and argmax, visiting only the pool's winners (the forward is
//! [`conv2d_relu_pool_forward`](super::conv2d::conv2d_relu_pool_forward)).
//!
//! ```text
//! x, grad_x:            (n, c_in, h, w)
//! weight, grad_weight:  (c_out, c_in, kh, kw)          K = c_in·kh·kw
//! grad_out, argmax:     (n, c_out, h_out / 2, w_out / 2), argmax indexing the (h_out, w_out) plane
//! ```
//!
//! The conv's gradient, which `max_pool2d_backward` would write, is each pooled value at
//! its window's winner and zero at the window's three other pixels (and the ReLU's mask,
//! applied to the pooled gradient before these kernels, zeroes more). The dense kernels
//! would multiply every one of those zeros; here each non-zero winner is one term:
//!
//! ```text
//! grad_weight[co] = Σ_{samples j} Σ_{winners (g, at) of plane (j, co)} g · patch_j(at)
//! window_j(at)   += Σ_{winners (g, co) of sample j at pixel at} g · weight[co]
//! ```
//!
//! `patch_j(at)` is the `K` inputs under output pixel `at`'s window, in `(ki, kj, ci)`
//! order: with the sample stored channels-last and zero-padded, `(hp, wp, c_in)`, each
//! kernel row `ki` is one stretch of `span = kw·c_in` consecutive floats, read in place.
//! `window_j(at)` is the same stretches of `grad_x`'s padded channels-last copy;
//! `weight[co]` is reordered to `(ki, kj, ci)` once per call. A winner needs `K`
//! multiply-adds where the dense products spend `4·K` on its window (the weight's kernel
//! also sums the ReLU's zeros, which costs less than sorting them out; the input's skips
//! them). The vector lanes do `kh` slots of 16 or more floats a winner (below), so a
//! first layer's 3-float kernel rows cost `3·16 = 48` lanes a winner, more than the dense
//! products' 36 multiply-adds: it still runs faster, storing and packing nothing.
//!
//! Stretches are read and written in whole vectors: each kernel row has a slot of `span`
//! rounded up to 16 floats in a row of the gradient or the weight. For a `span` short of
//! that (a first layer's single channel: 3 floats) the weight gradient's extra lanes sum
//! the pixels beside the window and are dropped; the reordered weight holds zeros there,
//! so the input gradient adds zeros beside each window.
//!
//! The sums run in a fixed order (samples in order; winners in plane order for the
//! weight, by pixel for the input) whatever the number of threads or the vector width,
//! so AVX-512 and AVX2 give the same bits. It is not the dense kernels' order: the
//! results equal theirs up to rounding.

use super::elementwise::{bias_backward, par_chunked};
use super::isa::Isa;
use super::vmath::on_widest_vectors;
use crate::error::{words, words_mut, KernelError, MAX_WORDS};
use crate::params::*;
use rayon::prelude::*;
use std::cell::Cell;
use std::ops::Range;
use std::thread::LocalKey;

/// Partial weight gradients at most: the batch is cut into this many groups of samples
/// by its size alone, so the order of the final sum never depends on the thread count.
const MAX_PARTIALS: usize = 8;
/// [`sum_rows`] reads rows in stretches of a multiple of this many floats: the widest
/// vector.
const ROW_ALIGN: usize = 16;

/// One term of a sum of rows: `g` times the row that starts `offset` floats into the
/// source.
#[derive(Clone, Copy, Default)]
struct Term {
    g: f32,
    offset: u32,
}

/// Buffers, grown to the largest call seen and then reused.
struct Scratch {
    floats: Vec<f32>,
    terms: Vec<Term>,
    offsets: Vec<u32>,
}

impl Scratch {
    const EMPTY: Scratch = Scratch {
        floats: Vec::new(),
        terms: Vec::new(),
        offsets: Vec::new(),
    };
}

impl Default for Scratch {
    fn default() -> Self {
        Self::EMPTY
    }
}

thread_local! {
    /// A task's buffers (one sample, or one group of samples).
    static TASK: Cell<Scratch> = const { Cell::new(Scratch::EMPTY) };
    /// A call's, on its calling thread: partial gradients or the reordered weight, and
    /// the tables of offsets.
    static CALL: Cell<Scratch> = const { Cell::new(Scratch::EMPTY) };
}

/// Runs `f` on `key`'s buffers, taken out of the thread-local (not borrowed), so a task
/// that rayon runs on this thread meanwhile makes its own instead of aliasing these.
fn with_scratch<R>(key: &'static LocalKey<Cell<Scratch>>, f: impl FnOnce(&mut Scratch) -> R) -> R {
    let mut scratch = key.take();
    let result = f(&mut scratch);
    key.set(scratch);
    result
}

/// `buf` grown to at least `len` values; its first `len`, contents unspecified.
fn grown<T: Copy + Default>(buf: &mut Vec<T>, len: usize) -> &mut [T] {
    if buf.len() < len {
        buf.resize(len, T::default());
    }
    &mut buf[..len]
}

/// The sizes both kernels derive from the params.
#[derive(Clone, Copy)]
struct Geometry {
    c_in: usize,
    h: usize,
    w: usize,
    pad: usize,
    stride: usize,
    kh: usize,
    kw: usize,
    w_out: usize,
    /// Output pixels per channel, `h_out·w_out`: the range of an argmax.
    pixels: usize,
    /// The padded image's width.
    wp: usize,
    /// The slot of whole vectors that holds a patch's kernel row (its `span = kw·c_in`
    /// floats) in a row of a gradient or a weight: `span` rounded up to [`ROW_ALIGN`].
    slot: usize,
    /// `K`, and a row of slots, `kh·slot`.
    k: usize,
    ld: usize,
    c_out: usize,
    /// Values per pooled plane.
    pooled: usize,
    /// Values per sample of `x`.
    x_len: usize,
    /// Values per sample of the padded channels-last copy, `(hp, wp, c_in)`, and the
    /// `slot - span` floats after it that a last stretch reads (or adds zeros) past.
    padded_len: usize,
}

impl Geometry {
    fn new(op: &'static str, p: &Conv2dParams) -> Result<Self, KernelError> {
        p.check()?;
        // NOTE: the offsets into these buffers are u32s, and a huge padding can make
        // the padded image larger than any of the arguments.
        let u = |v: u32| v as u128;
        let padded = (u(p.h) + 2 * u(p.pad)) * (u(p.w) + 2 * u(p.pad)) * u(p.c_in) + 16;
        let slots = u(p.c_out) * u(p.kh) * (u(p.kw) * u(p.c_in) + 16);
        if padded.max(slots) > MAX_WORDS as u128 {
            return Err(KernelError::TooLarge {
                op,
                what: "a sample's padded image, or the weight in slots",
                value: padded.max(slots),
            });
        }
        let pool = p.pool()?;
        let u = |v: u32| v as usize;
        let (c_in, h, w, pad) = (u(p.c_in), u(p.h), u(p.w), u(p.pad));
        let (hp, wp) = (h + 2 * pad, w + 2 * pad);
        let span = u(p.kw) * c_in;
        let slot = span.next_multiple_of(ROW_ALIGN);
        let g = Self {
            c_in,
            h,
            w,
            pad,
            stride: u(p.stride),
            kh: u(p.kh),
            kw: u(p.kw),
            w_out: u(p.w_out),
            pixels: u(p.h_out) * u(p.w_out),
            wp,
            slot,
            k: span * u(p.kh),
            ld: slot * u(p.kh),
            c_out: u(p.c_out),
            pooled: u(pool.h_out) * u(pool.w_out),
            x_len: c_in * h * w,
            padded_len: hp * wp * c_in + slot - span,
        };
        Ok(g)
    }

    /// The kernel rows of a patch, as `(offset from its window's start in the padded
    /// image, offset of its slot in a row)`.
    fn stretches(&self) -> impl Iterator<Item = (usize, usize)> {
        let (row, slot) = (self.wp * self.c_in, self.slot);
        (0..self.kh).map(move |ki| (ki * row, ki * slot))
    }

    /// `f(place in a row of slots, place in a row of the weight)` for each tap
    /// `(ci, ki, kj)`.
    fn for_each_tap(&self, mut f: impl FnMut(usize, usize)) {
        for ki in 0..self.kh {
            for kj in 0..self.kw {
                for ci in 0..self.c_in {
                    let slot = ki * self.slot + kj * self.c_in + ci;
                    f(slot, (ci * self.kh + ki) * self.kw + kj);
                }
            }
        }
    }

    /// `windows (pixels)`: where each output pixel's window starts in the padded
    /// channels-last image; `image (h·w)`: where each input pixel lies in it; `lists
    /// (2·c_out + 1)`: each channel's plane of a sample, `co·pooled`, then its row of
    /// slots, `co·ld`.
    fn tables<'a>(&self, offsets: &'a mut Vec<u32>) -> (&'a [u32], &'a [u32], &'a [u32]) {
        offsets.clear();
        let (s, c_in) = (self.stride, self.c_in);
        offsets.extend((0..self.pixels).map(|at| {
            let (oy, ox) = (at / self.w_out, at % self.w_out);
            ((oy * s * self.wp + ox * s) * c_in) as u32
        }));
        offsets.extend((0..self.h * self.w).map(|i| {
            let (y, x) = (i / self.w, i % self.w);
            (((y + self.pad) * self.wp + x + self.pad) * c_in) as u32
        }));
        offsets.extend((0..=self.c_out).map(|co| (co * self.pooled) as u32));
        offsets.extend((0..self.c_out).map(|co| (co * self.ld) as u32));
        let (windows, rest) = offsets.split_at(self.pixels);
        let (image, lists) = rest.split_at(self.h * self.w);
        (windows, image, lists)
    }
}

/// `pixels[image[i] + c] = planes[c·len + i]` for every channel `c < channels` and
/// pixel `i < len = image.len()`: `(channels, len)` planes to a pixel of `channels`
/// floats at each offset of `image`.
fn planes_to_pixels(planes: &[f32], image: &[u32], channels: usize, pixels: &mut [f32]) {
    let len = check_transpose(planes.len(), pixels.len(), image, channels);
    #[cfg(target_arch = "x86_64")]
    if channels.is_multiple_of(8) && Isa::active() != Isa::Portable {
        // SAFETY: in bounds (asserted), and both vector instruction sets include AVX.
        return unsafe {
            avx::planes_to_pixels(planes.as_ptr(), image, channels, pixels.as_mut_ptr())
        };
    }
    for (i, &at) in image.iter().enumerate() {
        for (c, v) in pixels[at as usize..][..channels].iter_mut().enumerate() {
            *v = planes[c * len + i];
        }
    }
}

/// The pixels `image` names, after asserting that `planes` and `pixels` (their lengths)
/// hold them all.
fn check_transpose(planes: usize, pixels: usize, image: &[u32], channels: usize) -> usize {
    let reach = image.iter().max().map_or(0, |&o| o as usize + channels);
    assert!(planes >= channels * image.len() && pixels >= reach);
    image.len()
}

/// The inverse of [`planes_to_pixels`]: `planes[c·len + i] = pixels[image[i] + c]`.
fn pixels_to_planes(pixels: &[f32], image: &[u32], channels: usize, planes: &mut [f32]) {
    let len = check_transpose(planes.len(), pixels.len(), image, channels);
    #[cfg(target_arch = "x86_64")]
    if channels.is_multiple_of(8) && Isa::active() != Isa::Portable {
        // SAFETY: in bounds (asserted), and both vector instruction sets include AVX.
        return unsafe {
            avx::pixels_to_planes(pixels.as_ptr(), image, channels, planes.as_mut_ptr())
        };
    }
    for (i, &at) in image.iter().enumerate() {
        for (c, &v) in pixels[at as usize..][..channels].iter().enumerate() {
            planes[c * len + i] = v;
        }
    }
}

fn out_of_plane(op: &'static str, index: u32, pixels: usize) -> KernelError {
    KernelError::IndexOutOfRange {
        op,
        arg: "argmax",
        index,
        bound: pixels,
    }
}

/// The first argmax past the plane, as the error naming it.
fn check_argmax(op: &'static str, argmax: &[u32], pixels: usize) -> Result<(), KernelError> {
    if below(argmax, pixels) {
        return Ok(());
    }
    match argmax.iter().find(|&&at| at as usize >= pixels) {
        Some(&at) => Err(out_of_plane(op, at, pixels)),
        None => Ok(()),
    }
}

/// Whether every index is below `bound`, by their maximum (a loop that vectorises,
/// where a search for the first one past it would not).
fn below(indices: &[u32], bound: usize) -> bool {
    let largest = on_widest_vectors(
        #[inline(always)]
        || indices.iter().fold(0, |m, &i| m.max(i)),
    );
    indices.is_empty() || (largest as usize) < bound
}

/// One sample's non-zero winners by pixel (a counting sort, channels in order within a
/// pixel): those of pixel `at` are `terms[starts[at]..starts[at + 1]]`, each `(g, co·ld)`
/// for its value `g` and its channel `co`. The argmax must be checked.
fn by_pixel(
    (grad, argmax): (&[f32], &[u32]),
    g: &Geometry,
    terms: &mut Vec<Term>,
    starts: &mut Vec<u32>,
) {
    starts.clear();
    starts.resize(g.pixels + 1, 0);
    for (&v, &at) in grad.iter().zip(argmax) {
        starts[at as usize + 1] += (v != 0.0) as u32;
    }
    for at in 0..g.pixels {
        starts[at + 1] += starts[at];
    }
    terms.clear();
    terms.resize(starts[g.pixels] as usize, Term::default());
    // starts[at] is the next free slot of pixel at while the terms are placed, and ends
    // as the start of pixel at + 1: shifted back by one afterwards.
    let planes = grad
        .chunks_exact(g.pooled)
        .zip(argmax.chunks_exact(g.pooled));
    for (co, (grad, argmax)) in planes.enumerate() {
        for (&v, &at) in grad.iter().zip(argmax) {
            if v != 0.0 {
                let slot = &mut starts[at as usize];
                let offset = (co * g.ld) as u32;
                terms[*slot as usize] = Term { g: v, offset };
                *slot += 1;
            }
        }
    }
    starts.copy_within(0..g.pixels, 1);
    starts[0] = 0;
}

// out = Σ_taps weight · x  =>  dL/dweight[co] = Σ_{pixels at} dL/dout[co, at] · patch(at),
// and only the pool's winners have a non-zero dL/dout.
/// `grad_weight` and `grad_bias (c_out)`, overwritten: the gradients of the block's
/// weight and bias from the pool's `grad_out` and `argmax`, summed over the batch.
///
/// Each group of samples sums into its own partial gradient, in parallel; the partials
/// are then added in group order (deterministic). The bias is `bias_backward` of
/// `grad_out`: each pooled value lands on one pixel of the conv's gradient.
pub fn conv2d_pool_backward_weight(
    x: &[f32],
    grad_out: &[f32],
    argmax: &[u32],
    grad_weight: &mut [f32],
    grad_bias: &mut [f32],
    p: &Conv2dParams,
) -> Result<(), KernelError> {
    const OP: &str = "conv2d_pool_backward_weight";
    let g = Geometry::new(OP, p)?;
    let x = words(OP, "x", x, p.input_len())?;
    let grad = words(OP, "grad_out", grad_out, p.pooled_len())?;
    let argmax = words(OP, "argmax", argmax, p.pooled_len())?;
    let grad_weight = words_mut(OP, "grad_weight", grad_weight, p.weight_len())?;
    let grad_bias = words_mut(OP, "grad_bias", grad_bias, g.c_out)?;
    check_argmax(OP, argmax, g.pixels)?;
    let n = p.n as usize;
    let group = n.div_ceil(MAX_PARTIALS);
    let plane_len = g.c_out * g.pooled;
    with_scratch(&CALL, |call| {
        let (windows, image, lists) = g.tables(&mut call.offsets);
        // Channel co's list is its plane; its sum is row co of the partial gradient.
        let (starts, outs) = lists.split_at(g.c_out + 1);
        let stretches: Vec<_> = g.stretches().collect();
        let widest = windows.iter().map(|&o| o as usize).max();
        let partials = grown(&mut call.floats, n.div_ceil(group) * g.c_out * g.ld);
        let tasks = partials
            .par_chunks_mut(g.c_out * g.ld)
            .zip(x.par_chunks(group * g.x_len))
            .enumerate();
        tasks.for_each(|(i, (partial, x_group))| {
            partial.fill(0.0);
            with_scratch(&TASK, |task| {
                let xp = grown(&mut task.floats, g.padded_len);
                xp.fill(0.0);
                for (s, x_s) in x_group.chunks_exact(g.x_len).enumerate() {
                    let first = (i * group + s) * plane_len;
                    let (grad, argmax) =
                        (&grad[first..][..plane_len], &argmax[first..][..plane_len]);
                    let winners = Winners {
                        grad,
                        argmax,
                        rows: windows,
                        widest,
                    };
                    planes_to_pixels(x_s, image, g.c_in, xp);
                    let lists = Lists {
                        terms: winners,
                        starts,
                        outs,
                    };
                    let rows = Rows {
                        source: xp,
                        stretches: &stretches,
                        slot: g.slot,
                    };
                    sum_rows(&lists, &rows, partial);
                }
            })
        });
        let (total, rest) = partials.split_at_mut(g.c_out * g.ld);
        par_chunked(total, |start, total| {
            for partial in rest.chunks_exact(g.c_out * g.ld) {
                for (t, &v) in total.iter_mut().zip(&partial[start..]) {
                    *t += v;
                }
            }
        });
        // (ki, kj, ci) slots back to the weight's (ci, ki, kj).
        for (grad_w, sum) in grad_weight
            .chunks_exact_mut(g.k)
            .zip(total.chunks_exact(g.ld))
        {
            g.for_each_tap(|slot, tap| grad_w[tap] = sum[slot]);
        }
    });
    bias_backward(grad, grad_bias, &AxisParams::new(n, g.c_out, g.pooled)?)
}

// out = Σ_taps weight · x  =>  dL/dx under window(at) += Σ_co dL/dout[co, at] · weight[co],
// and only the pool's winners have a non-zero dL/dout.
/// `grad_x`, overwritten: the gradient of the block's input from the pool's `grad_out`
/// and `argmax`, one sample per task.
pub fn conv2d_pool_backward_input(
    grad_out: &[f32],
    argmax: &[u32],
    weight: &[f32],
    grad_x: &mut [f32],
    p: &Conv2dParams,
) -> Result<(), KernelError> {
    const OP: &str = "conv2d_pool_backward_input";
    let g = Geometry::new(OP, p)?;
    let grad = words(OP, "grad_out", grad_out, p.pooled_len())?;
    let argmax = words(OP, "argmax", argmax, p.pooled_len())?;
    let weight = words(OP, "weight", weight, p.weight_len())?;
    let grad_x = words_mut(OP, "grad_x", grad_x, p.input_len())?;
    check_argmax(OP, argmax, g.pixels)?;
    let plane_len = g.c_out * g.pooled;
    with_scratch(&CALL, |call| {
        let (windows, image, _) = g.tables(&mut call.offsets);
        // The weight's rows in a patch's (ki, kj, ci) order, each kernel row in a slot
        // of whole vectors, zeros after it: sums of them add zeros past each stretch.
        let rows = grown(&mut call.floats, g.c_out * g.ld);
        rows.fill(0.0);
        for (row, w) in rows.chunks_exact_mut(g.ld).zip(weight.chunks_exact(g.k)) {
            g.for_each_tap(|slot, tap| row[slot] = w[tap]);
        }
        let rows = &*rows;
        // Each pixel's sum goes straight onto its window of the padded gradient.
        let stretches: Vec<_> = g.stretches().map(|(image, slot)| (slot, image)).collect();
        let samples = grad_x.par_chunks_mut(g.x_len).enumerate();
        samples.for_each(|(j, grad_x_s)| {
            with_scratch(&TASK, |task| {
                let plane = (
                    &grad[j * plane_len..][..plane_len],
                    &argmax[j * plane_len..][..plane_len],
                );
                by_pixel(plane, &g, &mut task.terms, &mut task.offsets);
                let gxp = grown(&mut task.floats, g.padded_len);
                gxp.fill(0.0);
                let lists = Lists {
                    terms: &task.terms[..],
                    starts: &task.offsets,
                    outs: windows,
                };
                sum_rows(
                    &lists,
                    &Rows {
                        source: rows,
                        stretches: &stretches,
                        slot: g.slot,
                    },
                    gxp,
                );
                pixels_to_planes(gxp, image, g.c_in, grad_x_s);
            })
        });
    });
    Ok(())
}

/// The terms of [`sum_rows`]' lists: term `i` is `g` times the row that starts `offset`
/// floats into the source.
trait Terms {
    /// # Safety
    /// `i < self.len()`.
    unsafe fn term(&self, i: usize) -> (f32, usize);
    fn len(&self) -> usize;
    /// The largest `offset`, or `None` without terms.
    fn widest(&self) -> Option<usize>;
}

impl Terms for &[Term] {
    #[inline(always)]
    unsafe fn term(&self, i: usize) -> (f32, usize) {
        // SAFETY: i < len by the contract.
        let t = unsafe { self.get_unchecked(i) };
        (t.g, t.offset as usize)
    }
    fn len(&self) -> usize {
        <[Term]>::len(self)
    }
    fn widest(&self) -> Option<usize> {
        self.iter().map(|t| t.offset as usize).max()
    }
}

/// A sample's pooled gradient read in place: term `i` is its value `i` and the row of
/// its winner (its window in the padded image). Zeros are summed, not skipped: sorting
/// them out would cost more than their multiply-adds.
struct Winners<'a> {
    grad: &'a [f32],
    argmax: &'a [u32],
    rows: &'a [u32],
    /// The largest of `rows`, found once per call rather than once per sample.
    widest: Option<usize>,
}

impl Terms for Winners<'_> {
    #[inline(always)]
    unsafe fn term(&self, i: usize) -> (f32, usize) {
        // SAFETY: i < len by the contract. (An argmax past the rows is the caller's bug,
        // caught here, not unsafety.)
        let (g, at) = unsafe { (*self.grad.get_unchecked(i), *self.argmax.get_unchecked(i)) };
        (g, self.rows[at as usize] as usize)
    }
    fn len(&self) -> usize {
        self.grad.len().min(self.argmax.len())
    }
    fn widest(&self) -> Option<usize> {
        self.widest
    }
}

/// The lists [`sum_rows`] sums: list `i` is terms `starts[i]..starts[i + 1]`, and its sum
/// is added from `outs[i]` on in the output.
struct Lists<'a, T> {
    terms: T,
    starts: &'a [u32],
    outs: &'a [u32],
}

/// The rows [`sum_rows`] reads: the row of a term at `offset` is the stretches `(src,
/// dst)` of `slot` floats at `source[offset + src..]`, each added at `dst` from its
/// list's output offset.
struct Rows<'a> {
    source: &'a [f32],
    stretches: &'a [(usize, usize)],
    slot: usize,
}

/// `out[outs[i] + dst + c] += Σ_{t in list i} t.g · source[t.offset + src + c]` for
/// every list `i`, stretch `(src, dst)` and `c < slot` (a multiple of [`ROW_ALIGN`]), on
/// the widest vectors the CPU has. Outputs of lists may overlap; they add up in an
/// order [`sum_rows_on`] fixes, the same on every instruction set.
///
/// # Panics
/// If a row or an output falls outside `source` or `out` (a bug here).
fn sum_rows<T: Terms>(lists: &Lists<T>, rows: &Rows, out: &mut [f32]) {
    sum_rows_with(Isa::active(), lists, rows, out)
}

/// [`sum_rows`] on `isa`'s vectors.
///
/// # Panics
/// Also if the CPU lacks `isa`.
fn sum_rows_with<T: Terms>(isa: Isa, lists: &Lists<T>, rows: &Rows, out: &mut [f32]) {
    assert!(isa.supported(), "{isa} is not supported by this CPU");
    let reach = |pick: fn(&(usize, usize)) -> usize| {
        rows.stretches
            .iter()
            .map(pick)
            .max()
            .map_or(0, |m| m + rows.slot)
    };
    let (src_reach, dst_reach) = (reach(|s| s.0), reach(|s| s.1));
    assert!(rows.slot.is_multiple_of(ROW_ALIGN) && lists.outs.len() + 1 >= lists.starts.len());
    assert!(lists
        .starts
        .last()
        .is_none_or(|&n| n as usize <= lists.terms.len()));
    assert!(lists.starts.windows(2).all(|w| w[0] <= w[1]));
    assert!(lists
        .terms
        .widest()
        .is_none_or(|o| o + src_reach <= rows.source.len()));
    assert!(lists
        .outs
        .iter()
        .all(|&o| o as usize + dst_reach <= out.len()));
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{__m256, __m512};
        #[target_feature(enable = "avx512f")]
        unsafe fn avx512<T: Terms>(lists: &Lists<T>, rows: &Rows, out: &mut [f32]) {
            // SAFETY: in bounds (asserted above), and the CPU has AVX-512F.
            unsafe { sum_rows_on::<__m512, T>(lists, rows, out) }
        }
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2<T: Terms>(lists: &Lists<T>, rows: &Rows, out: &mut [f32]) {
            // SAFETY: likewise, with AVX2 and FMA.
            unsafe { sum_rows_on::<__m256, T>(lists, rows, out) }
        }
        match isa {
            // SAFETY: the CPU has it (asserted above).
            Isa::Avx512 => return unsafe { avx512(lists, rows, out) },
            // SAFETY: likewise.
            Isa::Avx2 => return unsafe { avx2(lists, rows, out) },
            Isa::Portable => {}
        }
    }
    // SAFETY: in bounds (asserted above); Quad needs no CPU feature.
    unsafe { sum_rows_on::<Quad, T>(lists, rows, out) }
}

/// Stretches of at least this many floats are summed one at a time, shorter ones
/// together (see [`sum_rows_on`]).
const WIDE_STRETCH: usize = 4 * ROW_ALIGN;

/// Sets of accumulators each list's terms are dealt to, round-robin, and added at the
/// end: independent multiply-adds to keep in flight (one takes about four cycles, and
/// two issue per cycle). The same on every instruction set, so that each float of a sum
/// sees the same operations in the same order on AVX-512 and on AVX2: their results are
/// the same bits.
const SETS: usize = 2;

/// [`sum_rows`] a block of columns at a time, up to six vectors (two sets of them, twelve
/// accumulators, fit AVX2's sixteen registers; a kernel row of 3×3 over 32 channels is
/// six AVX-512 vectors or twice six AVX2 ones), so that a term's index and broadcast serve
/// several multiply-adds. Wide stretches ([`WIDE_STRETCH`] floats or more) are taken one at a
/// time, every list summing its part of one before the next, so that the rows' stretch
/// stays in the L1 cache; narrow ones (a first layer's, 16 floats) eight at a time, so
/// that a block still holds several vectors. A float of the output gets its terms in an
/// order set by the stretches and the lists alone, whatever the vector width: stretch by
/// stretch, then list by list (wide), or list by list (narrow).
///
/// # Safety
/// As [`sum_rows`] asserts, and the CPU runs `V`.
#[inline(always)]
unsafe fn sum_rows_on<V: Vector, T: Terms>(lists: &Lists<T>, rows: &Rows, out: &mut [f32]) {
    let per_stretch = rows.slot / V::LANES;
    // NOTE: chosen by floats, not vectors, so that every instruction set takes the same
    // path and adds in the same order.
    if rows.slot >= WIDE_STRETCH {
        for &(src, dst) in rows.stretches {
            for (bounds, &o) in lists.starts.windows(2).zip(lists.outs) {
                let terms = bounds[0] as usize..bounds[1] as usize;
                let mut v = 0;
                while v < per_stretch && !terms.is_empty() {
                    let at = |i: usize| {
                        (
                            src + (v + i) * V::LANES,
                            dst + o as usize + (v + i) * V::LANES,
                        )
                    };
                    // SAFETY: forwarded; every vector lies within its stretch.
                    v += unsafe {
                        widest_block::<V, T>(
                            lists,
                            terms.clone(),
                            rows.source,
                            per_stretch - v,
                            at,
                            out,
                        )
                    };
                }
            }
        }
        return;
    }
    // Narrow stretches, a few at a time: every vector's place, worked out once.
    const STRETCHES: usize = 8;
    for stretches in rows.stretches.chunks(STRETCHES) {
        let mut places = [(0, 0); WIDE_STRETCH / 4 * STRETCHES];
        let vectors = stretches.len() * per_stretch;
        for (i, place) in places[..vectors].iter_mut().enumerate() {
            let ((src, dst), c) = (stretches[i / per_stretch], i % per_stretch * V::LANES);
            *place = (src + c, dst + c);
        }
        for (bounds, &o) in lists.starts.windows(2).zip(lists.outs) {
            let terms = bounds[0] as usize..bounds[1] as usize;
            let mut v = 0;
            while v < vectors && !terms.is_empty() {
                let at = |i: usize| (places[v + i].0, places[v + i].1 + o as usize);
                // SAFETY: likewise.
                v += unsafe {
                    widest_block::<V, T>(lists, terms.clone(), rows.source, vectors - v, at, out)
                };
            }
        }
    }
}

/// The widest [`block`] of at most `left` vectors, vector `i` at `at(i)`; returns how
/// many vectors it took. Six for the networks' wide kernel rows and three for their
/// first layers' narrow ones (AVX-512); one covers what is left of any other shape.
///
/// # Safety
/// As [`sum_rows_on`], with those vectors within the stretches.
#[inline(always)]
unsafe fn widest_block<V: Vector, T: Terms>(
    lists: &Lists<T>,
    terms: Range<usize>,
    source: &[f32],
    left: usize,
    at: impl Fn(usize) -> (usize, usize),
    out: &mut [f32],
) -> usize {
    use std::array::from_fn as from;
    // SAFETY: forwarded.
    unsafe {
        match left {
            6.. => block::<V, T, 6>(&lists.terms, terms, source, from(at), out),
            3.. => block::<V, T, 3>(&lists.terms, terms, source, from(at), out),
            _ => block::<V, T, 1>(&lists.terms, terms, source, from(at), out),
        }
    }
}

/// `out[dst_v] += Σ_{i in terms} g_i · source[offset_i + src_v]` for each vector `v` at
/// `at[v] = (src_v, dst_v)`; returns `VECS`.
///
/// # Safety
/// As [`sum_rows_on`], with those vectors within the stretches.
#[inline(always)]
unsafe fn block<V: Vector, T: Terms, const VECS: usize>(
    list: &T,
    terms: Range<usize>,
    source: &[f32],
    at: [(usize, usize); VECS],
    out: &mut [f32],
) -> usize {
    let (source, out) = (source.as_ptr(), out.as_mut_ptr());
    // SAFETY (all below): every row and output was checked to lie in bounds.
    let add = |acc: &mut [V; VECS], i: usize| unsafe {
        let (g, offset) = list.term(i);
        let (row, g) = (source.add(offset), V::splat(g));
        for (a, &(src, _)) in acc.iter_mut().zip(&at) {
            *a = V::mul_add(g, V::load(row.add(src)), *a);
        }
    };
    let mut acc = [[unsafe { V::zero() }; VECS]; SETS];
    let dealt = terms.start + terms.len() / SETS * SETS;
    for i in (terms.start..dealt).step_by(SETS) {
        for (set, acc) in acc.iter_mut().enumerate() {
            add(acc, i + set);
        }
    }
    for i in dealt..terms.end {
        add(&mut acc[0], i);
    }
    for (v, &(_, dst)) in at.iter().enumerate() {
        unsafe {
            let at = out.add(dst);
            let total = acc.iter().fold(V::load(at), |total, acc| total.add(acc[v]));
            total.store(at);
        }
    }
    VECS
}

/// The vector operations [`block`] needs, for each instruction set.
///
/// # Safety
/// Each method needs its type's CPU features; the pointers must hold `LANES` floats.
trait Vector: Copy {
    const LANES: usize;
    unsafe fn zero() -> Self;
    unsafe fn splat(v: f32) -> Self;
    unsafe fn load(p: *const f32) -> Self;
    unsafe fn store(self, p: *mut f32);
    /// `a·b + c`, fused where the instruction set has it.
    unsafe fn mul_add(a: Self, b: Self, c: Self) -> Self;
    unsafe fn add(self, b: Self) -> Self;
}

#[cfg(target_arch = "x86_64")]
mod vectors {
    use super::Vector;
    use std::arch::x86_64::*;

    /// `Vector` for an x86 vector type by its intrinsics.
    macro_rules! x86_vector {
        ($t:ty, $lanes:expr, $zero:ident, $splat:ident, $load:ident, $store:ident, $fmadd:ident, $add:ident) => {
            impl Vector for $t {
                const LANES: usize = $lanes;
                #[inline(always)]
                unsafe fn zero() -> Self {
                    unsafe { $zero() }
                }
                #[inline(always)]
                unsafe fn splat(v: f32) -> Self {
                    unsafe { $splat(v) }
                }
                #[inline(always)]
                unsafe fn load(p: *const f32) -> Self {
                    unsafe { $load(p) }
                }
                #[inline(always)]
                unsafe fn store(self, p: *mut f32) {
                    unsafe { $store(p, self) }
                }
                #[inline(always)]
                unsafe fn mul_add(a: Self, b: Self, c: Self) -> Self {
                    unsafe { $fmadd(a, b, c) }
                }
                #[inline(always)]
                unsafe fn add(self, b: Self) -> Self {
                    unsafe { $add(self, b) }
                }
            }
        };
    }

    #[rustfmt::skip]
    x86_vector!(__m512, 16, _mm512_setzero_ps, _mm512_set1_ps, _mm512_loadu_ps, _mm512_storeu_ps,
        _mm512_fmadd_ps, _mm512_add_ps);
    #[rustfmt::skip]
    x86_vector!(__m256, 8, _mm256_setzero_ps, _mm256_set1_ps, _mm256_loadu_ps, _mm256_storeu_ps,
        _mm256_fmadd_ps, _mm256_add_ps);
}

/// Four floats, plain multiplies and adds: the portable path's vector.
#[derive(Clone, Copy)]
struct Quad([f32; 4]);

impl Vector for Quad {
    const LANES: usize = 4;
    #[inline(always)]
    unsafe fn zero() -> Self {
        Quad([0.0; 4])
    }
    #[inline(always)]
    unsafe fn splat(v: f32) -> Self {
        Quad([v; 4])
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        Quad(unsafe { p.cast::<[f32; 4]>().read_unaligned() })
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        unsafe { p.cast::<[f32; 4]>().write_unaligned(self.0) }
    }
    #[inline(always)]
    unsafe fn mul_add(a: Self, b: Self, c: Self) -> Self {
        Quad(std::array::from_fn(|i| a.0[i] * b.0[i] + c.0[i]))
    }
    #[inline(always)]
    unsafe fn add(self, b: Self) -> Self {
        Quad(std::array::from_fn(|i| self.0[i] + b.0[i]))
    }
}

#[cfg(target_arch = "x86_64")]
mod avx {
    use super::super::matmul::transpose8;
    use std::arch::x86_64::*;

    /// See [`super::planes_to_pixels`], by 8 × 8 blocks; `channels` a multiple of 8.
    ///
    /// # Safety
    /// In bounds as that function asserts, and the CPU has AVX.
    #[target_feature(enable = "avx")]
    pub unsafe fn planes_to_pixels(
        planes: *const f32,
        image: &[u32],
        channels: usize,
        pixels: *mut f32,
    ) {
        let len = image.len();
        let full = len - len % 8;
        // SAFETY (all below): in bounds by the contract.
        for c0 in (0..channels).step_by(8) {
            for i0 in (0..full).step_by(8) {
                let rows = std::array::from_fn(|r| unsafe {
                    _mm256_loadu_ps(planes.add((c0 + r) * len + i0))
                });
                for (j, col) in unsafe { transpose8(rows) }.into_iter().enumerate() {
                    unsafe { _mm256_storeu_ps(pixels.add(image[i0 + j] as usize + c0), col) };
                }
            }
            for (i, &at) in image.iter().enumerate().skip(full) {
                for r in 0..8 {
                    unsafe { *pixels.add(at as usize + c0 + r) = *planes.add((c0 + r) * len + i) };
                }
            }
        }
    }

    /// See [`super::pixels_to_planes`], by 8 × 8 blocks; `channels` a multiple of 8.
    ///
    /// # Safety
    /// In bounds as that function asserts, and the CPU has AVX.
    #[target_feature(enable = "avx")]
    pub unsafe fn pixels_to_planes(
        pixels: *const f32,
        image: &[u32],
        channels: usize,
        planes: *mut f32,
    ) {
        let len = image.len();
        let full = len - len % 8;
        // SAFETY (all below): in bounds by the contract.
        for c0 in (0..channels).step_by(8) {
            for i0 in (0..full).step_by(8) {
                let rows = std::array::from_fn(|r| unsafe {
                    _mm256_loadu_ps(pixels.add(image[i0 + r] as usize + c0))
                });
                for (j, col) in unsafe { transpose8(rows) }.into_iter().enumerate() {
                    unsafe { _mm256_storeu_ps(planes.add((c0 + j) * len + i0), col) };
                }
            }
            for (i, &at) in image.iter().enumerate().skip(full) {
                for r in 0..8 {
                    unsafe { *planes.add((c0 + r) * len + i) = *pixels.add(at as usize + c0 + r) };
                }
            }
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::{
        conv2d_backward_input, conv2d_backward_weight, conv2d_relu_pool_forward,
        max_pool2d_backward,
    };
    use proptest::prelude::*;
    use rand::{rngs::StdRng, Rng, SeedableRng};

    fn random(len: usize, seed: u64) -> Vec<f32> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..len).map(|_| rng.random_range(-1.0..1.0)).collect()
    }

    fn params(s: [usize; 9]) -> Conv2dParams {
        Conv2dParams::new(s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], s[8]).unwrap()
    }

    /// `[grad_x, grad_weight, grad_bias]` of the block, by these kernels.
    fn fused(x: &[f32], w: &[f32], g: &[f32], argmax: &[u32], p: &Conv2dParams) -> [Vec<f32>; 3] {
        // NaN-filled: each kernel must write its outputs whole.
        let mut got = [p.input_len(), p.weight_len(), p.c_out as usize].map(|n| vec![f32::NAN; n]);
        conv2d_pool_backward_input(g, argmax, w, &mut got[0], p).unwrap();
        let [_, gw, gb] = &mut got;
        conv2d_pool_backward_weight(x, g, argmax, gw, gb, p).unwrap();
        got
    }

    /// The same by the unfused kernels: `max_pool2d_backward` makes the conv's
    /// gradient, which the dense conv backwards and `bias_backward` read.
    fn unfused(x: &[f32], w: &[f32], g: &[f32], argmax: &[u32], p: &Conv2dParams) -> [Vec<f32>; 3] {
        let mut dz = vec![f32::NAN; p.output_len()];
        max_pool2d_backward(g, argmax, &mut dz, &p.pool().unwrap()).unwrap();
        let plane = (p.h_out * p.w_out) as usize;
        let axis = AxisParams::new(p.n as usize, p.c_out as usize, plane).unwrap();
        let mut want = [p.input_len(), p.weight_len(), p.c_out as usize].map(|n| vec![0.0; n]);
        conv2d_backward_input(&dz, w, &mut want[0], p).unwrap();
        conv2d_backward_weight(x, &dz, &mut want[1], p).unwrap();
        bias_backward(&dz, &mut want[2], &axis).unwrap();
        want
    }

    /// A real forward's argmax, and a pooled gradient with the ReLU's zeros in it.
    fn block(p: &Conv2dParams, seed: u64) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<u32>) {
        let (x, w) = (
            random(p.input_len(), seed),
            random(p.weight_len(), seed + 1),
        );
        let bias = random(p.c_out as usize, seed + 2);
        let (mut out, mut argmax) = (vec![0.0; p.pooled_len()], vec![0u32; p.pooled_len()]);
        conv2d_relu_pool_forward(&x, &w, &bias, &mut out, &mut argmax, p).unwrap();
        let g = random(p.pooled_len(), seed + 3);
        let g = g
            .iter()
            .zip(&out)
            .map(|(&g, &o)| if o > 0.0 { g } else { 0.0 })
            .collect();
        (x, w, g, argmax)
    }

    /// Equal up to rounding: within `1e-5` of the sum of the terms' magnitudes (the
    /// unfused kernels run on `|x|`, `|w|`, `|g|`).
    fn check(p: &Conv2dParams, seed: u64) {
        let (x, w, g, argmax) = block(p, seed);
        let got = fused(&x, &w, &g, &argmax, p);
        let want = unfused(&x, &w, &g, &argmax, p);
        let abs = |v: &[f32]| v.iter().map(|v| v.abs()).collect::<Vec<_>>();
        let scale = unfused(&abs(&x), &abs(&w), &abs(&g), &argmax, p);
        for (what, ((got, want), scale)) in ["grad_x", "grad_weight", "grad_bias"]
            .iter()
            .zip(got.iter().zip(&want).zip(&scale))
        {
            for (i, ((&a, &b), &s)) in got.iter().zip(want).zip(scale).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-5 * s + f32::MIN_POSITIVE,
                    "{what}[{i}]: {a} against {b} (magnitude {s}), {p:?}"
                );
            }
        }
    }

    #[test]
    fn hand_computed_one_winner() {
        // A 3×3 image of 1..9 under a 2×2 kernel of 1..4: out is 2×2, [37 47; 67 77]
        // (see conv2d's test), pooled to its max 77 at pixel 3 (bottom right). A pooled
        // gradient of 2 flows to that window alone, x[1..3, 1..3] = [5 6; 8 9]:
        // grad_weight = 2·[5 6; 8 9], grad_bias = 2, grad_x = 2·w on that window.
        let p = params([1, 1, 3, 3, 1, 2, 2, 1, 0]);
        let x: Vec<f32> = (1..=9).map(|v| v as f32).collect();
        let w = [1.0, 2.0, 3.0, 4.0];
        let (mut out, mut argmax) = ([0.0], [0u32]);
        conv2d_relu_pool_forward(&x, &w, &[0.0], &mut out, &mut argmax, &p).unwrap();
        assert_eq!((out, argmax), ([77.0], [3]));
        let [gx, gw, gb] = fused(&x, &w, &[2.0], &argmax, &p);
        assert_eq!(gw, [10.0, 12.0, 16.0, 18.0]);
        assert_eq!(gb, [2.0]);
        assert_eq!(gx, [0.0, 0.0, 0.0, 0.0, 2.0, 4.0, 0.0, 6.0, 8.0]);
    }

    fn conv_shape() -> impl Strategy<Value = Conv2dParams> {
        let sizes = (1..=20usize, 1..=4usize, 2..=9usize, 2..=9usize, 1..=5usize);
        let kernel = (1..=4usize, 1..=4usize, 1..=3usize, 0..=2usize);
        (sizes, kernel).prop_filter_map("the block must fit the padded image", |(s, k)| {
            let p = Conv2dParams::new(s.0, s.1, s.2, s.3, s.4, k.0, k.1, k.2, k.3).ok()?;
            p.pool().is_ok().then_some(p)
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        // Up to 20 samples: several partial weight gradients, the last one short.
        #[test]
        fn the_kernels_are_the_unfused_ones_up_to_rounding(p in conv_shape(), seed in any::<u64>()) {
            check(&p, seed);
        }
    }

    #[test]
    fn the_kernels_are_the_unfused_ones_on_the_networks_shapes() {
        for (p, seed) in [
            (params([64, 1, 28, 28, 32, 3, 3, 1, 0]), 1), // teacher-cnn's blocks
            (params([64, 32, 13, 13, 64, 3, 3, 1, 0]), 2),
            (params([9, 1, 28, 28, 32, 3, 3, 1, 1]), 3), // teacher-cnn-large's, fewer samples
            (params([9, 32, 14, 14, 64, 3, 3, 1, 1]), 4),
            (params([67, 3, 6, 7, 4, 1, 1, 1, 0]), 5), // pointwise, groups of 9
            // Slots of 32 and 48 floats, 16 and 24 channels (the AVX transposes), a
            // slot past a 33-channel span, stride 2 with padding.
            (params([3, 8, 9, 9, 5, 3, 3, 1, 0]), 6),
            (params([3, 16, 9, 8, 5, 3, 3, 1, 1]), 7),
            (params([2, 24, 11, 11, 6, 3, 3, 2, 1]), 8),
            (params([2, 33, 7, 9, 3, 3, 2, 1, 0]), 9),
        ] {
            check(&p, seed);
        }
    }

    #[test]
    fn the_results_do_not_depend_on_the_thread_count() {
        let p = params([37, 32, 13, 13, 64, 3, 3, 1, 0]);
        let (x, w, g, argmax) = block(&p, 7);
        let on = |threads| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| fused(&x, &w, &g, &argmax, &p))
        };
        let bits = |v: [Vec<f32>; 3]| v.map(|v| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>());
        assert_eq!(bits(on(1)), bits(on(3)));
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn sums_of_rows_are_the_same_bits_on_every_vector_width_with_fma() {
        // Lists whose outputs overlap (as the input gradient's windows do), over wide
        // stretches (6 or 12 vectors, two blocks on AVX2) and narrow ones (one or two,
        // taken together), against sums in f64.
        let mut rng = StdRng::seed_from_u64(9);
        for (span, stretches) in [
            (96, vec![(0, 0), (40, 200), (90, 400)]),
            (48, vec![(0, 0), (40, 20), (90, 45)]),
            (32, vec![(0, 0), (40, 20), (90, 45)]),
            (16, vec![(0, 0), (20, 7), (45, 30)]),
        ] {
            let source = random(2000, 1);
            let lists = 40;
            let mut terms = vec![];
            let mut starts = vec![0u32];
            for _ in 0..lists {
                for _ in 0..rng.random_range(0..30) {
                    let (g, offset) = (rng.random_range(-1.0..1.0), rng.random_range(0..1400));
                    terms.push(Term { g, offset });
                }
                starts.push(terms.len() as u32);
            }
            let outs: Vec<u32> = (0..lists).map(|i| i * 13).collect();
            let rows = Rows {
                source: &source,
                stretches: &stretches,
                slot: span,
            };
            let list = Lists {
                terms: &terms[..],
                starts: &starts,
                outs: &outs,
            };
            let start = random(1200, 2);
            let mut want: Vec<f64> = start.iter().map(|&v| v as f64).collect();
            for (i, bounds) in starts.windows(2).enumerate() {
                for t in &terms[bounds[0] as usize..bounds[1] as usize] {
                    for &(src, dst) in &stretches {
                        for c in 0..span {
                            let v = source[t.offset as usize + src + c];
                            want[outs[i] as usize + dst + c] += t.g as f64 * v as f64;
                        }
                    }
                }
            }
            let run = |isa| {
                let mut out = start.clone();
                sum_rows_with(isa, &list, &rows, &mut out);
                for (&got, &want) in out.iter().zip(&want) {
                    assert!(
                        (got as f64 - want).abs() <= 1e-4,
                        "{isa}: {got} against {want}"
                    );
                }
                out
            };
            run(Isa::Portable); // no fused multiply-add: close, not the same bits
            let fused: Vec<Vec<f32>> = [Isa::Avx512, Isa::Avx2]
                .into_iter()
                .filter(|isa| isa.supported())
                .map(run)
                .collect();
            if fused.len() < 2 {
                eprintln!("this CPU lacks AVX-512 or AVX2: their sums not compared");
            }
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            for out in &fused {
                assert_eq!(bits(out), bits(&fused[0]), "span {span}");
            }
        }
    }

    #[test]
    fn a_padded_image_past_32_bits_is_too_large() {
        // A huge padding, kept to a 2×2 output by a huge stride: valid params whose
        // padded copy would not fit the kernels' 32-bit offsets.
        let (stride, pad) = (1 << 31, (1 << 31) - 1);
        let p = params([1, 1, 2, 2, 1, 1, 1, stride, pad]);
        let (x, w, g, argmax) = ([0.0; 4], [1.0], [1.0], [0u32]);
        let (mut gx, mut gw, mut gb) = ([0.0; 4], [0.0], [0.0]);
        let too_large = |r: Result<(), KernelError>, op: &str| {
            assert!(
                matches!(r, Err(KernelError::TooLarge { op: o, .. }) if o == op),
                "{r:?}"
            )
        };
        too_large(
            conv2d_pool_backward_input(&g, &argmax, &w, &mut gx, &p),
            "conv2d_pool_backward_input",
        );
        too_large(
            conv2d_pool_backward_weight(&x, &g, &argmax, &mut gw, &mut gb, &p),
            "conv2d_pool_backward_weight",
        );
    }

    #[test]
    fn an_argmax_outside_its_plane_is_an_error() {
        let p = params([2, 1, 5, 5, 2, 2, 2, 1, 0]); // 4×4 planes pooled to 2×2
        let (x, w, g) = (
            random(p.input_len(), 1),
            random(p.weight_len(), 2),
            random(16, 3),
        );
        let mut argmax = vec![0u32; 16];
        argmax[5] = 16;
        let named = |op| KernelError::IndexOutOfRange {
            op,
            arg: "argmax",
            index: 16,
            bound: 16,
        };
        let (mut gx, mut gw, mut gb) = (vec![0.0; 50], vec![0.0; 8], vec![0.0; 2]);
        assert_eq!(
            conv2d_pool_backward_input(&g, &argmax, &w, &mut gx, &p),
            Err(named("conv2d_pool_backward_input"))
        );
        assert_eq!(
            conv2d_pool_backward_weight(&x, &g, &argmax, &mut gw, &mut gb, &p),
            Err(named("conv2d_pool_backward_weight"))
        );
    }
}
