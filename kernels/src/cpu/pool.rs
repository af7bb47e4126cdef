//! Max pooling forward (recording the argmax) and backward (see [`Pool2dParams`]).
//!
//! ```text
//! x, grad_x:              (n, c, h, w)
//! out, argmax, grad_out:  (n, c, h_out, w_out)    h_out = (h - kernel) / stride + 1
//! ```
//!
//! Every `(n, c)` plane is independent: one rayon task owns a run of planes of the
//! output (forward) or of the input gradient (backward).

use super::vmath::on_widest_vectors;
use crate::error::{words, words_mut, KernelError};
use crate::params::*;
use rayon::prelude::*;

/// Planes per rayon task: a 13×13 plane is only ~200 values, too little work alone.
fn planes_per_task(plane: usize) -> usize {
    (super::elementwise::CHUNK / plane.max(1)).max(1)
}

/// `out[n, c, oy, ox] = max` of the window at `(oy·stride, ox·stride)`, and `argmax` the
/// winner's index `row * w + col` within its plane.
///
/// NOTE: ties go to the first in row-major order (a later value must be strictly
/// greater to win); a NaN wins over any number and the first NaN is kept, so NaNs
/// propagate as in PyTorch.
pub fn max_pool2d_forward(
    x: &[f32],
    out: &mut [f32],
    argmax: &mut [u32],
    p: &Pool2dParams,
) -> Result<(), KernelError> {
    const OP: &str = "max_pool2d_forward";
    p.check()?;
    let (in_plane, out_plane) = ((p.h * p.w) as usize, (p.h_out * p.w_out) as usize);
    let x = words(OP, "x", x, p.input_len())?;
    let out = words_mut(OP, "out", out, p.output_len())?;
    let argmax = words_mut(OP, "argmax", argmax, p.output_len())?;
    let per_task = planes_per_task(in_plane);
    out.par_chunks_mut(per_task * out_plane)
        .zip(argmax.par_chunks_mut(per_task * out_plane))
        .zip(x.par_chunks(per_task * in_plane))
        .for_each(|((out, argmax), x)| {
            on_widest_vectors(
                #[inline(always)]
                || {
                    let planes = out.chunks_mut(out_plane).zip(argmax.chunks_mut(out_plane));
                    for ((out, argmax), x) in planes.zip(x.chunks(in_plane)) {
                        pool_plane(x, out, argmax, p);
                    }
                },
            )
        });
    Ok(())
}

/// One `(h, w)` plane. Each output row scans the window offsets `(ky, kx)` in row-major
/// order for all its outputs at once: every output keeps its own running maximum, so
/// the updates are independent selects rather than a loop-carried branch, which random
/// data would mispredict half the time.
#[inline(always)]
fn pool_plane(x: &[f32], out: &mut [f32], argmax: &mut [u32], p: &Pool2dParams) {
    if (p.kernel, p.stride) == (2, 2) {
        return pool_plane_2x2(x, out, argmax, p, |v| v);
    }
    let (w, k, s, w_out) = (
        p.w as usize,
        p.kernel as usize,
        p.stride as usize,
        p.w_out as usize,
    );
    let rows = out
        .chunks_exact_mut(w_out)
        .zip(argmax.chunks_exact_mut(w_out));
    for (oy, (out, argmax)) in rows.enumerate() {
        let top = oy * s * w;
        for (ox, (o, a)) in out.iter_mut().zip(argmax.iter_mut()).enumerate() {
            (*o, *a) = (x[top + ox * s], (top + ox * s) as u32);
        }
        let offsets = (0..k).flat_map(|ky| (0..k).map(move |kx| ky * w + kx));
        for offset in offsets.skip(1) {
            for (ox, (o, a)) in out.iter_mut().zip(argmax.iter_mut()).enumerate() {
                let i = top + offset + ox * s;
                let (v, best) = (x[i], *o);
                let take = takes(v, best);
                *o = if take { v } else { best };
                *a = if take { i as u32 } else { *a };
            }
        }
    }
}

/// Whether `v` replaces the running maximum `best`: `v > best`, or `v` is the first NaN
/// (a NaN `best` is never replaced). NOTE: `|` and `&`, not `||` and `&&`: without the
/// short circuit there is no branch to mispredict on random data, only selects.
#[inline(always)]
fn takes(v: f32, best: f32) -> bool {
    (v > best) | (v.is_nan() & !best.is_nan())
}

/// [`pool_plane`] for the 2×2 window at stride 2 of every network here, with the same
/// tie and NaN rules. Each output row is cut into blocks of `L` outputs (8, or 4 for
/// rows of 4 to 7), the last block overlapping the one before, so that a block is one
/// vector per window corner; [`pool_block`] says how. Each input is read as `map(x)`
/// (the conv block's bias and ReLU, applied here in the same pass; the identity for a
/// plain pool). Vectorised for the widest vectors when called inside
/// [`on_widest_vectors`](super::vmath::on_widest_vectors).
#[inline(always)]
pub(super) fn pool_plane_2x2(
    x: &[f32],
    out: &mut [f32],
    argmax: &mut [u32],
    p: &Pool2dParams,
    map: impl Fn(f32) -> f32 + Copy,
) {
    let (w, w_out) = (p.w as usize, p.w_out as usize);
    let rows = out
        .chunks_exact_mut(w_out)
        .zip(argmax.chunks_exact_mut(w_out));
    for (oy, (out, argmax)) in rows.enumerate() {
        let top = 2 * oy * w;
        let (r0, r1) = (&x[top..][..2 * w_out], &x[top + w..][..2 * w_out]);
        let row = (r0, r1, out, argmax, top as u32, w as u32);
        match w_out {
            8.. => pool_row::<8>(row, map),
            4.. => pool_row::<4>(row, map),
            _ => pool_row::<1>(row, map),
        }
    }
}

/// One output row's two input rows, its outputs and argmaxes, the plane index of its
/// first input and the plane's width.
type PoolRow<'a> = (&'a [f32], &'a [f32], &'a mut [f32], &'a mut [u32], u32, u32);

/// [`pool_block`] over one output row (`L` or more outputs) in blocks of `L`; the last
/// block starts at `w_out - L` and recomputes some outputs of the one before (the same
/// values again).
#[inline(always)]
fn pool_row<const L: usize>(
    (r0, r1, out, argmax, top, w): PoolRow,
    map: impl Fn(f32) -> f32 + Copy,
) {
    let w_out = out.len();
    let mut start = 0;
    loop {
        let at = start.min(w_out - L);
        pool_block::<L>(
            &r0[2 * at..][..2 * L],
            &r1[2 * at..][..2 * L],
            &mut out[at..][..L],
            &mut argmax[at..][..L],
            top + 2 * at as u32,
            w,
            map,
        );
        start += L;
        if start >= w_out {
            break;
        }
    }
}

/// `L` windows side by side: the four corners are split into arrays of `L` lanes (even
/// and odd columns of each row), then every lane runs the scalar rule of
/// [`pool_plane`] on its own, in row-major order (0,0), (0,1), (1,0), (1,1); with no
/// branch, only selects, that loop becomes vector compares and blends.
#[inline(always)]
fn pool_block<const L: usize>(
    r0: &[f32],
    r1: &[f32],
    out: &mut [f32],
    argmax: &mut [u32],
    first: u32,
    w: u32,
    map: impl Fn(f32) -> f32,
) {
    let corner =
        |row: &[f32], col: usize| -> [f32; L] { std::array::from_fn(|i| map(row[2 * i + col])) };
    let (mut best, mut at) = (corner(r0, 0), [0u32; L]);
    for (offset, v) in [
        (1, corner(r0, 1)),
        (w, corner(r1, 0)),
        (w + 1, corner(r1, 1)),
    ] {
        for i in 0..L {
            let take = takes(v[i], best[i]);
            best[i] = if take { v[i] } else { best[i] };
            at[i] = if take { offset } else { at[i] };
        }
    }
    for i in 0..L {
        out[i] = best[i];
        argmax[i] = first + 2 * i as u32 + at[i];
    }
}

// out[j] = x[argmax[j]]  =>  dL/dx[i] = Σ_{j : argmax[j] = i} dL/dout[j]
// (windows overlap when stride < kernel, so one input may win several windows)
/// `grad_x`, overwritten: each `grad_out` value added to its window's winner. An
/// `argmax` past its plane is [`KernelError::IndexOutOfRange`] (the shader skips it).
pub fn max_pool2d_backward(
    grad_out: &[f32],
    argmax: &[u32],
    grad_x: &mut [f32],
    p: &Pool2dParams,
) -> Result<(), KernelError> {
    const OP: &str = "max_pool2d_backward";
    p.check()?;
    let (in_plane, out_plane) = ((p.h * p.w) as usize, (p.h_out * p.w_out) as usize);
    let grad_out = words(OP, "grad_out", grad_out, p.output_len())?;
    let argmax = words(OP, "argmax", argmax, p.output_len())?;
    let grad_x = words_mut(OP, "grad_x", grad_x, p.input_len())?;
    let per_task = planes_per_task(in_plane);
    grad_x
        .par_chunks_mut(per_task * in_plane)
        .zip(grad_out.par_chunks(per_task * out_plane))
        .zip(argmax.par_chunks(per_task * out_plane))
        .try_for_each(|((grad_x, grad_out), argmax)| {
            grad_x.fill(0.0);
            let planes = grad_x.chunks_mut(in_plane).zip(grad_out.chunks(out_plane));
            // Within a plane the adds run in output order: deterministic.
            for ((grad_x, grad_out), argmax) in planes.zip(argmax.chunks(out_plane)) {
                for (&g, &i) in grad_out.iter().zip(argmax) {
                    let Some(x) = grad_x.get_mut(i as usize) else {
                        return Err(KernelError::IndexOutOfRange {
                            op: OP,
                            arg: "argmax",
                            index: i,
                            bound: in_plane,
                        });
                    };
                    *x += g;
                }
            }
            Ok(())
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::{rngs::StdRng, Rng, SeedableRng};

    /// Values drawn from `0..levels` when `levels > 0` (many ties), else from [-1, 1).
    fn random(len: usize, seed: u64, levels: u32) -> Vec<f32> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut draw = || match levels {
            0 => rng.random_range(-1.0..1.0),
            _ => rng.random_range(0..levels) as f32,
        };
        (0..len).map(|_| draw()).collect()
    }

    /// The naive loops: scan each window in row-major order keeping the first maximum,
    /// then route each output gradient to its winner.
    fn reference(x: &[f32], g: &[f32], p: &Pool2dParams) -> (Vec<f32>, Vec<u32>, Vec<f32>) {
        let [h, w, k, s, ho, wo] =
            [p.h, p.w, p.kernel, p.stride, p.h_out, p.w_out].map(|v| v as usize);
        let (mut out, mut argmax, mut gx) = (vec![], vec![], vec![0.0; x.len()]);
        for plane in 0..(p.n * p.c) as usize {
            for (oy, ox) in (0..ho).flat_map(|oy| (0..wo).map(move |ox| (oy, ox))) {
                let mut best = (oy * s) * w + ox * s;
                for (ky, kx) in (0..k).flat_map(|ky| (0..k).map(move |kx| (ky, kx))) {
                    let i = (oy * s + ky) * w + ox * s + kx;
                    if x[plane * h * w + i] > x[plane * h * w + best] {
                        best = i;
                    }
                }
                out.push(x[plane * h * w + best]);
                argmax.push(best as u32);
                gx[plane * h * w + best] += g[out.len() - 1];
            }
        }
        (out, argmax, gx)
    }

    fn run(x: &[f32], g: &[f32], p: &Pool2dParams) -> (Vec<f32>, Vec<u32>, Vec<f32>) {
        let (mut out, mut argmax) = (
            vec![f32::NAN; p.output_len()],
            vec![u32::MAX; p.output_len()],
        );
        let mut gx = vec![f32::NAN; p.input_len()];
        max_pool2d_forward(x, &mut out, &mut argmax, p).unwrap();
        max_pool2d_backward(g, &argmax, &mut gx, p).unwrap();
        (out, argmax, gx)
    }

    #[test]
    fn max_pool2d_ties_go_to_the_first_in_row_major_order() {
        // Four 2x2 windows of a 4x4 plane. Top-left: all equal, its first (index 0)
        // wins. Top-right: 5 at (0,3) and (1,2), row-major order puts index 3 first.
        // Bottom-left: a single maximum, 9 at index 8. Bottom-right: all equal, index 10.
        #[rustfmt::skip]
        let x = [
            1.0, 1.0, 0.0, 5.0,
            1.0, 1.0, 5.0, 0.0,
            9.0, 2.0, 7.0, 7.0,
            3.0, 4.0, 7.0, 7.0,
        ];
        let p = Pool2dParams::new(1, 1, 4, 4, 2, 2).unwrap();
        let (out, argmax, gx) = run(&x, &[1.0, 2.0, 3.0, 4.0], &p);
        assert_eq!(out, [1.0, 5.0, 9.0, 7.0]);
        assert_eq!(argmax, [0, 3, 8, 10]);
        let mut want = [0.0; 16];
        (want[0], want[3], want[8], want[10]) = (1.0, 2.0, 3.0, 4.0);
        assert_eq!(gx, want);
    }

    #[test]
    fn max_pool2d_overlapping_windows_add_their_gradients() {
        // 3x3 plane, 2x2 windows at stride 1: the centre (9) wins all four windows, so
        // its gradient is the sum of the four output gradients, 1 + 2 + 3 + 4 = 10.
        let x = [1.0, 2.0, 3.0, 4.0, 9.0, 5.0, 6.0, 7.0, 8.0];
        let p = Pool2dParams::new(1, 1, 3, 3, 2, 1).unwrap();
        let (out, argmax, gx) = run(&x, &[1.0, 2.0, 3.0, 4.0], &p);
        assert_eq!((out, argmax), (vec![9.0; 4], vec![4; 4]));
        assert_eq!(gx, [0.0, 0.0, 0.0, 0.0, 10.0, 0.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn max_pool2d_floors_odd_sizes_and_leaves_the_rest_without_gradient() {
        // 3x3 pooled 2x2 at stride 2 keeps only the top-left window (floor mode): the
        // last row and column never win.
        let x = [1.0, 2.0, 30.0, 4.0, 3.0, 40.0, 50.0, 60.0, 70.0];
        let p = Pool2dParams::new(1, 1, 3, 3, 2, 2).unwrap();
        let (out, argmax, gx) = run(&x, &[1.0], &p);
        assert_eq!((out, argmax), (vec![4.0], vec![3]));
        assert_eq!(gx, [0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn max_pool2d_propagates_nan() {
        let p = Pool2dParams::new(1, 1, 2, 2, 2, 2).unwrap();
        let (out, argmax, _) = run(&[1.0, f32::NAN, 3.0, f32::NAN], &[1.0], &p);
        assert!(out[0].is_nan());
        assert_eq!(argmax, [1]);
    }

    fn pool_shape() -> impl Strategy<Value = Pool2dParams> {
        (
            1..=3usize,
            1..=4usize,
            1..=11usize,
            1..=11usize,
            1..=4usize,
            1..=3usize,
        )
            .prop_filter_map("window must fit", |(n, c, h, w, k, s)| {
                Pool2dParams::new(n, c, h, w, k, s).ok()
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        #[test]
        fn max_pool2d_matches_reference(p in pool_shape(), seed in any::<u64>(), levels in 0..4u32) {
            let x = random(p.input_len(), seed, levels);
            let g = random(p.output_len(), seed + 1, 0);
            prop_assert_eq!(run(&x, &g, &p), reference(&x, &g, &p));
        }
    }

    #[test]
    fn max_pool2d_matches_reference_on_a_teacher_sized_batch() {
        // 64 x 32 planes of 26x26: several planes per task, many tasks.
        let p = Pool2dParams::new(64, 32, 26, 26, 2, 2).unwrap();
        let x = random(p.input_len(), 3, 0);
        let g = random(p.output_len(), 4, 0);
        assert_eq!(run(&x, &g, &p), reference(&x, &g, &p));
    }

    // Max pooling is piecewise linear: away from ties, nudging the winner by e moves
    // its output by e and nudging any other input moves nothing, which is what the
    // backward routes. Checked by finite differences on a few inputs.
    #[test]
    fn max_pool2d_backward_matches_finite_differences() {
        let p = Pool2dParams::new(2, 2, 5, 5, 3, 2).unwrap();
        let x = random(p.input_len(), 5, 0);
        let g = random(p.output_len(), 6, 0);
        let loss = |x: &[f32]| -> f64 {
            let (out, _, _) = run(x, &g, &p);
            out.iter().zip(&g).map(|(&o, &g)| o as f64 * g as f64).sum()
        };
        let (_, _, gx) = run(&x, &g, &p);
        let eps = 1e-3;
        for i in (0..x.len()).step_by(7) {
            let (mut plus, mut minus) = (x.clone(), x.clone());
            plus[i] += eps;
            minus[i] -= eps;
            let numeric = (loss(&plus) - loss(&minus)) / (2.0 * eps as f64);
            assert!(
                (numeric - gx[i] as f64).abs() < 1e-2,
                "x[{i}]: {numeric} vs {}",
                gx[i]
            );
        }
    }
}
