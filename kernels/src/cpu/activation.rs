//! ReLU, leaky ReLU and dropout, forward and backward.
//!
//! ```text
//! relu, leaky_relu:   x, out, grad_out, grad_x: (len)
//! dropout:            x, out, mask, grad_out, grad_x: (len)
//! ```
//!
//! Dropout draws its mask from a counter-based hash of `(seed, index)` rather than a
//! sequential generator, so that every element (and every GPU invocation) draws its own
//! value independently and the CPU and the WGSL kernel agree bit for bit.

use super::elementwise::par_chunked;
use crate::error::{words, words_mut, KernelError};
use crate::params::*;

/// `out = max(x, 0)`.
///
/// NOTE: NaN stays NaN, as PyTorch (`f32::max` would turn it into 0).
pub fn relu_forward(x: &[f32], out: &mut [f32], p: &ElementwiseParams) -> Result<(), KernelError> {
    const OP: &str = "relu_forward";
    let len = p.elements();
    let (x, out) = (words(OP, "x", x, len)?, words_mut(OP, "out", out, len)?);
    par_chunked(out, |start, out| {
        for (o, &x) in out.iter_mut().zip(&x[start..]) {
            *o = if x < 0.0 { 0.0 } else { x };
        }
    });
    Ok(())
}

// out = max(x, 0)  =>  dL/dx = dL/dout where x > 0, else 0
/// `grad_x = grad_out` where `x > 0`, else 0.
///
/// NOTE: relu'(0) = 0, as PyTorch.
pub fn relu_backward(
    x: &[f32],
    grad_out: &[f32],
    grad_x: &mut [f32],
    p: &ElementwiseParams,
) -> Result<(), KernelError> {
    const OP: &str = "relu_backward";
    let len = p.elements();
    let (x, grad_out) = (
        words(OP, "x", x, len)?,
        words(OP, "grad_out", grad_out, len)?,
    );
    let grad_x = words_mut(OP, "grad_x", grad_x, len)?;
    par_chunked(grad_x, |start, grad_x| {
        for ((gx, &x), &g) in grad_x.iter_mut().zip(&x[start..]).zip(&grad_out[start..]) {
            *gx = if x > 0.0 { g } else { 0.0 };
        }
    });
    Ok(())
}

/// `out = x` where `x > 0`, else `alpha · x`: PyTorch's `LeakyReLU(negative_slope = alpha)`.
///
/// NOTE: NaN stays NaN (`alpha · NaN`).
pub fn leaky_relu_forward(
    x: &[f32],
    out: &mut [f32],
    p: &ElementwiseParams,
) -> Result<(), KernelError> {
    const OP: &str = "leaky_relu_forward";
    let (len, slope) = (p.elements(), p.alpha);
    let (x, out) = (words(OP, "x", x, len)?, words_mut(OP, "out", out, len)?);
    // NOTE: `move`: the slope copied into the closure; captured by reference, its load in
    // the loop kept the loop scalar, with a branch (27x slower at conv1's shape).
    par_chunked(out, move |start, out| {
        for (o, &x) in out.iter_mut().zip(&x[start..]) {
            *o = if x > 0.0 { x } else { slope * x };
        }
    });
    Ok(())
}

// out = x (x > 0), slope · x (else)  =>  dL/dx = dL/dout (x > 0), slope · dL/dout (else)
/// `grad_x = grad_out` where `x > 0`, else `alpha · grad_out`.
///
/// NOTE: the slope applies at `x = 0`, as PyTorch's `leaky_relu_backward`.
pub fn leaky_relu_backward(
    x: &[f32],
    grad_out: &[f32],
    grad_x: &mut [f32],
    p: &ElementwiseParams,
) -> Result<(), KernelError> {
    const OP: &str = "leaky_relu_backward";
    let (len, slope) = (p.elements(), p.alpha);
    let (x, grad_out) = (
        words(OP, "x", x, len)?,
        words(OP, "grad_out", grad_out, len)?,
    );
    let grad_x = words_mut(OP, "grad_x", grad_x, len)?;
    // NOTE: `move`, as in the forward.
    par_chunked(grad_x, move |start, grad_x| {
        for ((gx, &x), &g) in grad_x.iter_mut().zip(&x[start..]).zip(&grad_out[start..]) {
            *gx = if x > 0.0 { g } else { slope * g };
        }
    });
    Ok(())
}

/// One round of Chris Wellons' `lowbias32` integer hash: a bijection on `u32` with
/// good avalanche, built only from wrapping multiplies, xors and shifts.
const fn lowbias32(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^= x >> 16;
    x
}

/// The dropout generator: a uniform `u32` for element `index` under `seed`.
///
/// Exactly, in 32-bit wrapping arithmetic (`>>` logical, `*` mod 2³²):
///
/// ```text
/// lowbias32(v) = { v ^= v >> 16; v *= 0x7feb352d; v ^= v >> 15; v *= 0x846ca68b; v ^= v >> 16; v }
/// dropout_hash(seed, index) = lowbias32(index ^ lowbias32(seed ^ 0x9e3779b9))
/// ```
///
/// Hashing the seed first makes the key of nearby seeds (0, 1, 2, ...) unrelated, and
/// the constant keeps seed 0 away from lowbias32's fixed point at 0. The WGSL kernel
/// repeats these lines with `u32` arithmetic, which wraps the same way.
pub const fn dropout_hash(seed: u32, index: u32) -> u32 {
    lowbias32(index ^ lowbias32(seed ^ 0x9e37_79b9))
}

/// Inverted dropout: `mask[i] = scale` when `dropout_hash(seed, i) >= threshold`, else 0,
/// and `out = x * mask`. `mask` is saved for the backward.
pub fn dropout_forward(
    x: &[f32],
    out: &mut [f32],
    mask: &mut [f32],
    p: &DropoutParams,
) -> Result<(), KernelError> {
    const OP: &str = "dropout_forward";
    let len = p.len as usize;
    let (x, out) = (words(OP, "x", x, len)?, words_mut(OP, "out", out, len)?);
    let mask = words_mut(OP, "mask", mask, len)?;
    let (seed, threshold, scale) = (p.seed, p.threshold, p.scale);
    par_chunked(mask, |start, mask| {
        for (m, i) in mask.iter_mut().zip(start as u32..) {
            *m = if dropout_hash(seed, i) >= threshold {
                scale
            } else {
                0.0
            };
        }
    });
    par_chunked(out, |start, out| {
        for ((o, &x), &m) in out.iter_mut().zip(&x[start..]).zip(&mask[start..]) {
            *o = x * m;
        }
    });
    Ok(())
}

// out = x * mask  =>  dL/dx = dL/dout * mask
/// `grad_x = grad_out * mask`.
pub fn dropout_backward(
    grad_out: &[f32],
    mask: &[f32],
    grad_x: &mut [f32],
    p: &DropoutParams,
) -> Result<(), KernelError> {
    const OP: &str = "dropout_backward";
    let len = p.len as usize;
    let (grad_out, mask) = (
        words(OP, "grad_out", grad_out, len)?,
        words(OP, "mask", mask, len)?,
    );
    let grad_x = words_mut(OP, "grad_x", grad_x, len)?;
    par_chunked(grad_x, |start, grad_x| {
        for ((gx, &g), &m) in grad_x
            .iter_mut()
            .zip(&grad_out[start..])
            .zip(&mask[start..])
        {
            *gx = g * m;
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::elementwise::CHUNK;
    use super::*;
    use proptest::prelude::*;
    use rand::{rngs::StdRng, Rng, SeedableRng};

    fn random(len: usize, seed: u64) -> Vec<f32> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..len).map(|_| rng.random_range(-1.0..1.0)).collect()
    }

    fn dropout(x: &[f32], p_drop: f32, seed: u32) -> (Vec<f32>, Vec<f32>) {
        let p = DropoutParams::new(x.len(), p_drop, seed).unwrap();
        let (mut out, mut mask) = (vec![f32::NAN; x.len()], vec![f32::NAN; x.len()]);
        dropout_forward(x, &mut out, &mut mask, &p).unwrap();
        (out, mask)
    }

    #[test]
    fn relu_at_zero_and_around_it() {
        let x = [-2.0, -0.0, 0.0, 1e-30, 3.0, f32::NAN];
        let p = ElementwiseParams::new(x.len()).unwrap();
        let mut out = [9.0; 6];
        relu_forward(&x, &mut out, &p).unwrap();
        assert_eq!(out[..5], [0.0, 0.0, 0.0, 1e-30, 3.0]);
        assert!(out[5].is_nan());
        let mut grad_x = [9.0; 6];
        relu_backward(&x, &[1.0; 6], &mut grad_x, &p).unwrap();
        // NOTE: relu'(0) = 0, as PyTorch, and for -0 too.
        assert_eq!(grad_x, [0.0, 0.0, 0.0, 1.0, 1.0, 0.0]);
    }

    #[test]
    fn leaky_relu_by_hand() {
        // slope 0.2: -2 -> -0.4; the slope also applies at 0 in the backward, as PyTorch.
        let x = [-2.0, -0.0, 0.0, 1e-30, 3.0, f32::NAN];
        let p = ElementwiseParams::with_alpha(x.len(), 0.2).unwrap();
        let mut out = [9.0; 6];
        leaky_relu_forward(&x, &mut out, &p).unwrap();
        assert_eq!(out[..5], [-0.4, 0.0, 0.0, 1e-30, 3.0]);
        assert!(out[5].is_nan());
        let mut grad_x = [9.0; 6];
        leaky_relu_backward(&x, &[10.0; 6], &mut grad_x, &p).unwrap();
        assert_eq!(grad_x, [2.0, 2.0, 2.0, 10.0, 10.0, 2.0]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        #[test]
        fn leaky_relu_matches_reference(len in 0..3 * CHUNK, slope in -1.0f32..1.0, seed in any::<u64>()) {
            let (x, g) = (random(len, seed), random(len, seed + 1));
            let p = ElementwiseParams::with_alpha(len, slope).unwrap();
            let (mut out, mut grad_x) = (vec![f32::NAN; len], vec![f32::NAN; len]);
            leaky_relu_forward(&x, &mut out, &p).unwrap();
            leaky_relu_backward(&x, &g, &mut grad_x, &p).unwrap();
            for i in 0..len {
                prop_assert_eq!(out[i], if x[i] > 0.0 { x[i] } else { slope * x[i] });
                prop_assert_eq!(grad_x[i], if x[i] > 0.0 { g[i] } else { slope * g[i] });
            }
        }

        // Lengths up to three chunks cover the serial and the parallel paths.
        #[test]
        fn relu_matches_reference(len in 0..3 * CHUNK, seed in any::<u64>()) {
            let (x, g) = (random(len, seed), random(len, seed + 1));
            let p = ElementwiseParams::new(len).unwrap();
            let (mut out, mut grad_x) = (vec![f32::NAN; len], vec![f32::NAN; len]);
            relu_forward(&x, &mut out, &p).unwrap();
            relu_backward(&x, &g, &mut grad_x, &p).unwrap();
            for i in 0..len {
                prop_assert_eq!(out[i], if x[i] > 0.0 { x[i] } else { 0.0 });
                prop_assert_eq!(grad_x[i], if x[i] > 0.0 { g[i] } else { 0.0 });
            }
        }

        #[test]
        fn dropout_matches_its_formula(len in 0..3 * CHUNK, p_drop in 0.0f32..1.0, seed in any::<u32>()) {
            let x = random(len, seed as u64);
            let (out, mask) = dropout(&x, p_drop, seed);
            let p = DropoutParams::new(len, p_drop, seed).unwrap();
            for i in 0..len {
                let keep = dropout_hash(seed, i as u32) >= p.threshold;
                prop_assert_eq!(mask[i], if keep { p.scale } else { 0.0 });
                prop_assert_eq!(out[i], x[i] * mask[i]);
            }
            let mut grad_x = vec![f32::NAN; len];
            dropout_backward(&x, &mask, &mut grad_x, &p).unwrap();
            prop_assert_eq!(grad_x, out, "backward is the same product");
        }
    }

    #[test]
    fn dropout_hash_known_values() {
        // Pinned outputs, for the WGSL port to check against: any change here changes
        // every mask drawn so far. (Also checked against a Python transcription of the
        // formula in the doc comment of `dropout_hash`.)
        let got = [(0, 0), (0, 1), (1, 0), (7, 12345), (u32::MAX, u32::MAX)]
            .map(|(s, i)| dropout_hash(s, i));
        assert_eq!(
            got,
            [2926543089, 2692512407, 2385989600, 939238334, 2410515554]
        );
    }

    #[test]
    fn dropout_drops_about_p_and_scales_the_rest() {
        let x = vec![1.0; 200_000];
        for p_drop in [0.1, 0.5, 0.8] {
            let (out, mask) = dropout(&x, p_drop, 42);
            let dropped = mask.iter().filter(|&&m| m == 0.0).count() as f64 / x.len() as f64;
            // The standard deviation of the fraction is sqrt(p(1-p)/n) <= 0.0012.
            assert!(
                (dropped - p_drop as f64).abs() < 0.006,
                "p {p_drop}: dropped {dropped}"
            );
            let scale = 1.0 / (1.0 - p_drop);
            assert!(mask.iter().all(|&m| m == 0.0 || m == scale));
            // Inverted dropout keeps the expected value: mean(out) ~ mean(x) = 1.
            let mean = out.iter().map(|&o| o as f64).sum::<f64>() / x.len() as f64;
            assert!((mean - 1.0).abs() < 0.02, "p {p_drop}: mean {mean}");
        }
    }

    #[test]
    fn dropout_is_deterministic_by_seed() {
        let x = random(50_000, 1);
        assert_eq!(dropout(&x, 0.5, 3), dropout(&x, 0.5, 3));
        // Consecutive seeds draw unrelated masks: they agree on about half the elements
        // at p = 0.5, not all of them, and not shifted copies of each other either.
        let (_, a) = dropout(&x, 0.5, 3);
        let (_, b) = dropout(&x, 0.5, 4);
        let same = a.iter().zip(&b).filter(|(a, b)| a == b).count() as f64 / x.len() as f64;
        assert!((same - 0.5).abs() < 0.02, "agreement {same}");
        let shifted = a[1..].iter().zip(&a).filter(|(a, b)| a == b).count() as f64 / x.len() as f64;
        assert!(
            (shifted - 0.5).abs() < 0.02,
            "neighbour agreement {shifted}"
        );
    }

    #[test]
    fn dropout_with_p_zero_keeps_everything_and_p_one_drops_everything() {
        let x = random(1000, 2);
        let (out, mask) = dropout(&x, 0.0, 9);
        assert_eq!((out, mask), (x.clone(), vec![1.0; 1000]));
        let (out, mask) = dropout(&x, 1.0, 9);
        assert!(out.iter().chain(&mask).all(|&v| v == 0.0));
    }
}
