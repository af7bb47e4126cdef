//! Criterion benches of the CPU kernels: `cargo bench --bench kernels`.
//!
//! Each bench checks its output once against a reference, then times it, and reports
//! throughput as `Throughput::Elements(flops)`, so criterion's "Gelem/s" reads GFLOP/s.
//! One function per kernel family, all listed in `criterion_group!` at the bottom.
//!
//! The reference for `matmul` is the `gemm` crate (run in the same process, on the same
//! inputs, with rayon on two threads), so the two can be compared within one run on a
//! shared, noisy machine.

use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use kernels::cpu::matmul;
use kernels::params::MatmulParams;
use std::hint::black_box;
use std::time::Duration;

/// Deterministic inputs in `[-1, 1)` (a 64-bit LCG: no need for `rand` here).
fn inputs(len: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// `c = op(a) · op(b)` by the `gemm` crate, with the same layout conventions as ours.
fn gemm_crate(a: &[f32], b: &[f32], c: &mut [f32], p: &MatmulParams) {
    let (m, n, k) = (p.m as usize, p.n as usize, p.k as usize);
    assert!(a.len() >= m * k && b.len() >= k * n && c.len() >= m * n);
    // (row stride, column stride) of op(a) and op(b) as stored.
    let (a_rs, a_cs) = if p.trans_a == 1 {
        (1, m as isize)
    } else {
        (k as isize, 1)
    };
    let (b_rs, b_cs) = if p.trans_b == 1 {
        (1, k as isize)
    } else {
        (n as isize, 1)
    };
    // SAFETY: the strides address exactly the m·k, k·n and m·n values checked above.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::Rayon(2),
        )
    }
}

/// Panics unless our `matmul` agrees with `gemm` within `γ_k Σ|a||b|`, `γ_k ≈ 2k·ε`.
fn check_matmul(a: &[f32], b: &[f32], p: &MatmulParams, name: &str) {
    let (m, n) = (p.m as usize, p.n as usize);
    let (mut ours, mut reference, mut magnitude) =
        (vec![0.0; m * n], vec![0.0; m * n], vec![0.0; m * n]);
    matmul(a, b, &mut ours, p);
    gemm_crate(a, b, &mut reference, p);
    let abs = |v: &[f32]| v.iter().map(|x| x.abs()).collect::<Vec<_>>();
    gemm_crate(&abs(a), &abs(b), &mut magnitude, p);
    let gamma = 2.0 * p.k as f32 * f32::EPSILON;
    for (i, ((o, r), mag)) in ours.iter().zip(&reference).zip(&magnitude).enumerate() {
        assert!(
            (o - r).abs() <= gamma * mag + 1e-6,
            "{name}: c[{i}] = {o}, gemm says {r} (Σ|a||b| = {mag})"
        );
    }
}

/// Times ours and `gemm` on one problem, as `<group>/ours/<label>` and `<group>/gemm/<label>`.
fn bench_matmul_pair(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    p: MatmulParams,
    label: &str,
) {
    let (m, n, k) = (p.m as usize, p.n as usize, p.k as usize);
    let (a, b) = (inputs(m * k, 1), inputs(k * n, 2));
    check_matmul(&a, &b, &p, label);
    let mut c = vec![0.0; m * n];
    group.throughput(Throughput::Elements(p.flops()));
    group.bench_function(BenchmarkId::new("ours", label), |bench| {
        bench.iter(|| matmul(black_box(&a), black_box(&b), black_box(&mut c), &p))
    });
    group.bench_function(BenchmarkId::new("gemm", label), |bench| {
        bench.iter(|| gemm_crate(black_box(&a), black_box(&b), black_box(&mut c), &p))
    });
}

/// Square `c = a · b` against `gemm`: `matmul/ours/512`, `matmul/gemm/512`, ...
fn matmul_square(crit: &mut Criterion) {
    let mut group = crit.benchmark_group("matmul");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    for size in [128, 256, 512, 1024] {
        bench_matmul_pair(
            &mut group,
            MatmulParams::new(size, size, size),
            &size.to_string(),
        );
    }
    // About 0.1 s a call: ten samples of one call each, and a longer window.
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .measurement_time(Duration::from_secs(6));
    bench_matmul_pair(&mut group, MatmulParams::new(2048, 2048, 2048), "2048");
    group.finish();
}

/// The three forms a conv2d layer calls through im2col (32 output channels, 3×3 over 32
/// input channels, 26×26 outputs, batch 8) and a linear layer's weight gradient.
fn matmul_layer_shapes(crit: &mut Criterion) {
    let mut group = crit.benchmark_group("matmul_layers");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    let (c_out, ck, pixels) = (32, 32 * 9, 8 * 26 * 26);
    let shapes = [
        // out (c_out, pixels) = w (c_out, ck) · cols (ck, pixels)
        ("conv_forward", MatmulParams::new(c_out, pixels, ck)),
        // d_w (c_out, ck) = d_out (c_out, pixels) · colsᵀ, cols stored (ck, pixels)
        (
            "conv_backward_weight",
            MatmulParams::new(c_out, ck, pixels).trans_b(),
        ),
        // d_cols (ck, pixels) = wᵀ · d_out, w stored (c_out, ck)
        (
            "conv_backward_input",
            MatmulParams::new(ck, pixels, c_out).trans_a(),
        ),
        // y (64, 128) = x (64, 1600) · wᵀ, w stored (128, 1600)
        ("linear_forward", MatmulParams::new(64, 128, 1600).trans_b()),
    ];
    for (label, p) in shapes {
        bench_matmul_pair(&mut group, p, label);
    }
    group.finish();
}

criterion_group!(benches, matmul_square, matmul_layer_shapes);
criterion_main!(benches);
