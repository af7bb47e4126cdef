//! Elementwise arithmetic, the per-channel bias and sums over an axis.
//!
//! ```text
//! add:                a, b, out: (len)
//! scale, axpy:        x, out, y: (len)
//! bias_forward:       x, out: (outer, channels, inner)   bias: (channels)
//! sum_axis:           x: (outer, channels, inner)        out: (outer, inner)
//! gather_rows:        x: (src_rows, cols)  index: (rows)  out: (rows, cols)
//! ```
//!
//! Large inputs are cut into fixed chunks of `CHUNK` elements, one rayon task each;
//! inputs of at most one chunk run serially on the calling thread, so a 10-element bias
//! never pays for a thread hand-off. Every reduction adds in an order fixed by the
//! shapes alone, so results do not depend on the number of threads.

use crate::error::{check_indices, words, words_mut, KernelError};
use crate::params::*;
use rayon::prelude::*;

/// Elements per rayon task. A task of 16 K elements (64 KiB) takes microseconds, well
/// above rayon's scheduling cost, and a batch-64 activation still splits into dozens of
/// tasks to share between cores.
pub(crate) const CHUNK: usize = 1 << 14;

/// Runs `f(start, chunk)` over `out` in chunks of [`CHUNK`] elements, where `start` is
/// the flat index of the chunk's first element: in parallel when there is more than one
/// chunk, serially otherwise.
pub(crate) fn par_chunked(out: &mut [f32], f: impl Fn(usize, &mut [f32]) + Sync + Send) {
    par_chunked_by(out, CHUNK, f);
}

/// [`par_chunked`] with chunks of `chunk` elements.
pub(crate) fn par_chunked_by(
    out: &mut [f32],
    chunk: usize,
    f: impl Fn(usize, &mut [f32]) + Sync + Send,
) {
    if out.len() <= chunk {
        f(0, out);
    } else {
        out.par_chunks_mut(chunk)
            .enumerate()
            .for_each(|(i, out)| f(i * chunk, out));
    }
}

/// A sum with eight running partial sums: the adds vectorize (a single accumulator
/// would wait on each add in turn), and the order is fixed, so the result is
/// deterministic and a little more accurate than a left-to-right sum.
pub(crate) fn sum8(xs: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let blocks = xs.chunks_exact(8);
    let tail = blocks.remainder();
    for block in blocks {
        for (a, &x) in acc.iter_mut().zip(block) {
            *a += x;
        }
    }
    let mut sum = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for &x in tail {
        sum += x;
    }
    sum
}

/// `out = a + b`.
pub fn add(
    a: &[f32],
    b: &[f32],
    out: &mut [f32],
    p: &ElementwiseParams,
) -> Result<(), KernelError> {
    zip_with("add", a, b, out, p, |a, b| a + b)
}

/// `out = alpha * x`.
pub fn scale(x: &[f32], out: &mut [f32], p: &ElementwiseParams) -> Result<(), KernelError> {
    const OP: &str = "scale";
    let (len, alpha) = (p.elements(), p.alpha);
    let (x, out) = (words(OP, "x", x, len)?, words_mut(OP, "out", out, len)?);
    par_chunked(out, |start, out| {
        for (o, &x) in out.iter_mut().zip(&x[start..]) {
            *o = alpha * x;
        }
    });
    Ok(())
}

/// `y += alpha * x`.
pub fn axpy(x: &[f32], y: &mut [f32], p: &ElementwiseParams) -> Result<(), KernelError> {
    const OP: &str = "axpy";
    let (len, alpha) = (p.elements(), p.alpha);
    let (x, y) = (words(OP, "x", x, len)?, words_mut(OP, "y", y, len)?);
    par_chunked(y, |start, y| {
        for (y, &x) in y.iter_mut().zip(&x[start..]) {
            *y += alpha * x;
        }
    });
    Ok(())
}

fn zip_with(
    op: &'static str,
    a: &[f32],
    b: &[f32],
    out: &mut [f32],
    p: &ElementwiseParams,
    f: impl Fn(f32, f32) -> f32 + Sync,
) -> Result<(), KernelError> {
    let len = p.elements();
    let (a, b) = (words(op, "a", a, len)?, words(op, "b", b, len)?);
    let out = words_mut(op, "out", out, len)?;
    par_chunked(out, |start, out| {
        for ((o, &a), &b) in out.iter_mut().zip(&a[start..]).zip(&b[start..]) {
            *o = f(a, b);
        }
    });
    Ok(())
}

/// Calls `f(start, row, col, segment)` for the pieces of a flat chunk of a row-major
/// `(rows, width)` array that lie within one row: `start` is the segment's flat index,
/// `col` its first column.
fn for_row_segments(
    chunk: &mut [f32],
    start: usize,
    width: usize,
    mut f: impl FnMut(usize, usize, usize, &mut [f32]),
) {
    // One division per chunk, not per segment: rows of 1 make a segment per element.
    if chunk.is_empty() {
        return; // NOTE: an empty tensor may have a zero `width`
    }
    let (mut flat, mut row, mut col, mut rest) = (start, start / width, start % width, chunk);
    while !rest.is_empty() {
        let (segment, tail) = rest.split_at_mut((width - col).min(rest.len()));
        let n = segment.len();
        f(flat, row, col, segment);
        (flat, row, col, rest) = (flat + n, row + 1, 0, tail);
    }
}

/// `out[o, c, i] = x[o, c, i] + bias[c]`.
pub fn bias_forward(
    x: &[f32],
    bias: &[f32],
    out: &mut [f32],
    p: &AxisParams,
) -> Result<(), KernelError> {
    const OP: &str = "bias_forward";
    let (channels, inner, len) = (p.channels as usize, p.inner as usize, p.len());
    let (x, bias) = (words(OP, "x", x, len)?, words(OP, "bias", bias, channels)?);
    let out = words_mut(OP, "out", out, len)?;
    par_chunked(out, |start, chunk| {
        if inner == 1 {
            // A linear layer's (outer, channels): add `bias` along each row.
            for_row_segments(chunk, start, channels, |flat, _, c, out| {
                for ((o, &x), &b) in out.iter_mut().zip(&x[flat..]).zip(&bias[c..]) {
                    *o = x + b;
                }
            });
            return;
        }
        for_row_segments(chunk, start, inner, |flat, row, _, out| {
            let b = bias[row % channels];
            for (o, &x) in out.iter_mut().zip(&x[flat..]) {
                *o = x + b;
            }
        });
    });
    Ok(())
}

// out[o, c, i] = x[o, c, i] + bias[c]  =>  dL/dbias[c] = Σ_{o, i} dL/dout[o, c, i]
/// `grad_bias[c] = Σ_{o, i} grad_out[o, c, i]`, overwriting `grad_bias`.
pub fn bias_backward(
    grad_out: &[f32],
    grad_bias: &mut [f32],
    p: &AxisParams,
) -> Result<(), KernelError> {
    const OP: &str = "bias_backward";
    let (outer, channels, inner, len) = (
        p.outer as usize,
        p.channels as usize,
        p.inner as usize,
        p.len(),
    );
    let grad_out = words(OP, "grad_out", grad_out, len)?;
    let grad_bias = words_mut(OP, "grad_bias", grad_bias, channels)?;
    // Each channel is summed by one task, rows in order of `o`: the same order serially.
    let channel_sum = |c: usize| -> f32 {
        let rows = (0..outer).map(|o| &grad_out[(o * channels + c) * inner..][..inner]);
        rows.fold(0.0, |sum, row| sum + sum8(row))
    };
    if len <= CHUNK {
        grad_bias
            .iter_mut()
            .enumerate()
            .for_each(|(c, g)| *g = channel_sum(c));
    } else {
        grad_bias
            .par_iter_mut()
            .enumerate()
            .for_each(|(c, g)| *g = channel_sum(c));
    }
    Ok(())
}

/// `out[o, i] = Σ_c x[o, c, i]`, overwriting `out`.
pub fn sum_axis(x: &[f32], out: &mut [f32], p: &AxisParams) -> Result<(), KernelError> {
    const OP: &str = "sum_axis";
    let (outer, channels, inner) = (p.outer as usize, p.channels as usize, p.inner as usize);
    let x = words(OP, "x", x, p.len())?;
    let out = words_mut(OP, "out", out, outer * inner)?;
    if channels == 0 {
        out.fill(0.0);
        return Ok(());
    }
    // A chunk of `out` holds CHUNK / channels elements, so that each task reads about
    // CHUNK values of `x` whatever the shape.
    let chunk = (CHUNK / channels).max(64);
    if inner == 1 {
        // Each output sums one contiguous row: vectorize along it.
        par_chunked_by(out, chunk, |start, out| {
            for (o, out) in (start..).zip(out) {
                *out = sum8(&x[o * channels..][..channels]);
            }
        });
        return Ok(());
    }
    // Each output element sums `channels` values `inner` apart: add whole rows of `x`,
    // in channel order.
    par_chunked_by(out, chunk, |start, out| {
        for_row_segments(out, start, inner, |_, o, i, sum| {
            let first = o * channels * inner + i;
            sum.copy_from_slice(&x[first..][..sum.len()]);
            for c in 1..channels {
                for (s, &x) in sum.iter_mut().zip(&x[first + c * inner..]) {
                    *s += x;
                }
            }
        });
    });
    Ok(())
}

// out[o, i] = Σ_c x[o, c, i]  =>  dL/dx[o, c, i] = dL/dout[o, i] for every c
/// `grad_x[o, c, i] = grad_out[o, i]`, overwriting `grad_x`.
pub fn sum_axis_backward(
    grad_out: &[f32],
    grad_x: &mut [f32],
    p: &AxisParams,
) -> Result<(), KernelError> {
    const OP: &str = "sum_axis_backward";
    let (outer, channels, inner) = (p.outer as usize, p.channels as usize, p.inner as usize);
    let grad_out = words(OP, "grad_out", grad_out, outer * inner)?;
    let grad_x = words_mut(OP, "grad_x", grad_x, p.len())?;
    par_chunked(grad_x, |start, chunk| {
        if inner == 1 {
            // Rows of `channels` copies of one value.
            for_row_segments(chunk, start, channels, |_, o, _, grad_x| {
                grad_x.fill(grad_out[o])
            });
            return;
        }
        for_row_segments(chunk, start, inner, |_, row, col, grad_x| {
            let o = row / channels;
            grad_x.copy_from_slice(&grad_out[o * inner + col..][..grad_x.len()]);
        });
    });
    Ok(())
}

/// `out[r] = x[index[r]]`, rows of `cols` values: a batch's rows of a table that lives
/// on the device (the teacher's logits for the whole training set).
///
/// An index `>= src_rows` is [`KernelError::IndexOutOfRange`] (the shader, which cannot
/// report one, writes zeros for it: the engine checks the indices before they go there).
pub fn gather_rows(
    x: &[f32],
    index: &[u32],
    out: &mut [f32],
    p: &GatherParams,
) -> Result<(), KernelError> {
    const OP: &str = "gather_rows";
    let (rows, cols, src_rows) = (p.rows as usize, p.cols as usize, p.src_rows as usize);
    let x = words(OP, "x", x, src_rows * cols)?;
    let index = words(OP, "index", index, rows)?;
    let out = words_mut(OP, "out", out, rows * cols)?;
    check_indices(OP, "index", index, src_rows)?;
    if cols == 0 {
        return Ok(());
    }
    for (out, &r) in out.chunks_exact_mut(cols).zip(index) {
        out.copy_from_slice(&x[r as usize * cols..][..cols]);
    }
    Ok(())
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

    /// A sum of `n` terms of size <= 1 rounds within about n·2⁻²⁴ of the exact one.
    fn assert_sums_close(got: &[f32], want: &[f64], terms: usize) {
        let tol = 1e-6 * (1.0 + terms as f64);
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            assert!((g as f64 - w).abs() <= tol, "[{i}]: {g} vs {w}");
        }
    }

    #[test]
    fn bias_and_sum_axis_by_hand() {
        // x: (outer 2, channels 3, inner 2) = 0, 1, ..., 11; bias = [10, 20, 30].
        let x: Vec<f32> = (0..12).map(|v| v as f32).collect();
        let p = AxisParams::new(2, 3, 2).unwrap();
        let mut out = vec![0.0; 12];
        bias_forward(&x, &[10.0, 20.0, 30.0], &mut out, &p).unwrap();
        assert_eq!(
            out,
            [10., 11., 22., 23., 34., 35., 16., 17., 28., 29., 40., 41.]
        );
        // grad_bias[c] adds both inner values of both outers: channel 0 holds x = 0, 1
        // (outer 0) and 6, 7 (outer 1): 14; channel 1: 2+3+8+9 = 22; channel 2: 30.
        let mut grad_bias = vec![9.0; 3];
        bias_backward(&x, &mut grad_bias, &p).unwrap();
        assert_eq!(grad_bias, [14.0, 22.0, 30.0]);
        // out[o, i] adds the channels: outer 0 is [0+2+4, 1+3+5] = [6, 9], outer 1 is
        // [6+8+10, 7+9+11] = [24, 27].
        let mut sums = vec![9.0; 4];
        sum_axis(&x, &mut sums, &p).unwrap();
        assert_eq!(sums, [6.0, 9.0, 24.0, 27.0]);
        let mut grad_x = vec![9.0; 12];
        sum_axis_backward(&[1.0, 2.0, 3.0, 4.0], &mut grad_x, &p).unwrap();
        assert_eq!(grad_x, [1., 2., 1., 2., 1., 2., 3., 4., 3., 4., 3., 4.]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        // Lengths up to three chunks cover the serial and the parallel paths.
        #[test]
        fn elementwise_matches_reference(len in 0..3 * CHUNK, alpha in -2.0f32..2.0, seed in any::<u64>()) {
            let (a, b) = (random(len, seed), random(len, seed + 1));
            let p = ElementwiseParams::with_alpha(len, alpha).unwrap();
            let mut out = vec![f32::NAN; len];
            add(&a, &b, &mut out, &p).unwrap();
            prop_assert!(out.iter().enumerate().all(|(i, &o)| o == a[i] + b[i]));
            scale(&a, &mut out, &p).unwrap();
            prop_assert!(out.iter().enumerate().all(|(i, &o)| o == alpha * a[i]));
            let mut y = b.clone();
            axpy(&a, &mut y, &p).unwrap();
            prop_assert!(y.iter().enumerate().all(|(i, &y)| y == b[i] + alpha * a[i]));
        }

        // Shapes up to 60 x 40 x 40 = 96 000 values (several chunks), with 1s among them.
        #[test]
        fn axis_kernels_match_reference(
            outer in 1..60usize, channels in 1..40usize, inner in 1..40usize,
            ones in 0..8u32, seed in any::<u64>(),
        ) {
            // Bit i of `ones` collapses one axis to 1: inner = 1 is a linear layer's bias.
            let one = |i: u32, v: usize| if ones >> i & 1 == 1 { 1 } else { v };
            check_axis_kernels(&AxisParams::new(one(0, outer), one(1, channels), one(2, inner)).unwrap(), seed);
        }
    }

    #[test]
    fn axis_kernels_match_reference_on_large_shapes() {
        // Several chunks with rows of 1 (a linear layer's bias over a big batch), one
        // outer row wider than a chunk, and a conv output.
        for (i, [outer, channels, inner]) in
            [[700, 37, 1], [3, 7000, 1], [1, 3, 9000], [64, 32, 676]]
                .into_iter()
                .enumerate()
        {
            check_axis_kernels(&AxisParams::new(outer, channels, inner).unwrap(), i as u64);
        }
    }

    fn check_axis_kernels(p: &AxisParams, seed: u64) {
        let (outer, channels, inner) = (p.outer as usize, p.channels as usize, p.inner as usize);
        let (x, bias) = (random(p.len(), seed), random(channels, seed + 1));
        let g = random(outer * inner, seed + 2);
        let (mut out, mut grad_x) = (vec![f32::NAN; p.len()], vec![f32::NAN; p.len()]);
        let (mut grad_bias, mut sums) = (vec![f32::NAN; channels], vec![f32::NAN; outer * inner]);
        bias_forward(&x, &bias, &mut out, p).unwrap();
        bias_backward(&x, &mut grad_bias, p).unwrap();
        sum_axis(&x, &mut sums, p).unwrap();
        sum_axis_backward(&g, &mut grad_x, p).unwrap();
        let (mut want_bias, mut want_sums) = (vec![0.0f64; channels], vec![0.0f64; outer * inner]);
        for (flat, &x) in x.iter().enumerate() {
            let (o, c, i) = (
                flat / (channels * inner),
                flat / inner % channels,
                flat % inner,
            );
            assert_eq!(out[flat], x + bias[c], "bias_forward {p:?} at {flat}");
            assert_eq!(
                grad_x[flat],
                g[o * inner + i],
                "sum_axis_backward {p:?} at {flat}"
            );
            want_bias[c] += x as f64;
            want_sums[o * inner + i] += x as f64;
        }
        assert_sums_close(&grad_bias, &want_bias, outer * inner);
        assert_sums_close(&sums, &want_sums, channels);
    }

    #[test]
    fn empty_inputs_leave_nothing_to_do() {
        let p = ElementwiseParams::with_alpha(0, 2.0).unwrap();
        add(&[], &[], &mut [], &p).unwrap();
        axpy(&[], &mut [], &p).unwrap();
        for [outer, channels, inner] in [[0, 3, 4], [2, 0, 4], [2, 3, 0]] {
            let p = AxisParams::new(outer, channels, inner).unwrap();
            bias_forward(&[], &vec![1.0; channels], &mut [], &p).unwrap();
            sum_axis_backward(&vec![1.0; outer * inner], &mut [], &p).unwrap();
            let mut grad_bias = vec![9.0; channels];
            bias_backward(&[], &mut grad_bias, &p).unwrap();
            assert!(grad_bias.iter().all(|&g| g == 0.0));
            let mut sums = vec![9.0; outer * inner];
            sum_axis(&[], &mut sums, &p).unwrap();
            assert!(sums.iter().all(|&s| s == 0.0));
        }
    }

    #[test]
    fn gather_rows_by_hand() {
        // x: 3 rows of 2 = [[0, 1], [2, 3], [4, 5]]; index [2, 0, 2] picks rows 2, 0, 2.
        let x: Vec<f32> = (0..6).map(|v| v as f32).collect();
        let mut out = vec![f32::NAN; 6];
        gather_rows(
            &x,
            &[2, 0, 2],
            &mut out,
            &GatherParams::new(3, 2, 3).unwrap(),
        )
        .unwrap();
        assert_eq!(out, [4.0, 5.0, 0.0, 1.0, 4.0, 5.0]);
        gather_rows(&x, &[], &mut [], &GatherParams::new(0, 2, 3).unwrap()).unwrap();
    }

    #[test]
    fn gather_rows_refuses_an_index_past_the_table() {
        let mut out = [7.0; 2];
        let p = GatherParams::new(1, 2, 3).unwrap();
        let err = gather_rows(&[0.0; 6], &[3], &mut out, &p).unwrap_err();
        assert_eq!(
            err.to_string(),
            "gather_rows: `index` holds 3, every value must be below 3"
        );
        assert_eq!(out, [7.0; 2], "nothing written");
    }

    #[test]
    fn sum8_adds_every_element() {
        for len in 0..20 {
            let x: Vec<f32> = (1..=len).map(|v| v as f32).collect();
            assert_eq!(sum8(&x), (len * (len + 1) / 2) as f32);
        }
    }
}
