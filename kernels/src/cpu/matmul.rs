//! Matrix multiply in its transpose forms: `c = op(a) · op(b)` (see [`MatmulParams`]).

use crate::params::*;

/// NOTE: a naive placeholder with the final signature, until the blocked kernel lands.
pub fn matmul(a: &[f32], b: &[f32], c: &mut [f32], p: &MatmulParams) {
    let (m, n, k) = (p.m as usize, p.n as usize, p.k as usize);
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0.0f32;
            for l in 0..k {
                let av = if p.trans_a == 1 { a[l * m + i] } else { a[i * k + l] };
                let bv = if p.trans_b == 1 { b[j * k + l] } else { b[l * n + j] };
                acc += av * bv;
            }
            if p.accumulate == 1 {
                c[i * n + j] += acc;
            } else {
                c[i * n + j] = acc;
            }
        }
    }
}
