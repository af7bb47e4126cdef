//! Criterion benches of the kernels: `cargo bench --bench kernels`.
//!
//! Each bench checks its output once against a reference, then times it, and reports
//! throughput: compute-bound kernels as `Throughput::Elements(flops)`, so criterion's
//! "Gelem/s" reads GFLOP/s (a multiply-add is two FLOPs); memory-bound ones as
//! `Throughput::BytesDecimal(bytes read + bytes written)`, so it prints GB/s. One
//! function per kernel family, all listed in `criterion_group!` at the bottom.
//!
//! Shapes are the teacher-cnn's at batch 64 (conv1: 1→32 channels, 3×3 over 28×28;
//! conv2: 32→64 over 13×13; fc1: 1600→128) and the distillation loss over one batch
//! ([64, 10]) and over the whole MNIST training set ([60000, 10]).
//!
//! References, timed in the same run where a comparison matters, so that the two can be
//! compared on a shared, noisy machine:
//! - `matmul`: the `gemm` crate (same inputs, rayon on two threads);
//! - `conv2d_forward`: a direct seven-loop convolution, parallel over samples;
//! - `conv2d_relu_pool_forward`: the four kernels it fuses, run one after the other;
//! - the `conv2d_pool_backward` kernels: `max_pool2d_backward` into memory, then
//!   `bias_backward` and the conv backwards that read it;
//! - `softmax_kl_forward`: the unfused three-pass softmax-KL written below, with libm's
//!   `exp` (`unfused_softmax_kl`) and with the kernel's own vectorised `exp`
//!   (`unfused_softmax_kl_vexp`; its `ln` stays libm's).
//!
//! The GPU twins of every kernel are in `benches/gpu_kernels.rs`
//! (`cargo bench --bench gpu_kernels`); the inputs, shapes and checks both use are in
//! `benches/common/mod.rs`.

use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, SamplingMode,
    Throughput,
};
use kernels::cpu::{self, matmul};
use kernels::params::*;
use rayon::prelude::*;
use std::hint::black_box;
use std::time::Duration;

mod common;
use common::*;

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
    matmul(a, b, &mut ours, p).unwrap();
    gemm_crate(a, b, &mut reference, p);
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
        bench.iter(|| matmul(black_box(&a), black_box(&b), black_box(&mut c), &p).unwrap())
    });
    group.bench_function(BenchmarkId::new("gemm", label), |bench| {
        bench.iter(|| gemm_crate(black_box(&a), black_box(&b), black_box(&mut c), &p))
    });
}

/// Square `c = a · b` against `gemm`: `matmul/ours/512`, `matmul/gemm/512`, ...
fn matmul_square(crit: &mut Criterion) {
    announce_isa();
    let mut group = crit.benchmark_group("matmul");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    for size in [128, 256, 512, 1024] {
        bench_matmul_pair(
            &mut group,
            MatmulParams::new(size, size, size).unwrap(),
            &size.to_string(),
        );
    }
    // About 0.1 s a call: ten samples of one call each, and a longer window.
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .measurement_time(Duration::from_secs(6));
    bench_matmul_pair(
        &mut group,
        MatmulParams::new(2048, 2048, 2048).unwrap(),
        "2048",
    );
    group.finish();
}

/// The three forms a conv2d layer calls through im2col (32 output channels, 3×3 over 32
/// input channels, 26×26 outputs, batch 8), and the teacher-cnn's two linear layers at
/// batch 64, forward and both backwards (`matmul_layers/{ours,gemm}/fc1_forward`, ...).
fn matmul_layer_shapes(crit: &mut Criterion) {
    let mut group = crit.benchmark_group("matmul_layers");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    let (c_out, ck, pixels) = (32, 32 * 9, 8 * 26 * 26);
    let shapes = [
        // out (c_out, pixels) = w (c_out, ck) · cols (ck, pixels)
        (
            "conv_forward",
            MatmulParams::new(c_out, pixels, ck).unwrap(),
        ),
        // d_w (c_out, ck) = d_out (c_out, pixels) · colsᵀ, cols stored (ck, pixels)
        (
            "conv_backward_weight",
            MatmulParams::new(c_out, ck, pixels).unwrap().trans_b(),
        ),
        // d_cols (ck, pixels) = wᵀ · d_out, w stored (c_out, ck)
        (
            "conv_backward_input",
            MatmulParams::new(ck, pixels, c_out).unwrap().trans_a(),
        ),
    ];
    for (label, p) in shapes {
        bench_matmul_pair(&mut group, p, label);
    }
    for (label, p) in teacher_linear_shapes() {
        bench_matmul_pair(&mut group, p, &label);
    }
    group.finish();
}

// ---------------------------------------------------------------------------------------
// Shared helpers for the benches below.

/// A group for kernels of microseconds to a few milliseconds.
fn quick_group<'a>(crit: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut group = crit.benchmark_group(name);
    group
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(1200))
        .sample_size(20);
    group
}

// ---------------------------------------------------------------------------------------
// conv2d

/// The textbook convolution: for every output, a direct sum over `(ci, ki, kj)`; no
/// im2col, no tiling. Samples run in parallel (rayon), so that the comparison with ours
/// measures the algorithm, not the thread count.
fn naive_conv2d_forward(x: &[f32], weight: &[f32], out: &mut [f32], p: &Conv2dParams) {
    let u = |v: u32| v as usize;
    let (c_in, h, w, c_out) = (u(p.c_in), u(p.h), u(p.w), u(p.c_out));
    let (kh, kw, stride, pad) = (u(p.kh), u(p.kw), u(p.stride), u(p.pad));
    let (h_out, w_out) = (u(p.h_out), u(p.w_out));
    out.par_chunks_mut(c_out * h_out * w_out)
        .zip(x.par_chunks(c_in * h * w))
        .for_each(|(out, x)| {
            for co in 0..c_out {
                for oy in 0..h_out {
                    for ox in 0..w_out {
                        let mut acc = 0.0f32;
                        for ci in 0..c_in {
                            for ki in 0..kh {
                                let iy = (oy * stride + ki) as isize - pad as isize;
                                if iy < 0 || iy >= h as isize {
                                    continue;
                                }
                                for kj in 0..kw {
                                    let ix = (ox * stride + kj) as isize - pad as isize;
                                    if ix < 0 || ix >= w as isize {
                                        continue;
                                    }
                                    let (iy, ix) = (iy as usize, ix as usize);
                                    acc += weight[((co * c_in + ci) * kh + ki) * kw + kj]
                                        * x[(ci * h + iy) * w + ix];
                                }
                            }
                        }
                        out[(co * h_out + oy) * w_out + ox] = acc;
                    }
                }
            }
        });
}

/// The direct backwards, in f64, for the check only: `grad_x` scatters each output's
/// gradient through its window (parallel over samples), `grad_weight` sums
/// `g[n, co, oy, ox] · x[n, ci, ...]` over the batch (parallel over output channels).
/// Called with `|x|`, `|w|` and `|g|` they give the magnitudes `Σ|a||b|` of each sum.
fn naive_conv2d_backwards(
    x: &[f32],
    weight: &[f32],
    g: &[f32],
    p: &Conv2dParams,
) -> (Vec<f64>, Vec<f64>) {
    let u = |v: u32| v as usize;
    let (c_in, h, w, c_out) = (u(p.c_in), u(p.h), u(p.w), u(p.c_out));
    let (kh, kw, stride, pad) = (u(p.kh), u(p.kw), u(p.stride), u(p.pad));
    let (h_out, w_out) = (u(p.h_out), u(p.w_out));
    // (iy, ix) of window offset (ki, kj) at output (oy, ox), or None in the padding.
    let at = |oy: usize, ox: usize, ki: usize, kj: usize| {
        let iy = (oy * stride + ki).checked_sub(pad).filter(|&v| v < h)?;
        let ix = (ox * stride + kj).checked_sub(pad).filter(|&v| v < w)?;
        Some((iy, ix))
    };
    let mut grad_x = vec![0.0f64; p.input_len()];
    grad_x
        .par_chunks_mut(c_in * h * w)
        .zip(g.par_chunks(c_out * h_out * w_out))
        .for_each(|(grad_x, g)| {
            for co in 0..c_out {
                for oy in 0..h_out {
                    for ox in 0..w_out {
                        let go = g[(co * h_out + oy) * w_out + ox] as f64;
                        for ci in 0..c_in {
                            for ki in 0..kh {
                                for kj in 0..kw {
                                    if let Some((iy, ix)) = at(oy, ox, ki, kj) {
                                        let wv = weight[((co * c_in + ci) * kh + ki) * kw + kj];
                                        grad_x[(ci * h + iy) * w + ix] += wv as f64 * go;
                                    }
                                }
                            }
                        }
                    }
                }
            }
        });
    let mut grad_w = vec![0.0f64; p.weight_len()];
    grad_w
        .par_chunks_mut(c_in * kh * kw)
        .enumerate()
        .for_each(|(co, grad_w)| {
            for n in 0..u(p.n) {
                let (x, g) = (&x[n * c_in * h * w..], &g[n * c_out * h_out * w_out..]);
                for oy in 0..h_out {
                    for ox in 0..w_out {
                        let go = g[(co * h_out + oy) * w_out + ox] as f64;
                        for ci in 0..c_in {
                            for ki in 0..kh {
                                for kj in 0..kw {
                                    if let Some((iy, ix)) = at(oy, ox, ki, kj) {
                                        let xv = x[(ci * h + iy) * w + ix] as f64;
                                        grad_w[(ci * kh + ki) * kw + kj] += xv * go;
                                    }
                                }
                            }
                        }
                    }
                }
            }
        });
    (grad_x, grad_w)
}

/// Checks ours against the naive convolution once: the forward against the timed
/// naive loop, the backwards against the f64 loops above, each within the rounding of
/// a sum of its length.
fn check_conv2d(x: &[f32], weight: &[f32], g: &[f32], p: &Conv2dParams, name: &str) {
    let window = (p.kh * p.kw) as usize;
    let to64 = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<f64>>();
    let (mut ours, mut reference, mut magnitude) = (
        vec![0.0; p.output_len()],
        vec![0.0; p.output_len()],
        vec![0.0; p.output_len()],
    );
    cpu::conv2d_forward(x, weight, &mut ours, p).unwrap();
    naive_conv2d_forward(x, weight, &mut reference, p);
    naive_conv2d_forward(&abs(x), &abs(weight), &mut magnitude, p);
    // Both sides round in f32: count both sums.
    let k = p.c_in as usize * window;
    assert_within_rounding(
        &format!("{name} forward"),
        &ours,
        &to64(&reference),
        &to64(&magnitude),
        2 * k,
    );
    let mut grad_x = vec![0.0; p.input_len()];
    let mut grad_w = vec![0.0; p.weight_len()];
    cpu::conv2d_backward_input(g, weight, &mut grad_x, p).unwrap();
    cpu::conv2d_backward_weight(x, g, &mut grad_w, p).unwrap();
    let (ref_x, ref_w) = naive_conv2d_backwards(x, weight, g, p);
    let (mag_x, mag_w) = naive_conv2d_backwards(&abs(x), &abs(weight), &abs(g), p);
    let batch_pixels = (p.n * p.h_out * p.w_out) as usize;
    let c_out = p.c_out as usize;
    assert_within_rounding(
        &format!("{name} backward_input"),
        &grad_x,
        &ref_x,
        &mag_x,
        c_out * window,
    );
    assert_within_rounding(
        &format!("{name} backward_weight"),
        &grad_w,
        &ref_w,
        &mag_w,
        batch_pixels,
    );
}

/// `conv2d/{forward,naive_forward,backward_input,backward_weight}/{conv1,conv2}`:
/// the teacher's two conv layers at batch 64, in GFLOP/s (the forward's FLOPs for all
/// three: each backward takes as many multiply-adds).
fn conv2d(crit: &mut Criterion) {
    let mut group = crit.benchmark_group("conv2d");
    for (label, p) in [("conv1", teacher_conv1()), ("conv2", teacher_conv2())] {
        let x = inputs(p.input_len(), 11);
        let weight = inputs(p.weight_len(), 12);
        let g = inputs(p.output_len(), 13);
        check_conv2d(&x, &weight, &g, &p, label);
        let (mut out, mut grad_x, mut grad_w) = (
            vec![0.0; p.output_len()],
            vec![0.0; p.input_len()],
            vec![0.0; p.weight_len()],
        );
        group
            .throughput(Throughput::Elements(p.flops()))
            .sampling_mode(SamplingMode::Auto)
            .warm_up_time(Duration::from_millis(300))
            .measurement_time(Duration::from_millis(1500))
            .sample_size(20);
        group.bench_function(BenchmarkId::new("forward", label), |b| {
            b.iter(|| cpu::conv2d_forward(black_box(&x), &weight, &mut out, &p).unwrap())
        });
        group.bench_function(BenchmarkId::new("backward_input", label), |b| {
            b.iter(|| cpu::conv2d_backward_input(black_box(&g), &weight, &mut grad_x, &p).unwrap())
        });
        group.bench_function(BenchmarkId::new("backward_weight", label), |b| {
            b.iter(|| cpu::conv2d_backward_weight(black_box(&x), &g, &mut grad_w, &p).unwrap())
        });
        // conv2's naive forward takes tens of milliseconds: ten samples, flat.
        group
            .sampling_mode(SamplingMode::Flat)
            .sample_size(10)
            .measurement_time(Duration::from_secs(2));
        group.bench_function(BenchmarkId::new("naive_forward", label), |b| {
            b.iter(|| naive_conv2d_forward(black_box(&x), &weight, &mut out, &p))
        });
    }
    group.finish();
}

/// The unfused conv block the network ran before `conv2d_relu_pool_forward`:
/// `conv2d_forward`, `bias_forward`, `relu_forward`, `max_pool2d_forward`, each over
/// memory, into buffers allocated once.
struct UnfusedBlock {
    z: Vec<f32>,
    biased: Vec<f32>,
    relu: Vec<f32>,
    axis: AxisParams,
    elementwise: ElementwiseParams,
    pool: Pool2dParams,
}

impl UnfusedBlock {
    fn new(p: &Conv2dParams) -> Self {
        let plane = (p.h_out * p.w_out) as usize;
        Self {
            z: vec![0.0; p.output_len()],
            biased: vec![0.0; p.output_len()],
            relu: vec![0.0; p.output_len()],
            axis: AxisParams::new(p.n as usize, p.c_out as usize, plane).unwrap(),
            elementwise: ElementwiseParams::new(p.output_len()).unwrap(),
            pool: p.pool().expect("a poolable conv output"),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn run(
        &mut self,
        x: &[f32],
        w: &[f32],
        b: &[f32],
        out: &mut [f32],
        arg: &mut [u32],
        p: &Conv2dParams,
    ) {
        cpu::conv2d_forward(x, w, &mut self.z, p).unwrap();
        cpu::bias_forward(&self.z, b, &mut self.biased, &self.axis).unwrap();
        cpu::relu_forward(&self.biased, &mut self.relu, &self.elementwise).unwrap();
        cpu::max_pool2d_forward(&self.relu, out, arg, &self.pool).unwrap();
    }
}

/// `conv2d_relu_pool/{fused,unfused}/{conv1,conv2}`: the teacher-cnn's two conv → bias
/// → ReLU → 2×2 pool blocks at batch 64, as the network's forward runs them (fused) and
/// as it ran them before (four kernels), in GFLOP/s of the conv. Checked bit for bit
/// against each other first.
fn conv2d_relu_pool(crit: &mut Criterion) {
    let mut group = crit.benchmark_group("conv2d_relu_pool");
    for (label, p) in [("conv1", teacher_conv1()), ("conv2", teacher_conv2())] {
        let x = inputs(p.input_len(), 11);
        let weight = inputs(p.weight_len(), 12);
        let bias = inputs(p.c_out as usize, 13);
        let mut unfused = UnfusedBlock::new(&p);
        let (mut out, mut arg) = (vec![0.0; p.pooled_len()], vec![0u32; p.pooled_len()]);
        let (mut want, mut want_arg) = (out.clone(), arg.clone());
        cpu::conv2d_relu_pool_forward(&x, &weight, &bias, &mut out, &mut arg, &p).unwrap();
        unfused.run(&x, &weight, &bias, &mut want, &mut want_arg, &p);
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        assert!(
            bits(&out) == bits(&want) && arg == want_arg,
            "conv2d_relu_pool/{label}: the fused block differs from the unfused one"
        );
        group
            .throughput(Throughput::Elements(p.flops()))
            .warm_up_time(Duration::from_millis(300))
            .measurement_time(Duration::from_millis(1500))
            .sample_size(20);
        group.bench_function(BenchmarkId::new("fused", label), |b| {
            b.iter(|| {
                cpu::conv2d_relu_pool_forward(black_box(&x), &weight, &bias, &mut out, &mut arg, &p)
                    .unwrap()
            })
        });
        group.bench_function(BenchmarkId::new("unfused", label), |b| {
            b.iter(|| unfused.run(black_box(&x), &weight, &bias, &mut want, &mut want_arg, &p))
        });
    }
    group.finish();
}

/// The backward of one conv block as training runs it, after the ReLU mask on the pooled
/// gradient (the same kernel either way): the input gradient when `needs_x` (conv1's
/// input is the image, which needs none), then the weight and bias gradients.
fn block_backward(
    fused: bool,
    needs_x: bool,
    [x, weight, g]: [&[f32]; 3],
    argmax: &[u32],
    [grad_x, grad_w, grad_b, dz]: [&mut Vec<f32>; 4],
    p: &Conv2dParams,
) {
    if fused {
        if needs_x {
            cpu::conv2d_pool_backward_input(g, argmax, weight, grad_x, p).unwrap();
        }
        cpu::conv2d_pool_backward_weight(x, g, argmax, grad_w, grad_b, p).unwrap();
        return;
    }
    let plane = (p.h_out * p.w_out) as usize;
    let axis = AxisParams::new(p.n as usize, p.c_out as usize, plane).unwrap();
    cpu::max_pool2d_backward(g, argmax, dz, &p.pool().unwrap()).unwrap();
    cpu::bias_backward(dz, grad_b, &axis).unwrap();
    if needs_x {
        cpu::conv2d_backward_input(dz, weight, grad_x, p).unwrap();
    }
    cpu::conv2d_backward_weight(x, dz, grad_w, p).unwrap();
}

/// `conv2d_relu_pool_backward/{fused,unfused}/{conv1,conv2}`: the teacher-cnn's two
/// blocks' backward at batch 64 from the pooled gradient, as the network runs it (the
/// `conv2d_pool_backward` kernels, which sum one term per pooled value) and
/// as it ran it before (`max_pool2d_backward` into memory, then `bias_backward` and the
/// conv backwards reading it); conv1's input is the image, so it has no input gradient.
/// GFLOP/s of the dense conv products (what the fused kernels skip counts as done);
/// checked against each other, up to rounding, first.
fn conv2d_relu_pool_backward(crit: &mut Criterion) {
    let mut group = crit.benchmark_group("conv2d_relu_pool_backward");
    for (label, p, needs_x) in [
        ("conv1", teacher_conv1(), false),
        ("conv2", teacher_conv2(), true),
    ] {
        let (x, weight, bias) = (
            inputs(p.input_len(), 11),
            inputs(p.weight_len(), 12),
            inputs(p.c_out as usize, 13),
        );
        let (mut out, mut argmax) = (vec![0.0; p.pooled_len()], vec![0u32; p.pooled_len()]);
        cpu::conv2d_relu_pool_forward(&x, &weight, &bias, &mut out, &mut argmax, &p).unwrap();
        // As training has it: the pooled gradient after the ReLU's mask.
        let g = inputs(p.pooled_len(), 14);
        let g: Vec<f32> = g
            .iter()
            .zip(&out)
            .map(|(&g, &o)| if o > 0.0 { g } else { 0.0 })
            .collect();
        let outputs = || {
            [
                p.input_len(),
                p.weight_len(),
                p.c_out as usize,
                p.output_len(),
            ]
            .map(|n| vec![f32::NAN; n])
        };
        let (mut fused, mut unfused) = (outputs(), outputs());
        for (is_fused, [gx, gw, gb, dz]) in [(true, &mut fused), (false, &mut unfused)] {
            block_backward(
                is_fused,
                needs_x,
                [&x, &weight, &g],
                &argmax,
                [gx, gw, gb, dz],
                &p,
            );
        }
        // Equal up to rounding: within 1e-5 of the magnitudes, the unfused backward of |x|, |w|, |g|.
        let mut scale = outputs();
        let abs = |v: &[f32]| v.iter().map(|v| v.abs()).collect::<Vec<_>>();
        let [sx, sw, sb, sz] = &mut scale;
        let (ax, aw, ag) = (abs(&x), abs(&weight), abs(&g));
        block_backward(
            false,
            needs_x,
            [&ax, &aw, &ag],
            &argmax,
            [sx, sw, sb, sz],
            &p,
        );
        // Each output the block computes (NaN-filled before: each must be written).
        let computed = if needs_x { 0..3 } else { 1..3 };
        let differs = computed.into_iter().any(|i| {
            let values = fused[i].iter().zip(&unfused[i]).zip(&scale[i]);
            values
                .into_iter()
                // NOTE: a NaN anywhere counts as a difference.
                .any(|((a, b), s)| (a - b).abs() > 1e-5 * s || (a - b).is_nan())
        });
        assert!(
            !differs,
            "conv2d_relu_pool_backward/{label}: the fused backward differs from the unfused one"
        );
        let products = if needs_x { 2 } else { 1 };
        group
            .throughput(Throughput::Elements(products * p.flops()))
            .warm_up_time(Duration::from_millis(300))
            .measurement_time(Duration::from_millis(1500))
            .sample_size(20);
        for (name, is_fused, out) in [
            ("fused", true, &mut fused),
            ("unfused", false, &mut unfused),
        ] {
            group.bench_function(BenchmarkId::new(name, label), |b| {
                b.iter(|| {
                    let [gx, gw, gb, dz] = &mut *out;
                    block_backward(
                        is_fused,
                        needs_x,
                        [black_box(&x), &weight, &g],
                        &argmax,
                        [gx, gw, gb, dz],
                        &p,
                    )
                })
            });
        }
    }
    group.finish();
}

// ---------------------------------------------------------------------------------------
// Memory-bound kernels at the teacher's activation shapes, in GB/s.

/// `max_pool2d/{forward,backward}/{conv1,conv2}`: 2×2 pooling of the ReLU'd conv outputs,
/// (64, 32, 26, 26) -> 13×13 and (64, 64, 11, 11) -> 5×5. Bytes: `x` or `grad_x` once,
/// and `out` (or `grad_out`) and `argmax` once each.
fn max_pool2d(crit: &mut Criterion) {
    let mut group = quick_group(crit, "max_pool2d");
    for (label, c, side) in [("conv1", 32, 26), ("conv2", 64, 11)] {
        let p = Pool2dParams::new(BATCH, c, side, side, 2, 2).expect("pool shape");
        let x = inputs(p.input_len(), 21);
        let g = inputs(p.output_len(), 22);
        let (mut out, mut argmax, mut grad_x) = (
            vec![0.0; p.output_len()],
            vec![0u32; p.output_len()],
            vec![0.0; p.input_len()],
        );
        // Reference: every window scanned in row-major order, the first maximum wins.
        cpu::max_pool2d_forward(&x, &mut out, &mut argmax, &p).unwrap();
        cpu::max_pool2d_backward(&g, &argmax, &mut grad_x, &p).unwrap();
        let (plane, out_plane, w_out) = (
            (side * side),
            p.output_len() / (BATCH * c),
            p.w_out as usize,
        );
        let mut ref_grad_x = vec![0.0; p.input_len()];
        for (j, (&o, &a)) in out.iter().zip(&argmax).enumerate() {
            let (pl, oy, ox) = (j / out_plane, (j % out_plane) / w_out, j % w_out);
            let mut best = (f32::NEG_INFINITY, 0);
            for ky in 0..2 {
                for kx in 0..2 {
                    let i = (2 * oy + ky) * side + 2 * ox + kx;
                    if x[pl * plane + i] > best.0 {
                        best = (x[pl * plane + i], i as u32);
                    }
                }
            }
            assert_eq!((o, a), best, "max_pool2d_forward {label}: output {j}");
            ref_grad_x[pl * plane + a as usize] += g[j];
        }
        assert_eq!(grad_x, ref_grad_x, "max_pool2d_backward {label}");
        let traffic = bytes(p.input_len() + 2 * p.output_len());
        group.throughput(Throughput::BytesDecimal(traffic));
        group.bench_function(BenchmarkId::new("forward", label), |b| {
            b.iter(|| cpu::max_pool2d_forward(black_box(&x), &mut out, &mut argmax, &p).unwrap())
        });
        group.bench_function(BenchmarkId::new("backward", label), |b| {
            b.iter(|| cpu::max_pool2d_backward(black_box(&g), &argmax, &mut grad_x, &p).unwrap())
        });
    }
    group.finish();
}

/// `activation/{relu,leaky_relu}_{forward,backward}/conv1` on conv1's output (64, 32, 26,
/// 26) (leaky ReLU at slope 0.2, for a network that puts it there), and
/// `activation/{dropout_forward,dropout_backward}/mlp_hidden` on a teacher-mlp hidden
/// layer (64, 1200), p = 0.5 (the teacher-cnn has no dropout).
fn activation(crit: &mut Criterion) {
    let mut group = quick_group(crit, "activation");
    let len = BATCH * 32 * 26 * 26;
    let p = ElementwiseParams::new(len).unwrap();
    let (x, g) = (inputs(len, 31), inputs(len, 32));
    let (mut out, mut grad_x) = (vec![0.0; len], vec![0.0; len]);
    cpu::relu_forward(&x, &mut out, &p).unwrap();
    cpu::relu_backward(&x, &g, &mut grad_x, &p).unwrap();
    let relu: Vec<f32> = x.iter().map(|&v| if v > 0.0 { v } else { 0.0 }).collect();
    let relu_grad: Vec<f32> = x
        .iter()
        .zip(&g)
        .map(|(&v, &g)| if v > 0.0 { g } else { 0.0 })
        .collect();
    assert_eq!(out, relu, "relu_forward");
    assert_eq!(grad_x, relu_grad, "relu_backward");
    group.throughput(Throughput::BytesDecimal(bytes(2 * len)));
    group.bench_function(BenchmarkId::new("relu_forward", "conv1"), |b| {
        b.iter(|| cpu::relu_forward(black_box(&x), &mut out, &p).unwrap())
    });
    group.throughput(Throughput::BytesDecimal(bytes(3 * len)));
    group.bench_function(BenchmarkId::new("relu_backward", "conv1"), |b| {
        b.iter(|| cpu::relu_backward(black_box(&x), &g, &mut grad_x, &p).unwrap())
    });

    let p = ElementwiseParams::with_alpha(len, 0.2).unwrap();
    cpu::leaky_relu_forward(&x, &mut out, &p).unwrap();
    cpu::leaky_relu_backward(&x, &g, &mut grad_x, &p).unwrap();
    for i in 0..len {
        let slope = if x[i] > 0.0 { 1.0 } else { 0.2 };
        let want = if x[i] > 0.0 { x[i] } else { 0.2 * x[i] };
        assert_eq!((out[i], grad_x[i]), (want, slope * g[i]), "leaky_relu {i}");
    }
    group.throughput(Throughput::BytesDecimal(bytes(2 * len)));
    group.bench_function(BenchmarkId::new("leaky_relu_forward", "conv1"), |b| {
        b.iter(|| cpu::leaky_relu_forward(black_box(&x), &mut out, &p).unwrap())
    });
    group.throughput(Throughput::BytesDecimal(bytes(3 * len)));
    group.bench_function(BenchmarkId::new("leaky_relu_backward", "conv1"), |b| {
        b.iter(|| cpu::leaky_relu_backward(black_box(&x), &g, &mut grad_x, &p).unwrap())
    });

    let len = BATCH * 1200;
    let p = DropoutParams::new(len, 0.5, 7).unwrap();
    let (x, g) = (inputs(len, 33), inputs(len, 34));
    let (mut out, mut mask, mut grad_x) = (vec![0.0; len], vec![0.0; len], vec![0.0; len]);
    cpu::dropout_forward(&x, &mut out, &mut mask, &p).unwrap();
    cpu::dropout_backward(&g, &mask, &mut grad_x, &p).unwrap();
    for i in 0..len {
        let keep = cpu::dropout_hash(p.seed, i as u32) >= p.threshold;
        let m = if keep { p.scale } else { 0.0 };
        assert_eq!(
            (mask[i], out[i], grad_x[i]),
            (m, x[i] * m, g[i] * m),
            "dropout {i}"
        );
    }
    // Forward: reads x, writes out and mask. Backward: reads grad_out and mask.
    group.throughput(Throughput::BytesDecimal(bytes(3 * len)));
    group.bench_function(BenchmarkId::new("dropout_forward", "mlp_hidden"), |b| {
        b.iter(|| cpu::dropout_forward(black_box(&x), &mut out, &mut mask, &p).unwrap())
    });
    group.bench_function(BenchmarkId::new("dropout_backward", "mlp_hidden"), |b| {
        b.iter(|| cpu::dropout_backward(black_box(&g), &mask, &mut grad_x, &p).unwrap())
    });
    group.finish();
}

/// `elementwise/{bias_forward,bias_backward,sum_axis,sum_axis_backward,add,scale,axpy}/conv1`,
/// all over conv1's output (64, 32, 26, 26), the bias and sum over its channel axis; and
/// `elementwise/copy_reference/conv1`, a parallel copy of that much memory, the
/// reference for the memory-bound kernels' fraction of the bandwidth.
fn elementwise(crit: &mut Criterion) {
    let mut group = quick_group(crit, "elementwise");
    let (outer, channels, inner) = (BATCH, 32, 26 * 26);
    let axis = AxisParams::new(outer, channels, inner).unwrap();
    let len = axis.len();
    let (x, y, bias) = (inputs(len, 41), inputs(len, 42), inputs(channels, 43));
    let flat = |o: usize, c: usize, i: usize| (o * channels + c) * inner + i;

    // bias_forward / bias_backward
    let (mut out, mut grad_bias) = (vec![0.0; len], vec![0.0; channels]);
    cpu::bias_forward(&x, &bias, &mut out, &axis).unwrap();
    cpu::bias_backward(&x, &mut grad_bias, &axis).unwrap();
    let mut ref_out = vec![0.0; len];
    let mut ref_grad_bias = vec![0.0f64; channels];
    for o in 0..outer {
        for c in 0..channels {
            for i in 0..inner {
                ref_out[flat(o, c, i)] = x[flat(o, c, i)] + bias[c];
                ref_grad_bias[c] += x[flat(o, c, i)] as f64;
            }
        }
    }
    assert_eq!(out, ref_out, "bias_forward");
    let ref_grad_bias: Vec<f32> = ref_grad_bias.iter().map(|&v| v as f32).collect();
    assert_close("bias_backward", &grad_bias, &ref_grad_bias, 1e-3);
    group.throughput(Throughput::BytesDecimal(bytes(2 * len)));
    group.bench_function(BenchmarkId::new("bias_forward", "conv1"), |b| {
        b.iter(|| cpu::bias_forward(black_box(&x), &bias, &mut out, &axis).unwrap())
    });
    group.throughput(Throughput::BytesDecimal(bytes(len + channels)));
    group.bench_function(BenchmarkId::new("bias_backward", "conv1"), |b| {
        b.iter(|| cpu::bias_backward(black_box(&x), &mut grad_bias, &axis).unwrap())
    });

    // sum_axis / sum_axis_backward over the channels
    let (mut sum, mut spread) = (vec![0.0; outer * inner], vec![0.0; len]);
    cpu::sum_axis(&x, &mut sum, &axis).unwrap();
    cpu::sum_axis_backward(&sum, &mut spread, &axis).unwrap();
    for o in 0..outer {
        for i in 0..inner {
            let reference: f32 = (0..channels).map(|c| x[flat(o, c, i)]).sum();
            assert_close("sum_axis", &sum[o * inner + i..][..1], &[reference], 1e-5);
            for c in 0..channels {
                assert_eq!(
                    spread[flat(o, c, i)],
                    sum[o * inner + i],
                    "sum_axis_backward"
                );
            }
        }
    }
    group.throughput(Throughput::BytesDecimal(bytes(len + outer * inner)));
    group.bench_function(BenchmarkId::new("sum_axis", "conv1"), |b| {
        b.iter(|| cpu::sum_axis(black_box(&x), &mut sum, &axis).unwrap())
    });
    group.bench_function(BenchmarkId::new("sum_axis_backward", "conv1"), |b| {
        b.iter(|| cpu::sum_axis_backward(black_box(&sum), &mut spread, &axis).unwrap())
    });

    // copy_reference: a parallel memcpy over the same chunks as the kernels, the
    // bandwidth that a kernel reading and writing this much memory could reach here.
    let mut copy = vec![0.0; len];
    let parallel_copy = |src: &[f32], dst: &mut [f32]| {
        dst.par_chunks_mut(1 << 14)
            .zip(src.par_chunks(1 << 14))
            .for_each(|(d, s)| d.copy_from_slice(s))
    };
    parallel_copy(&x, &mut copy);
    assert_eq!(copy, x, "copy_reference");
    group.throughput(Throughput::BytesDecimal(bytes(2 * len)));
    group.bench_function(BenchmarkId::new("copy_reference", "conv1"), |b| {
        b.iter(|| parallel_copy(black_box(&x), &mut copy))
    });

    // add, scale, axpy
    let p = ElementwiseParams::with_alpha(len, 0.5).unwrap();
    let mut out = vec![0.0; len];
    cpu::add(&x, &y, &mut out, &p).unwrap();
    let reference: Vec<f32> = x.iter().zip(&y).map(|(&a, &b)| a + b).collect();
    assert_eq!(out, reference, "add");
    group.throughput(Throughput::BytesDecimal(bytes(3 * len)));
    group.bench_function(BenchmarkId::new("add", "conv1"), |b| {
        b.iter(|| cpu::add(black_box(&x), &y, &mut out, &p).unwrap())
    });
    cpu::scale(&x, &mut out, &p).unwrap();
    let reference: Vec<f32> = x.iter().map(|&v| v * 0.5).collect();
    assert_eq!(out, reference, "scale");
    group.throughput(Throughput::BytesDecimal(bytes(2 * len)));
    group.bench_function(BenchmarkId::new("scale", "conv1"), |b| {
        b.iter(|| cpu::scale(black_box(&x), &mut out, &p).unwrap())
    });
    let mut acc = y.clone();
    cpu::axpy(&x, &mut acc, &p).unwrap();
    let reference: Vec<f32> = x.iter().zip(&y).map(|(&a, &b)| b + 0.5 * a).collect();
    assert_close("axpy", &acc, &reference, 1e-6);
    // Reads x and y, writes y. Repeated calls keep adding 0.5·x to y: harmless.
    group.throughput(Throughput::BytesDecimal(bytes(3 * len)));
    group.bench_function(BenchmarkId::new("axpy", "conv1"), |b| {
        b.iter(|| cpu::axpy(black_box(&x), &mut acc, &p).unwrap())
    });
    group.finish();
}

// ---------------------------------------------------------------------------------------
// The softmax family, and the fused softmax-KL against an unfused three-pass one.

/// Rows per rayon task in the unfused reference: the same blocks as the kernels (about
/// 16 K logits each), so that both sides use the two cores the same way.
fn rows_per_block(cols: usize) -> usize {
    ((1 << 14) / cols.max(1)).max(1)
}

/// Runs `f` over matching row blocks of `a` (read) and `out` (written): on the calling
/// thread when there is one block, as the kernels do, else in parallel.
fn by_blocks(a: &[f32], out: &mut [f32], cols: usize, f: impl Fn(&[f32], &mut [f32]) + Sync) {
    let chunk = rows_per_block(cols) * cols;
    if a.len() <= chunk {
        return f(a, out);
    }
    a.par_chunks(chunk)
        .zip(out.par_chunks_mut(chunk))
        .for_each(|(a, out)| f(a, out));
}

/// `exp` of every value, by libm: one scalar call each.
fn libm_exp(x: &mut [f32]) {
    x.iter_mut().for_each(|v| *v = v.exp());
}

/// The softmax-KL as a framework without a fused kernel computes it, in three passes
/// over memory with two `(rows, cols)` intermediates (allocated by [`UnfusedKl::new`],
/// outside the timed loop), each elementwise `exp` over a whole block of rows by `exp`:
///
/// 1. `p = softmax(t / T)` into `p_buf`;
/// 2. `log_q = log_softmax(s / T)` into `log_q_buf`;
/// 3. `loss = T² Σ_j p_j (ln p_j - log_q_j)` (0 where `p_j = 0`) and
///    `grad = T (exp(log_q) - p)` from the two buffers.
///
/// Per logit that is three `exp` and one `ln`, where the fused kernel takes two `exp`.
struct UnfusedKl {
    loss: Vec<f32>,
    grad: Vec<f32>,
    p_buf: Vec<f32>,
    log_q_buf: Vec<f32>,
}

impl UnfusedKl {
    fn new(rows: usize, cols: usize) -> Self {
        let zeros = |n| vec![0.0; n];
        Self {
            loss: zeros(rows),
            grad: zeros(rows * cols),
            p_buf: zeros(rows * cols),
            log_q_buf: zeros(rows * cols),
        }
    }

    /// The three passes into `self.loss` and `self.grad`.
    fn run(&mut self, student: &[f32], teacher: &[f32], params: &RowParams, exp: fn(&mut [f32])) {
        let Self {
            loss,
            grad,
            p_buf,
            log_q_buf,
        } = self;
        let (cols, temperature) = (params.cols as usize, params.temperature);
        let inv_t = 1.0 / temperature;
        let row_max = |x: &[f32]| x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        // (x - max) / T per row of a block: every value <= 0.
        let shifted = |x: &[f32], out: &mut [f32]| {
            for (x, out) in x.chunks_exact(cols).zip(out.chunks_exact_mut(cols)) {
                let max = row_max(x);
                for (o, &v) in out.iter_mut().zip(x) {
                    *o = (v - max) * inv_t;
                }
            }
        };
        by_blocks(teacher, p_buf, cols, |t, p| {
            shifted(t, p);
            exp(p);
            for p in p.chunks_exact_mut(cols) {
                let inv_sum = 1.0 / p.iter().sum::<f32>();
                p.iter_mut().for_each(|p| *p *= inv_sum);
            }
        });
        by_blocks(student, log_q_buf, cols, |s, log_q| {
            shifted(s, log_q);
            exp(log_q);
            for (s, log_q) in s.chunks_exact(cols).zip(log_q.chunks_exact_mut(cols)) {
                let lse = log_q.iter().sum::<f32>().ln();
                let max = row_max(s);
                for (o, &v) in log_q.iter_mut().zip(s) {
                    *o = (v - max) * inv_t - lse;
                }
            }
        });
        let pass3 = |p: &[f32], log_q: &[f32], loss: &mut [f32], grad: &mut [f32]| {
            grad.copy_from_slice(log_q);
            exp(grad);
            let rows = p.chunks_exact(cols).zip(log_q.chunks_exact(cols)).zip(loss);
            for (((p, log_q), loss), grad) in rows.zip(grad.chunks_exact_mut(cols)) {
                let mut kl = 0.0;
                for ((g, &p), &lq) in grad.iter_mut().zip(p).zip(log_q) {
                    if p != 0.0 {
                        kl += p * (p.ln() - lq);
                    }
                    *g = temperature * (*g - p);
                }
                *loss = temperature * temperature * kl;
            }
        };
        let block = rows_per_block(cols);
        if loss.len() <= block {
            return pass3(p_buf, log_q_buf, loss, grad);
        }
        p_buf
            .par_chunks(block * cols)
            .zip(log_q_buf.par_chunks(block * cols))
            .zip(loss.par_chunks_mut(block))
            .zip(grad.par_chunks_mut(block * cols))
            .for_each(|(((p, lq), l), g)| pass3(p, lq, l, g));
    }
}

/// `log softmax(x)` of one row in f64, the reference for the CPU row kernels.
fn ref_log_softmax(x: &[f32]) -> Vec<f64> {
    let max = x.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
    let lse = x.iter().map(|&v| (v as f64 - max).exp()).sum::<f64>().ln();
    x.iter().map(|&v| v as f64 - max - lse).collect()
}

/// `softmax/<kernel>/<rows>x10` at one batch ([64, 10]) and the whole training set
/// ([60000, 10]), in GB/s (logits, labels, losses and gradients each read or written
/// once). `unfused_softmax_kl` is charged the same bytes as `softmax_kl_forward`, so the
/// ratio of their GB/s is the speedup of the fused kernel.
fn softmax(crit: &mut Criterion) {
    let mut group = quick_group(crit, "softmax");
    let (temperature, alpha) = (4.0, 0.7);
    for rows in [BATCH, 60_000] {
        let cols = 10;
        let label = format!("{rows}x{cols}");
        let len = rows * cols;
        let params = RowParams::new(rows, cols)
            .unwrap()
            .with_temperature(temperature)
            .with_alpha(alpha);
        // Logits in [-5, 5), as a trained network's are spread.
        let scaled = |seed| {
            inputs(len, seed)
                .iter()
                .map(|v| 5.0 * v)
                .collect::<Vec<f32>>()
        };
        let (s, t) = (scaled(51), scaled(52));
        let labels: Vec<u32> = (0..rows).map(|r| (r * 7 % cols) as u32).collect();
        let (mut loss, mut grad) = (vec![0.0; rows], vec![0.0; len]);

        // softmax_kl_forward against the unfused three passes, with libm's exp (the
        // reference) and with the fused kernel's vectorised exp. NOTE: the second still
        // takes libm's ln per logit and runs its loops on the baseline's vectors, so its
        // ratio to the kernel is fusion plus those, not fusion alone.
        let unfused = [
            ("unfused_softmax_kl", libm_exp as fn(&mut [f32])),
            (
                "unfused_softmax_kl_vexp",
                cpu::vmath::exp_nonpositive_in_place,
            ),
        ];
        let mut reference = UnfusedKl::new(rows, cols);
        cpu::softmax_kl_forward(&s, &t, &mut loss, &mut grad, &params).unwrap();
        for (name, exp) in unfused {
            reference.run(&s, &t, &params, exp);
            assert_close(&format!("{name} loss"), &loss, &reference.loss, 1e-4);
            assert_close(&format!("{name} grad"), &grad, &reference.grad, 1e-5);
        }
        let kl_bytes = bytes(3 * len + rows);
        group.throughput(Throughput::BytesDecimal(kl_bytes));
        group.bench_function(BenchmarkId::new("softmax_kl_forward", &label), |b| {
            b.iter(|| {
                cpu::softmax_kl_forward(black_box(&s), &t, &mut loss, &mut grad, &params).unwrap()
            })
        });
        for (name, exp) in unfused {
            group.bench_function(BenchmarkId::new(name, &label), |b| {
                b.iter(|| reference.run(black_box(&s), &t, &params, exp))
            });
        }

        // cross_entropy_forward against f64 rows.
        let mut ce_grad = vec![0.0; len];
        cpu::cross_entropy_forward(&s, &labels, &mut loss, &mut ce_grad, &params).unwrap();
        for (r, (row, &y)) in s.chunks_exact(cols).zip(&labels).enumerate() {
            let ls = ref_log_softmax(row);
            assert_close(
                "cross_entropy_forward loss",
                &loss[r..][..1],
                &[-ls[y as usize] as f32],
                1e-5,
            );
            let g: Vec<f32> = (0..cols)
                .map(|j| (ls[j].exp() - (j == y as usize) as u8 as f64) as f32)
                .collect();
            assert_close(
                "cross_entropy_forward grad",
                &ce_grad[r * cols..][..cols],
                &g,
                1e-5,
            );
        }
        group.throughput(Throughput::BytesDecimal(bytes(2 * len + 2 * rows)));
        group.bench_function(BenchmarkId::new("cross_entropy_forward", &label), |b| {
            b.iter(|| {
                cpu::cross_entropy_forward(black_box(&s), &labels, &mut loss, &mut ce_grad, &params)
                    .unwrap()
            })
        });

        // kd_loss_forward: its parts are the cross-entropy and the softmax-KL above, and
        // its gradient their blend.
        let (mut pairs, mut kd_grad) = (vec![0.0; 2 * rows], vec![0.0; len]);
        cpu::kd_loss_forward(&s, &t, &labels, &mut pairs, &mut kd_grad, &params).unwrap();
        let ce: Vec<f32> = pairs.iter().step_by(2).copied().collect();
        let kl: Vec<f32> = pairs.iter().skip(1).step_by(2).copied().collect();
        assert_close("kd_loss_forward ce", &ce, &loss, 1e-6);
        assert_close("kd_loss_forward kl", &kl, &reference.loss, 1e-4);
        let blend: Vec<f32> = ce_grad
            .iter()
            .zip(&grad)
            .map(|(&c, &k)| (1.0 - alpha) * c + alpha * k)
            .collect();
        assert_close("kd_loss_forward grad", &kd_grad, &blend, 1e-5);
        group.throughput(Throughput::BytesDecimal(bytes(3 * len + 3 * rows)));
        group.bench_function(BenchmarkId::new("kd_loss_forward", &label), |b| {
            b.iter(|| {
                cpu::kd_loss_forward(
                    black_box(&s),
                    &t,
                    &labels,
                    &mut pairs,
                    &mut kd_grad,
                    &params,
                )
                .unwrap()
            })
        });

        // row_loss_mean of those pairs and row_loss_backward of those gradients: the
        // distillation loss's reduction (one dispatch on the GPU) and its backward.
        let pm = RowParams::new(rows, 2).unwrap().with_alpha(alpha);
        let (mut mean, mut means) = ([0.0f32], [0.0f32; 2]);
        cpu::row_loss_mean(&pairs, &mut mean, &mut means, &pm).unwrap();
        let column_mean = |c: usize| -> f32 {
            let sum: f64 = pairs.iter().skip(c).step_by(2).map(|&v| v as f64).sum();
            (sum / rows as f64) as f32
        };
        let want = [column_mean(0), column_mean(1)];
        assert_close("row_loss_mean", &means, &want, 1e-6);
        let blended = (1.0 - alpha) * want[0] + alpha * want[1];
        assert_close("row_loss_mean loss", &mean, &[blended], 1e-6);
        group.throughput(Throughput::BytesDecimal(bytes(2 * rows + 3)));
        group.bench_function(BenchmarkId::new("row_loss_mean", &label), |b| {
            b.iter(|| cpu::row_loss_mean(black_box(&pairs), &mut mean, &mut means, &pm).unwrap())
        });
        let pb = ElementwiseParams::with_alpha(len, 1.0 / rows as f32).unwrap();
        let mut scaled = vec![0.0; len];
        cpu::row_loss_backward(&kd_grad, &[1.0], &mut scaled, &pb).unwrap();
        let want: Vec<f32> = kd_grad.iter().map(|g| g * (1.0 / rows as f32)).collect();
        assert_eq!(scaled, want, "row_loss_backward");
        group.throughput(Throughput::BytesDecimal(bytes(2 * len + 1)));
        group.bench_function(BenchmarkId::new("row_loss_backward", &label), |b| {
            b.iter(|| {
                cpu::row_loss_backward(black_box(&kd_grad), &[1.0], &mut scaled, &pb).unwrap()
            })
        });

        // log_softmax_forward / log_softmax_backward, argmax_rows.
        let (mut out, mut grad_x) = (vec![0.0; len], vec![0.0; len]);
        cpu::log_softmax_forward(&s, &mut out, &params).unwrap();
        cpu::log_softmax_backward(&out, &t, &mut grad_x, &params).unwrap();
        let mut argmax = vec![0u32; rows];
        cpu::argmax_rows(&s, &mut argmax, &params).unwrap();
        for (r, row) in s.chunks_exact(cols).enumerate() {
            let ls = ref_log_softmax(row);
            let ls32: Vec<f32> = ls.iter().map(|&v| v as f32).collect();
            assert_close("log_softmax_forward", &out[r * cols..][..cols], &ls32, 1e-5);
            let g = &t[r * cols..][..cols];
            let sum: f64 = g.iter().map(|&v| v as f64).sum();
            let gx: Vec<f32> = (0..cols)
                .map(|j| (g[j] as f64 - ls[j].exp() * sum) as f32)
                .collect();
            assert_close(
                "log_softmax_backward",
                &grad_x[r * cols..][..cols],
                &gx,
                1e-5,
            );
            let best = (1..cols).fold(0, |b, j| if row[j] > row[b] { j } else { b });
            assert_eq!(argmax[r] as usize, best, "argmax_rows row {r}");
        }
        group.throughput(Throughput::BytesDecimal(bytes(2 * len)));
        group.bench_function(BenchmarkId::new("log_softmax_forward", &label), |b| {
            b.iter(|| cpu::log_softmax_forward(black_box(&s), &mut out, &params).unwrap())
        });
        group.throughput(Throughput::BytesDecimal(bytes(3 * len)));
        group.bench_function(BenchmarkId::new("log_softmax_backward", &label), |b| {
            b.iter(|| cpu::log_softmax_backward(black_box(&out), &t, &mut grad_x, &params).unwrap())
        });
        group.throughput(Throughput::BytesDecimal(bytes(len + rows)));
        group.bench_function(BenchmarkId::new("argmax_rows", &label), |b| {
            b.iter(|| cpu::argmax_rows(black_box(&s), &mut argmax, &params).unwrap())
        });
    }

    // gather_rows: a distillation step's teacher logits, 64 rows of the cache of the
    // training set's (60000, 10).
    let (src_rows, cols) = (60_000, 10);
    let table = inputs(src_rows * cols, 53);
    let index: Vec<u32> = (0..BATCH).map(|i| (i * 937 % src_rows) as u32).collect();
    let pg = GatherParams::new(BATCH, cols, src_rows).unwrap();
    let mut gathered = vec![0.0; BATCH * cols];
    cpu::gather_rows(&table, &index, &mut gathered, &pg).unwrap();
    for (r, &i) in index.iter().enumerate() {
        let row = &table[i as usize * cols..][..cols];
        assert_eq!(&gathered[r * cols..][..cols], row, "gather_rows row {r}");
    }
    group.throughput(Throughput::BytesDecimal(bytes(2 * BATCH * cols + BATCH)));
    group.bench_function(BenchmarkId::new("gather_rows", "64_of_60000x10"), |b| {
        b.iter(|| cpu::gather_rows(black_box(&table), &index, &mut gathered, &pg).unwrap())
    });
    group.finish();
}

// ---------------------------------------------------------------------------------------
// Optimizer steps.

/// `optim/{sgd_step,adam_step}/teacher-cnn`: one step over each of the teacher-cnn's eight
/// parameter tensors (225,034 values in all), one call per tensor as a training step
/// makes them. GB/s: SGD with momentum reads param, grad, velocity and writes param,
/// velocity (5 × 4 bytes a value); Adam reads param, grad, m, v and writes param, m, v (7).
fn optim(crit: &mut Criterion) {
    let mut group = quick_group(crit, "optim");
    let lens = teacher_cnn_lens();
    let total: usize = lens.iter().sum();
    assert_eq!(total, 225_034, "teacher-cnn parameter count");
    let params0 = inputs(total, 61)
        .iter()
        .map(|v| 0.1 * v)
        .collect::<Vec<f32>>();
    let grads = inputs(total, 62);
    let split = |v: &[f32]| split_by(v, &lens);
    let g = split(&grads);

    // SGD, momentum 0.9: one step from zero velocity is v = g, p -= lr·g.
    let sgd = |len| SgdParams {
        len: len as u32,
        lr: 0.01,
        momentum: 0.9,
        weight_decay: 0.0,
    };
    let (mut p, mut v) = (split(&params0), split(&vec![0.0; total]));
    for ((p, g), v) in p.iter_mut().zip(&g).zip(v.iter_mut()) {
        cpu::sgd_step(p, g, v, &sgd(g.len())).unwrap();
    }
    let reference: Vec<f32> = params0
        .iter()
        .zip(&grads)
        .map(|(&x, &g)| x - 0.01 * g)
        .collect();
    assert_close("sgd_step", &p.concat(), &reference, 1e-6);
    assert_eq!(v.concat(), grads, "sgd_step velocity");
    group.throughput(Throughput::BytesDecimal(bytes(5 * total)));
    group.bench_function(BenchmarkId::new("sgd_step", "teacher-cnn"), |b| {
        b.iter(|| {
            for ((p, g), v) in p.iter_mut().zip(&g).zip(v.iter_mut()) {
                cpu::sgd_step(black_box(p), g, v, &sgd(g.len())).unwrap();
            }
        })
    });

    // Adam, step 1: m = 0.1 g, v = 0.001 g², and the bias-corrected update is
    // lr · g / (|g| + eps) (to rounding).
    let adam = |len| AdamParams::new(len, 1e-3, 0.9, 0.999, 1e-8, 0.0, false, 1).unwrap();
    let (mut p, mut m, mut v) = (
        split(&params0),
        split(&vec![0.0; total]),
        split(&vec![0.0; total]),
    );
    for (((p, g), m), v) in p.iter_mut().zip(&g).zip(m.iter_mut()).zip(v.iter_mut()) {
        cpu::adam_step(p, g, m, v, &adam(g.len())).unwrap();
    }
    let reference: Vec<f32> = params0
        .iter()
        .zip(&grads)
        .map(|(&x, &g)| (x as f64 - 1e-3 * g as f64 / (g.abs() as f64 + 1e-8)) as f32)
        .collect();
    assert_close("adam_step", &p.concat(), &reference, 1e-6);
    group.throughput(Throughput::BytesDecimal(bytes(7 * total)));
    group.bench_function(BenchmarkId::new("adam_step", "teacher-cnn"), |b| {
        b.iter(|| {
            let state = m.iter_mut().zip(v.iter_mut());
            for ((p, g), (m, v)) in p.iter_mut().zip(&g).zip(state) {
                cpu::adam_step(black_box(p), g, m, v, &adam(g.len())).unwrap();
            }
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    matmul_square,
    matmul_layer_shapes,
    conv2d,
    conv2d_relu_pool,
    conv2d_relu_pool_backward,
    max_pool2d,
    activation,
    elementwise,
    softmax,
    optim
);
criterion_main!(benches);
