//! Vectorised math for the row kernels: `exp` and `ln` written without branches, and
//! `on_widest_vectors`, which compiles a loop for the widest vectors the CPU has.
//!
//! The softmax-KL takes two exponentials per logit and little else, so it runs at the
//! speed of `exp`. libm's `expf` and `logf` are one scalar call per value;
//! [`exp_nonpositive`] and [`ln_normal`] are Cephes' `expf` and `logf` polynomials with
//! selects in place of branches, so that a loop of them over a slice becomes 16 lanes
//! with AVX-512, 8 with AVX2 and 4 with SSE2.
//!
//! Every path does the same IEEE operations in the same order (plain multiplies and
//! adds, never a fused multiply-add), so a value gets the same bits whichever path, and
//! whichever lane of a vector or scalar tail, computes it.

/// Runs `f` compiled for AVX-512 or AVX2 when [`Isa::active`](super::isa::Isa::active)
/// is one of them, else for the baseline.
///
/// `f` is inlined into a function with those target features, so the loops in it are
/// vectorised for them. NOTE: pass `f` as `#[inline(always)] || ...`, and make what it
/// calls `#[inline(always)]` too: code that is not inlined keeps the baseline's vectors.
#[inline(always)]
pub(crate) fn on_widest_vectors<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f")]
        unsafe fn avx512<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        #[target_feature(enable = "avx2")]
        unsafe fn avx2<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        match super::isa::Isa::active() {
            // SAFETY: `active` picks only what the CPU has.
            super::isa::Isa::Avx512 => return unsafe { avx512(f) },
            // SAFETY: likewise.
            super::isa::Isa::Avx2 => return unsafe { avx2(f) },
            super::isa::Isa::Portable => {}
        }
    }
    f()
}

/// `ln 2` split in two, `LN2_HI + LN2_LO`, with `LN2_HI` exact in 9 bits so that
/// `n · LN2_HI` is exact for every exponent `n` used here (Cephes' `C1`, `C2`).
const LN2_HI: f32 = 0.693_359_4; // 355 / 512 exactly, once rounded to f32
const LN2_LO: f32 = -2.121_944_4e-4;
/// Adding `1.5 · 2^23` rounds an `f32` of magnitude below `2^22` to an integer (round to
/// nearest even) and leaves that integer in the low mantissa bits.
const ROUND_MAGIC: f32 = 12_582_912.0;
/// Below this, `exp(x)` is under `f32`'s smallest normal, `2^-126`.
const MIN_ARG: f32 = -87.336_54;

/// `exp(x)` for `x <= 0`, within 1 ulp of the exact value (checked once on every `f32`
/// in `[-88, 0]`; the tests sample them). 0 for `x < MIN_ARG` and for `x = -inf`, where
/// libm would return subnormals down to `x ≈ -103.97` (no subnormal results); NaN for NaN.
/// NOTE: `x > 0` is outside its domain (the softmaxes shift every row to a largest
/// argument of 0).
#[inline(always)]
pub fn exp_nonpositive(x: f32) -> f32 {
    // exp(x) = 2^n · exp(r) with n = round(x / ln 2) and |r| <= ln 2 / 2.
    let t = x * std::f32::consts::LOG2_E + ROUND_MAGIC;
    let n = t - ROUND_MAGIC;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    // Cephes' minimax polynomial for exp(r) on [-ln 2 / 2, ln 2 / 2].
    let p = ((((1.987_569_2e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 0.5;
    let exp_r = p * (r * r) + r + 1.0;
    // 2^n built in the exponent field: t's low bits hold n (two's complement), and for
    // -126 <= n <= 0 the biased exponent n + 127 is in 1..=127.
    let two_n = f32::from_bits(t.to_bits().wrapping_add(127) << 23);
    // NOTE: a select, not a branch, so the loop still vectorises; it also maps -inf (for
    // which r is NaN) to 0.
    if x < MIN_ARG {
        0.0
    } else {
        exp_r * two_n
    }
}

/// `x[i] = exp(x[i])` for `x[i] <= 0`, as [`exp_nonpositive`], on the widest vectors the
/// CPU has.
pub fn exp_nonpositive_in_place(x: &mut [f32]) {
    on_widest_vectors(
        #[inline(always)]
        || {
            for v in x {
                *v = exp_nonpositive(*v);
            }
        },
    );
}

/// `sqrt(1/2)`: mantissas are taken in `[sqrt(1/2), sqrt(2))`, where `ln` of the mantissa
/// is small.
const SQRT_HALF: f32 = std::f32::consts::FRAC_1_SQRT_2;

/// `ln(x)` for a positive normal `x` (`2^-126 <= x < inf`), within 1 ulp of the exact
/// value (checked once on every positive normal `f32`; the tests sample them); NaN for
/// NaN. NOTE: 0, subnormals, negatives and infinity are outside its
/// domain (the softmaxes take it of a sum of exponentials, which is at least 1).
#[inline(always)]
pub fn ln_normal(x: f32) -> f32 {
    // x = 2^e · m with m in [1/2, 1), then m moved to [sqrt(1/2), sqrt(2)).
    let bits = x.to_bits();
    let e = ((bits >> 23) & 0xff) as i32 - 126;
    let m = f32::from_bits((bits & 0x007f_ffff) | 0x3f00_0000);
    let below = m < SQRT_HALF;
    let e = (e - below as i32) as f32;
    // NOTE: selects, not branches, so that loops still vectorise.
    let f = if below { m + m - 1.0 } else { m - 1.0 };
    // Cephes' minimax polynomial: ln(1 + f) = f - f²/2 + f³ P(f).
    let z = f * f;
    let p = (((((((7.037_683_6e-2 * f - 1.151_461e-1) * f + 1.167_699_9e-1) * f
        - 1.242_014_1e-1)
        * f
        + 1.424_932_3e-1)
        * f
        - 1.666_805_8e-1)
        * f
        + 2.000_071_4e-1)
        * f
        - 2.499_999_4e-1)
        * f
        + 3.333_333e-1;
    let y = p * f * z + e * LN2_LO - 0.5 * z;
    let ln = (f + y) + e * LN2_HI;
    if x.is_nan() {
        x
    } else {
        ln
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulps(a: f32, b: f32) -> u32 {
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
    }

    /// Every 97th `f32` in `[-87.3, 0]` (about 11.5 million values), against libm's `exp` in
    /// f64 rounded to f32.
    #[test]
    fn exp_nonpositive_is_within_1_ulp_of_exact() {
        let (lo, hi) = ((-87.3f32).to_bits(), 0.0f32.to_bits());
        let mut worst = (0, 0.0f32);
        // Negative floats: bit patterns from -0.0 (0x8000_0000) up to -87.3.
        for bits in (0x8000_0000u32..=lo).step_by(97).chain([lo, hi]) {
            let x = f32::from_bits(bits);
            let want = (x as f64).exp() as f32;
            let got = exp_nonpositive(x);
            let u = ulps(got, want);
            if u > worst.0 {
                worst = (u, x);
            }
        }
        assert!(worst.0 <= 1, "{} ulp at x = {}", worst.0, worst.1);
    }

    #[test]
    fn exp_nonpositive_edges() {
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert_eq!(exp_nonpositive(-0.0), 1.0);
        assert_eq!(exp_nonpositive(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_nonpositive(-100.0), 0.0);
        assert_eq!(exp_nonpositive(-1e30), 0.0);
        assert!(exp_nonpositive(f32::NAN).is_nan());
        // ln 2: exactly one halving away from 1 within rounding.
        assert!(ulps(exp_nonpositive(-std::f32::consts::LN_2), 0.5) <= 1);
        // Just above the cut-off the result is still a normal number.
        let tiny = exp_nonpositive(-87.33);
        assert!(tiny.is_normal(), "{tiny}");
    }

    /// Every 97th `f32` in `[2^-126, 2^20]` (about 12.6 million values), against libm's `ln`
    /// in f64 rounded to f32.
    #[test]
    fn ln_normal_is_within_1_ulp_of_exact() {
        let (lo, hi) = (f32::MIN_POSITIVE.to_bits(), (1u32 << 20) as f32);
        let mut worst = (0, 0.0f32);
        for bits in (lo..=hi.to_bits()).step_by(97).chain([lo, hi.to_bits()]) {
            let x = f32::from_bits(bits);
            let want = (x as f64).ln() as f32;
            let u = ulps(ln_normal(x), want);
            if u > worst.0 {
                worst = (u, x);
            }
        }
        assert!(worst.0 <= 1, "{} ulp at x = {}", worst.0, worst.1);
    }

    #[test]
    fn ln_normal_edges() {
        assert_eq!(ln_normal(1.0), 0.0);
        assert!(ulps(ln_normal(f32::MIN_POSITIVE), -87.336_54) <= 1);
        assert!(ulps(ln_normal(2.0), std::f32::consts::LN_2) <= 1);
        assert!(ulps(ln_normal(10.0), std::f32::consts::LN_10) <= 1);
        assert!(ulps(ln_normal(f32::MAX), 88.722_84) <= 1);
        assert!(ln_normal(f32::NAN).is_nan());
    }

    /// The vector paths and the scalar function agree bit for bit, whatever the length
    /// (vector body plus scalar tail) and wherever a value sits in the slice.
    #[test]
    fn exp_nonpositive_in_place_matches_scalar_bits() {
        for len in [0, 1, 3, 7, 8, 15, 16, 17, 33, 100] {
            // Ordinary arguments, with the special ones (-inf, below the cut-off, NaN,
            // -0) dropped in at a few places so that they land in vector lanes too.
            let special = [f32::NEG_INFINITY, -90.0, f32::NAN, -0.0];
            let x: Vec<f32> = (0..len)
                .map(|i| match i % 7 {
                    3 => special[(i / 7) % special.len()],
                    _ => -(i as f32) * 0.731 - 0.01,
                })
                .collect();
            let mut out = x.clone();
            exp_nonpositive_in_place(&mut out);
            for (i, (&v, &o)) in x.iter().zip(&out).enumerate() {
                assert_eq!(
                    o.to_bits(),
                    exp_nonpositive(v).to_bits(),
                    "len {len}, i {i}"
                );
            }
        }
    }
}
