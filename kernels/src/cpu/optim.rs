//! Optimizer steps, in place on a parameter and its state.
//!
//! ```text
//! sgd_step       param, grad, velocity: (len)
//! adam_step      param, grad, m, v: (len)
//! max_norm_rows  param: (rows, cols)
//! ```
//!
//! Each array is one flat parameter tensor and its state, all of `p.len` values. Element
//! `i` of the outputs depends on element `i` of the inputs only (a row of them for
//! `max_norm_rows`), so a rayon task owns a fixed chunk of indices (of rows) and the
//! result is the same however the work is split.
//!
//! The formulas follow PyTorch's single-tensor `SGD`, `Adam` and `AdamW` step by step,
//! in the same order of operations, so that their rounding matches where f32 allows.

use crate::error::{words, words_mut, KernelError};
use crate::params::*;
use rayon::prelude::*;

/// Values per rayon task. A bias of a few hundred floats stays on the calling thread;
/// a 1.4M-float weight is split into about 90 tasks.
const VALUES_PER_TASK: usize = 1 << 14;

/// One SGD step, as PyTorch's `SGD` without dampening or Nesterov:
///
/// ```text
/// g = grad + wd·param                      (skipped when wd == 0)
/// v = momentum·v + g; update = v           (when momentum != 0; else update = g)
/// param = param - lr·update
/// ```
///
/// `velocity` starts at zero, so the first step stores `v = g`, as PyTorch's first step
/// does by cloning `g`. It is neither read nor written when `momentum == 0`, but must
/// still hold `len` values.
pub fn sgd_step(
    param: &mut [f32],
    grad: &[f32],
    velocity: &mut [f32],
    p: &SgdParams,
) -> Result<(), KernelError> {
    const OP: &str = "sgd_step";
    let len = p.len as usize;
    let (param, grad) = (
        words_mut(OP, "param", param, len)?,
        words(OP, "grad", grad, len)?,
    );
    let velocity = words_mut(OP, "velocity", velocity, len)?;
    let (lr, momentum, wd) = (p.lr, p.momentum, p.weight_decay);
    let run = |param: &mut [f32], grad: &[f32], velocity: &mut [f32]| {
        for ((x, &g), v) in param.iter_mut().zip(grad).zip(velocity) {
            let mut update = if wd != 0.0 { g + wd * *x } else { g };
            if momentum != 0.0 {
                *v = *v * momentum + update;
                update = *v;
            }
            *x += -lr * update;
        }
    };
    if len <= VALUES_PER_TASK {
        run(param, grad, velocity);
        return Ok(());
    }
    param
        .par_chunks_mut(VALUES_PER_TASK)
        .zip(grad.par_chunks(VALUES_PER_TASK))
        .zip(velocity.par_chunks_mut(VALUES_PER_TASK))
        .for_each(|((x, g), v)| run(x, g, v));
    Ok(())
}

/// PyTorch's `lerp`: `start + weight·(end - start)`, from the `end` side for large
/// weights so that `weight = 1` gives `end` exactly.
fn lerp(start: f32, end: f32, weight: f32) -> f32 {
    if weight.abs() < 0.5 {
        start + weight * (end - start)
    } else {
        end - (end - start) * (1.0 - weight)
    }
}

/// One Adam step, as PyTorch's `Adam` (`decoupled == 0`) or `AdamW` (`decoupled == 1`):
///
/// ```text
/// param = param·(1 - lr·wd)                 (AdamW; Adam instead: g = grad + wd·param)
/// m = β1·m + (1 - β1)·g
/// v = β2·v + (1 - β2)·g²
/// param = param - lr · (m / bias_correction1) / (sqrt(v / bias_correction2) + eps)
/// ```
///
/// with `m`, `v` starting at zero and the bias corrections of step `t` from the params.
pub fn adam_step(
    param: &mut [f32],
    grad: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    p: &AdamParams,
) -> Result<(), KernelError> {
    const OP: &str = "adam_step";
    let len = p.len as usize;
    let (param, grad) = (
        words_mut(OP, "param", param, len)?,
        words(OP, "grad", grad, len)?,
    );
    let (m, v) = (words_mut(OP, "m", m, len)?, words_mut(OP, "v", v, len)?);
    let (beta1, beta2, eps, wd) = (p.beta1, p.beta2, p.eps, p.weight_decay);
    let decoupled = p.decoupled != 0;
    // NOTE: PyTorch's order of operations, not the textbook one above: the decay as one
    // factor, m by `lerp`, sqrt(v) / sqrt(bc2) rather than sqrt(v / bc2), and
    // `addcdiv(param, m, denom, value = -lr / bc1)`, which is (value·m) / denom.
    let decay = 1.0 - p.lr * wd;
    let step_size = p.lr / p.bias_correction1;
    let bc2_sqrt = p.bias_correction2.sqrt();
    let run = |param: &mut [f32], grad: &[f32], m: &mut [f32], v: &mut [f32]| {
        let state = m.iter_mut().zip(v.iter_mut());
        for ((x, &g), (m, v)) in param.iter_mut().zip(grad).zip(state) {
            let mut g = g;
            if wd != 0.0 {
                if decoupled {
                    *x *= decay;
                } else {
                    g += wd * *x;
                }
            }
            *m = lerp(*m, g, 1.0 - beta1);
            *v = *v * beta2 + (1.0 - beta2) * g * g;
            let denom = v.sqrt() / bc2_sqrt + eps;
            *x += -step_size * *m / denom;
        }
    };
    if len <= VALUES_PER_TASK {
        run(param, grad, m, v);
        return Ok(());
    }
    param
        .par_chunks_mut(VALUES_PER_TASK)
        .zip(grad.par_chunks(VALUES_PER_TASK))
        .zip(m.par_chunks_mut(VALUES_PER_TASK))
        .zip(v.par_chunks_mut(VALUES_PER_TASK))
        .for_each(|(((x, g), m), v)| run(x, g, m, v));
    Ok(())
}

/// The max-norm constraint, in place: each row of `param` (`p.rows` rows of `p.cols`)
/// whose L2 norm exceeds `p.max_norm` is multiplied by `max_norm / norm`; the others are
/// left bit for bit. Applied after each optimizer step, as Hinton et al. 2012 do.
///
/// NOTE: the squared norm is summed in f64, so the GPU's f32 sum agrees to about 1e-6.
pub fn max_norm_rows(param: &mut [f32], p: &MaxNormParams) -> Result<(), KernelError> {
    let (rows, cols) = (p.rows as usize, p.cols as usize);
    let param = words_mut("max_norm_rows", "param", param, p.len())?;
    if rows == 0 || cols == 0 {
        return Ok(());
    }
    let max_norm = p.max_norm;
    let run = |rows: &mut [f32]| {
        for row in rows.chunks_exact_mut(cols) {
            let norm = row.iter().map(|&w| w as f64 * w as f64).sum::<f64>().sqrt() as f32;
            if norm > max_norm {
                let scale = max_norm / norm;
                row.iter_mut().for_each(|w| *w *= scale);
            }
        }
    };
    let rows_per_task = (VALUES_PER_TASK / cols).max(1);
    if rows <= rows_per_task {
        run(param);
        return Ok(());
    }
    param.par_chunks_mut(rows_per_task * cols).for_each(run);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;
    use rand::{rngs::StdRng, Rng, SeedableRng};

    fn sgd(len: usize, lr: f32, momentum: f32, weight_decay: f32) -> SgdParams {
        SgdParams {
            len: len as u32,
            lr,
            momentum,
            weight_decay,
        }
    }

    fn adam(len: usize, lr: f32, wd: f32, decoupled: bool, t: u64) -> AdamParams {
        AdamParams::new(len, lr, 0.9, 0.999, 1e-8, wd, decoupled, t).unwrap()
    }

    fn assert_close(what: &str, got: &[f32], want: &[f64], tol: f64) {
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            let err = (g as f64 - w).abs();
            assert!(
                err <= tol * (1.0 + w.abs()),
                "{what}[{i}]: got {g}, want {w}"
            );
        }
    }

    fn bits(x: &[f32]) -> Vec<u32> {
        x.iter().map(|v| v.to_bits()).collect()
    }

    #[test]
    fn sgd_step_by_hand() {
        // Plain: 1 - 0.1 · 0.5 = 0.95.
        let (mut x, mut v) = ([1.0], [0.0]);
        sgd_step(&mut x, &[0.5], &mut v, &sgd(1, 0.1, 0.0, 0.0)).unwrap();
        assert_close("plain", &x, &[0.95], 1e-7);

        // Weight decay 0.1: g = 0.5 + 0.1 · 1 = 0.6, so 1 - 0.1 · 0.6 = 0.94.
        let (mut x, mut v) = ([1.0], [0.0]);
        sgd_step(&mut x, &[0.5], &mut v, &sgd(1, 0.1, 0.0, 0.1)).unwrap();
        assert_close("decay", &x, &[0.94], 1e-7);

        // Momentum 0.9, gradient 0.5 twice: v1 = 0.5, x1 = 1 - 0.05 = 0.95;
        // v2 = 0.9 · 0.5 + 0.5 = 0.95, x2 = 0.95 - 0.095 = 0.855.
        let (mut x, mut v) = ([1.0], [0.0]);
        let p = sgd(1, 0.1, 0.9, 0.0);
        sgd_step(&mut x, &[0.5], &mut v, &p).unwrap();
        assert_close("momentum v1", &v, &[0.5], 1e-7);
        sgd_step(&mut x, &[0.5], &mut v, &p).unwrap();
        assert_close("momentum v2", &v, &[0.95], 1e-7);
        assert_close("momentum x2", &x, &[0.855], 1e-7);
    }

    // Step 1: m = (1 - β1) g, v = (1 - β2) g², and the bias corrections are exactly
    // (1 - β1) and (1 - β2), so the step is lr · g / (|g| + eps) ≈ lr · sign(g).
    #[test]
    fn adam_step_first_step_moves_by_lr_sign() {
        let grad = [3e-4, -2e-3, 0.5, -1.0, 7.0, -250.0, 1e4, 0.0];
        let lr = 0.01;
        for decoupled in [false, true] {
            let mut x = [1.0f32; 8];
            let (mut m, mut v) = ([0.0; 8], [0.0; 8]);
            adam_step(
                &mut x,
                &grad,
                &mut m,
                &mut v,
                &adam(8, lr, 0.0, decoupled, 1),
            )
            .unwrap();
            let want: Vec<f64> = grad
                .iter()
                .map(|&g| 1.0 - lr as f64 * g.signum() as f64)
                .collect();
            // eps / |g| <= 1e-4 here, and g = 0 leaves the parameter where it was.
            assert_close("x", &x[..7], &want[..7], 1e-5);
            assert_eq!(x[7], 1.0);
        }
    }

    // Rows [3, 4] (norm 5), [0.6, 0.8] (norm 1) and [0, 0] at max_norm 2: the first is
    // scaled by 2/5 onto [1.2, 1.6], the others are left exactly.
    #[test]
    fn max_norm_rows_by_hand() {
        let mut w = [3.0, 4.0, 0.6, 0.8, 0.0, 0.0];
        max_norm_rows(&mut w, &MaxNormParams::new(3, 2, 2.0).unwrap()).unwrap();
        assert_close("clipped", &w[..2], &[1.2, 1.6], 1e-7);
        assert_eq!(bits(&w[2..]), bits(&[0.6, 0.8, 0.0, 0.0]));
    }

    proptest! {
        // Every row ends within the bound (to rounding), with its direction kept; rows
        // already within it are untouched; the parallel split (many rows) changes nothing.
        #[test]
        fn max_norm_rows_bounds_every_row(rows in 1usize..2000, cols in 1usize..30, bound in 0.1f32..4.0, seed: u64) {
            let mut rng = StdRng::seed_from_u64(seed);
            let x: Vec<f32> = (0..rows * cols).map(|_| rng.random_range(-1.0..1.0)).collect();
            let mut w = x.clone();
            max_norm_rows(&mut w, &MaxNormParams::new(rows, cols, bound).unwrap()).unwrap();
            for (before, after) in x.chunks(cols).zip(w.chunks(cols)) {
                let norm = |r: &[f32]| r.iter().map(|&v| v as f64 * v as f64).sum::<f64>().sqrt();
                let (n0, n1) = (norm(before), norm(after));
                if n0 <= bound as f64 {
                    prop_assert_eq!(bits(before), bits(after));
                } else {
                    prop_assert!((n1 - bound as f64).abs() <= 1e-5 * bound as f64, "{n0} -> {n1}");
                    for (&b, &a) in before.iter().zip(after) {
                        prop_assert!((a as f64 - b as f64 * bound as f64 / n0).abs() <= 1e-6);
                    }
                }
            }
        }
    }

    #[test]
    fn adam_step_weight_decay_by_hand() {
        // AdamW, zero gradient: param · (1 - lr · wd) = 2 · (1 - 0.1 · 0.25) = 1.95, and
        // then m = v = 0 moves nothing.
        let (mut x, mut m, mut v) = ([2.0], [0.0], [0.0]);
        adam_step(&mut x, &[0.0], &mut m, &mut v, &adam(1, 0.1, 0.25, true, 1)).unwrap();
        assert_close("adamw", &x, &[1.95], 1e-7);

        // Adam (L2), zero gradient: g = 0.25 · 2 = 0.5 > 0, a first step of ≈ -lr: 1.9.
        let (mut x, mut m, mut v) = ([2.0], [0.0], [0.0]);
        adam_step(
            &mut x,
            &[0.0],
            &mut m,
            &mut v,
            &adam(1, 0.1, 0.25, false, 1),
        )
        .unwrap();
        assert_close("adam", &x, &[1.9], 1e-7);
        assert_close("m", &m, &[0.1 * 0.5], 1e-7);
    }

    /// Gradients for `steps` steps over `len` values, away from none in particular.
    fn grads(len: usize, steps: usize) -> impl Strategy<Value = Vec<Vec<f32>>> {
        vec(vec(-1f32..1.0, len), steps)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn sgd_step_matches_reference(
            (x0, steps) in (1usize..300).prop_flat_map(|n| (vec(-2f32..2.0, n), grads(n, 5))),
            lr in 1e-3f32..0.5,
            momentum in prop_oneof![Just(0f32), 0f32..0.99],
            wd in prop_oneof![Just(0f32), 0f32..0.1],
        ) {
            let n = x0.len();
            let p = sgd(n, lr, momentum, wd);
            let (mut x, mut v) = (x0.clone(), vec![0.0; n]);
            let mut want: Vec<f64> = x0.iter().map(|&v| v as f64).collect();
            let mut want_v = vec![0.0f64; n];
            let (lr, momentum, wd) = (lr as f64, momentum as f64, wd as f64);
            for g in &steps {
                sgd_step(&mut x, g, &mut v, &p).unwrap();
                for i in 0..n {
                    let g = g[i] as f64 + wd * want[i];
                    want_v[i] = momentum * want_v[i] + g;
                    want[i] -= lr * if momentum != 0.0 { want_v[i] } else { g };
                }
            }
            assert_close("param", &x, &want, 1e-5);
        }

        // The textbook formula in f64, with the bias corrections the params carry (their
        // f32 rounding is `AdamParams::new`'s, not the kernel's).
        #[test]
        fn adam_step_matches_reference(
            (x0, steps) in (1usize..300).prop_flat_map(|n| (vec(-2f32..2.0, n), grads(n, 8))),
            lr in 1e-4f32..0.1,
            beta1 in 0.5f32..0.95,
            beta2 in 0.9f32..0.9999,
            wd in prop_oneof![Just(0f32), 0f32..0.1],
            decoupled in any::<bool>(),
        ) {
            let n = x0.len();
            let (mut x, mut m, mut v) = (x0.clone(), vec![0.0; n], vec![0.0; n]);
            let mut want: Vec<f64> = x0.iter().map(|&v| v as f64).collect();
            let (mut want_m, mut want_v) = (vec![0.0f64; n], vec![0.0f64; n]);
            for (t, g) in steps.iter().enumerate() {
                let p = AdamParams::new(n, lr, beta1, beta2, 1e-8, wd, decoupled, t as u64 + 1).unwrap();
                adam_step(&mut x, g, &mut m, &mut v, &p).unwrap();
                let f = |v: f32| v as f64;
                let (bc1, bc2) = (f(p.bias_correction1), f(p.bias_correction2));
                let (lr, b1, b2, wd) = (f(lr), f(beta1), f(beta2), f(wd));
                for i in 0..n {
                    let mut g = g[i] as f64;
                    if decoupled {
                        want[i] -= lr * wd * want[i];
                    } else {
                        g += wd * want[i];
                    }
                    want_m[i] = b1 * want_m[i] + (1.0 - b1) * g;
                    want_v[i] = b2 * want_v[i] + (1.0 - b2) * g * g;
                    want[i] -= lr * (want_m[i] / bc1) / ((want_v[i] / bc2).sqrt() + 1e-8);
                }
            }
            assert_close("param", &x, &want, 2e-6);
        }
    }

    /// A weight big enough for many rayon chunks, and not a multiple of one.
    fn big(seed: u64) -> Vec<f32> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..100_003)
            .map(|_| rng.random_range(-1.0f32..1.0))
            .collect()
    }

    /// Three steps over the whole weight, or over pieces of 1000 that each stay serial.
    fn run_both(step: impl Fn(&mut [f32], &[f32], &mut [f32], &mut [f32])) -> [Vec<f32>; 2] {
        let (x0, grad) = (big(1), big(2));
        let whole = {
            let (mut x, mut m, mut v) = (x0.clone(), vec![0.0; x0.len()], vec![0.0; x0.len()]);
            for _ in 0..3 {
                step(&mut x, &grad, &mut m, &mut v);
            }
            x
        };
        let pieces = {
            let (mut x, mut m, mut v) = (x0.clone(), vec![0.0; x0.len()], vec![0.0; x0.len()]);
            let chunks = x.chunks_mut(1000).zip(grad.chunks(1000));
            for ((x, g), (m, v)) in chunks.zip(m.chunks_mut(1000).zip(v.chunks_mut(1000))) {
                for _ in 0..3 {
                    step(x, g, m, v);
                }
            }
            x
        };
        [whole, pieces]
    }

    #[test]
    fn sgd_step_chunks_match_pieces_and_repeat() {
        let step = |x: &mut [f32], g: &[f32], v: &mut [f32], _: &mut [f32]| {
            sgd_step(x, g, v, &sgd(x.len(), 0.05, 0.9, 1e-4)).unwrap();
        };
        let [whole, pieces] = run_both(step);
        assert_eq!(bits(&whole), bits(&pieces));
        assert_eq!(bits(&whole), bits(&run_both(step)[0]));
    }

    #[test]
    fn adam_step_chunks_match_pieces_and_repeat() {
        for decoupled in [false, true] {
            let step = |x: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]| {
                adam_step(x, g, m, v, &adam(x.len(), 1e-3, 0.01, decoupled, 2)).unwrap();
            };
            let [whole, pieces] = run_both(step);
            assert_eq!(bits(&whole), bits(&pieces));
            assert_eq!(bits(&whole), bits(&run_both(step)[0]));
        }
    }
}
