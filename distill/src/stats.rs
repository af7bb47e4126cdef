//! The statistics of a multi-seed study: the mean and sample standard deviation over
//! seeds, Student's t quantiles, and the 95 % confidence interval of a mean, which is
//! what a paired difference (distilled − alone, seed by seed) is judged by.

/// Mean, sample standard deviation and 95 % confidence interval of a sample.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    /// Values in the sample.
    pub n: usize,
    /// Their mean; NaN for an empty sample.
    pub mean: f64,
    /// Their sample standard deviation (divisor `n - 1`); 0 below two values.
    pub sd: f64,
    /// `mean ± t(0.975, n - 1) · sd / √n`; `None` below two values.
    pub ci95: Option<(f64, f64)>,
}

impl Summary {
    /// `{"n", "mean", "sd", "ci95": [lo, hi] or null}`, as the reports write it.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "n": self.n,
            "mean": self.mean,
            "sd": self.sd,
            "ci95": self.ci95.map(|(lo, hi)| [lo, hi]),
        })
    }
}

/// Summarizes `xs`.
///
/// ```
/// let s = distill::stats::summarize(&[1.0, 2.0, 3.0]);
/// assert_eq!((s.mean, s.sd), (2.0, 1.0));
/// let (lo, hi) = s.ci95.unwrap();
/// // 2 ± 4.303 / √3
/// assert!((lo + 0.484).abs() < 1e-3 && (hi - 4.484).abs() < 1e-3);
/// ```
pub fn summarize(xs: &[f64]) -> Summary {
    let n = xs.len();
    let mean = xs.iter().sum::<f64>() / n as f64;
    if n < 2 {
        return Summary {
            n,
            mean,
            sd: 0.0,
            ci95: None,
        };
    }
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    let sd = var.sqrt();
    let half = t_quantile(0.975, (n - 1) as f64) * sd / (n as f64).sqrt();
    Summary {
        n,
        mean,
        sd,
        ci95: Some((mean - half, mean + half)),
    }
}

/// The paired difference's verdict in one sentence: fewer or more test errors with the
/// interval when it excludes 0, else that the study cannot tell. `what` names the count
/// (`test errors`, `validation errors`).
pub fn verdict(diff: &Summary, what: &str) -> String {
    match diff.ci95 {
        None => format!(
            "one seed gives no confidence interval (run with --seeds 2 or more): \
             distillation changed the {what} by {:+.0}",
            diff.mean
        ),
        Some((lo, hi)) if hi < 0.0 => format!(
            "distillation made {:.1} fewer {what} (95 % CI {:.1} to {:.1} fewer)",
            -diff.mean, -hi, -lo
        ),
        Some((lo, hi)) if lo > 0.0 => format!(
            "distillation made {:.1} more {what} (95 % CI {lo:.1} to {hi:.1} more)",
            diff.mean
        ),
        Some((lo, hi)) => format!(
            "no difference that this study can detect (distilled − alone: {:+.1} {what}, \
             95 % CI {lo:+.1} to {hi:+.1})",
            diff.mean
        ),
    }
}

/// The `p` quantile of Student's t distribution with `df > 0` degrees of freedom, for
/// `p` in `(0, 1)`: the `t` with `P(T ≤ t) = p`, found by bisection on [`t_cdf`].
pub fn t_quantile(p: f64, df: f64) -> f64 {
    if p < 0.5 {
        return -t_quantile(1.0 - p, df);
    }
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    while t_cdf(hi, df) < p && hi < 1e12 {
        hi *= 2.0;
    }
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if t_cdf(mid, df) < p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// `P(T ≤ t)` for Student's t with `df` degrees of freedom:
/// `1 - I_x(df/2, 1/2) / 2` at `x = df / (df + t²)` for `t ≥ 0`, by symmetry below.
pub fn t_cdf(t: f64, df: f64) -> f64 {
    let tail = 0.5 * regularized_beta(df / (df + t * t), 0.5 * df, 0.5);
    if t >= 0.0 {
        1.0 - tail
    } else {
        tail
    }
}

/// The regularized incomplete beta function `I_x(a, b)`, by its continued fraction
/// (Press et al., Numerical Recipes, §6.4), on the side where it converges fast.
fn regularized_beta(x: f64, a: f64, b: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let ln_front = ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln();
    if x < (a + 1.0) / (a + b + 2.0) {
        ln_front.exp() * beta_fraction(x, a, b) / a
    } else {
        1.0 - ln_front.exp() * beta_fraction(1.0 - x, b, a) / b
    }
}

/// Lentz's evaluation of the continued fraction of `I_x(a, b)`.
fn beta_fraction(x: f64, a: f64, b: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let mut c = 1.0;
    let mut d = 1.0 - (a + b) * x / (a + 1.0);
    d = 1.0 / if d.abs() < TINY { TINY } else { d };
    let mut h = d;
    for m in 1..=300 {
        let m = m as f64;
        let m2 = 2.0 * m;
        // The even then the odd term of the fraction.
        for coef in [
            m * (b - m) * x / ((a + m2 - 1.0) * (a + m2)),
            -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1.0)),
        ] {
            d = 1.0 + coef * d;
            d = 1.0 / if d.abs() < TINY { TINY } else { d };
            c = 1.0 + coef / c;
            if c.abs() < TINY {
                c = TINY;
            }
            h *= d * c;
        }
        if (d * c - 1.0).abs() < 1e-15 {
            break;
        }
    }
    h
}

/// `ln Γ(x)` for `x > 0`: Lanczos' approximation (g = 7, 9 terms), ~15 digits.
fn ln_gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x) Γ(1 - x) = π / sin(πx).
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let t = x + 7.5;
    let series = G[1..]
        .iter()
        .enumerate()
        .fold(G[0], |acc, (i, g)| acc + g / (x + 1.0 + i as f64));
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + series.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t_quantiles_match_the_published_table() {
        // Two-sided 95 % critical values, e.g. NIST/SEMATECH e-Handbook, table 1.3.6.7.2.
        let table = [
            (1.0, 12.706),
            (2.0, 4.303),
            (3.0, 3.182),
            (4.0, 2.776),
            (5.0, 2.571),
            (9.0, 2.262),
            (10.0, 2.228),
            (29.0, 2.045),
            (100.0, 1.984),
        ];
        for (df, t) in table {
            let q = t_quantile(0.975, df);
            assert!((q - t).abs() < 5e-4, "df {df}: {q} vs {t}");
        }
        // One-sided 99 % and 90 % rows of the same table.
        assert!((t_quantile(0.99, 4.0) - 3.747).abs() < 5e-4);
        assert!((t_quantile(0.90, 10.0) - 1.372).abs() < 5e-4);
        assert!((t_quantile(0.025, 4.0) + 2.776).abs() < 5e-4);
        // Far out, t tends to the normal: 1.960.
        assert!((t_quantile(0.975, 1e6) - 1.960).abs() < 1e-3);
    }

    #[test]
    fn the_t_cdf_of_one_degree_is_the_cauchy_cdf() {
        for t in [-3.0f64, -0.5, 0.0, 0.7, 2.0, 40.0] {
            let cauchy = 0.5 + t.atan() / std::f64::consts::PI;
            assert!((t_cdf(t, 1.0) - cauchy).abs() < 1e-12, "{t}");
        }
    }

    #[test]
    fn a_hand_computed_interval() {
        // Paired differences -30, -20, -25, -15, -10: mean -20, squared deviations
        // 100 + 0 + 25 + 25 + 100 = 250, variance 250 / 4 = 62.5, sd 7.9057;
        // half-width 2.7764 · 7.9057 / √5 = 9.8163.
        let s = summarize(&[-30.0, -20.0, -25.0, -15.0, -10.0]);
        assert_eq!(s.n, 5);
        assert_eq!(s.mean, -20.0);
        assert!((s.sd - 7.905_694).abs() < 1e-6);
        let (lo, hi) = s.ci95.unwrap();
        assert!(
            (lo + 29.816).abs() < 2e-3 && (hi + 10.184).abs() < 2e-3,
            "{lo} {hi}"
        );
        assert_eq!(
            verdict(&s, "test errors"),
            "distillation made 20.0 fewer test errors (95 % CI 10.2 to 29.8 fewer)"
        );
    }

    #[test]
    fn verdicts_say_what_the_interval_allows() {
        let unclear = summarize(&[-10.0, 5.0, -3.0]);
        assert!(
            verdict(&unclear, "test errors")
                .starts_with("no difference that this study can detect"),
            "{}",
            verdict(&unclear, "test errors")
        );
        let worse = summarize(&[10.0, 12.0, 11.0]);
        assert!(verdict(&worse, "test errors").starts_with("distillation made 11.0 more"));
        let one = summarize(&[-7.0]);
        assert_eq!(one.ci95, None);
        assert!(verdict(&one, "test errors").contains("--seeds 2"));
    }
}
