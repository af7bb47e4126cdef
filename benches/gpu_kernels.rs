//! Criterion benches of every WGSL kernel: `cargo bench --bench gpu_kernels`.
//!
//! The GPU twins of `benches/kernels.rs`, at the same shapes (the teacher-cnn at batch 64,
//! the losses at [64, 10] and [60000, 10]) and with the same throughput units, on the
//! adapter `GpuContext::new(AdapterChoice::Any)` picks; without one the whole file is
//! skipped, loudly (a bench, unlike the tests, ignores `KD_REQUIRE_GPU`). Ids are
//! `gpu/<kernel>/<shape>`.
//!
//! Each bench launches its kernel once and checks every output against the CPU kernel
//! on the same inputs (the CPU kernels are checked against naive references in
//! `benches/kernels.rs` and the tests), then times one launch plus `ctx.read` of a
//! one-word buffer: `read` submits the recorded work and waits until the device is
//! idle, so a sample covers the kernel's completed work but not copying its output back
//! (outputs stay on the device during training). For kernels of microseconds that wait
//! is most of a sample on a hardware GPU: read those rows as the cost of one launch
//! with a sync, not of the kernel alone (`distill train --profile` gives kernel-only
//! times from timestamp queries).
//!
//! On a software adapter (llvmpipe, about 1 GFLOP/s on two cores) matmul runs at 128
//! and 256 only and the convolutions at conv2 only.

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion};
use criterion::{SamplingMode, Throughput};
use kernels::cpu;
use kernels::gpu::{self, AdapterChoice, GpuBuffer, GpuContext, GpuError};
use kernels::params::*;
use std::sync::Arc;
use std::time::Duration;

mod common;
use common::*;

/// The `gpu` group on one adapter.
struct GpuBench<'a> {
    ctx: Arc<GpuContext>,
    group: BenchmarkGroup<'a, WallTime>,
    /// A one-word buffer: reading it is the sync point of every sample.
    fence: GpuBuffer,
}

impl GpuBench<'_> {
    /// Launches once, runs `check` (which reads the outputs back and compares them with
    /// the CPU kernel's), then times `launch` plus the sync as `gpu/<kernel>/<shape>`.
    fn bench(
        &mut self,
        kernel: &str,
        shape: &str,
        throughput: Throughput,
        launch: impl Fn(&GpuContext) -> Result<(), GpuError>,
        check: impl FnOnce(&GpuContext),
    ) {
        let ctx = &*self.ctx;
        launch(ctx).unwrap_or_else(|e| panic!("gpu {kernel} {shape}: {e}"));
        check(ctx);
        self.group.throughput(throughput);
        self.group
            .bench_function(BenchmarkId::new(kernel, shape), |b| {
                b.iter(|| {
                    launch(ctx).expect("gpu launch");
                    ctx.read(&self.fence).expect("gpu read")
                })
            });
    }
}

fn read(ctx: &GpuContext, buf: &GpuBuffer) -> Vec<f32> {
    ctx.read(buf).expect("gpu read")
}

fn read_u32(ctx: &GpuContext, buf: &GpuBuffer) -> Vec<u32> {
    ctx.read_u32(buf).expect("gpu read")
}

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

fn gpu_kernels(crit: &mut Criterion) {
    // The CPU kernels are the reference each GPU kernel is checked against.
    announce_isa();
    let ctx = match GpuContext::new(AdapterChoice::Any) {
        Ok(ctx) => ctx,
        Err(e) => {
            eprintln!("*** gpu/...: SKIPPED, no GPU adapter: {e} ***");
            return;
        }
    };
    let software = ctx.is_software();
    eprintln!(
        "gpu/...: adapter {}, {}",
        ctx.adapter_name(),
        if software {
            "a SOFTWARE adapter (llvmpipe): the small shapes only"
        } else {
            "hardware"
        }
    );
    let mut group = crit.benchmark_group("gpu");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    let fence = ctx.zeros(1).unwrap();
    let mut gpu = GpuBench { ctx, group, fence };
    matmul(&mut gpu, software);
    conv2d(&mut gpu, software);
    max_pool2d(&mut gpu);
    activation(&mut gpu);
    elementwise(&mut gpu);
    optim(&mut gpu);
    softmax(&mut gpu);
    gpu.group.finish();
}

/// `gpu/matmul/<size>` (square) and `gpu/matmul/fc1_forward`, ... (the teacher-cnn's
/// linear layers at batch 64), in GFLOP/s.
fn matmul(gpu: &mut GpuBench, software: bool) {
    let sizes: &[usize] = if software {
        &[128, 256]
    } else {
        &[128, 256, 512, 1024, 2048]
    };
    let square = sizes.iter().map(|&size| {
        (
            size.to_string(),
            MatmulParams::new(size, size, size).unwrap(),
        )
    });
    for (label, p) in square.chain(teacher_linear_shapes()) {
        let (m, n, k) = (p.m as usize, p.n as usize, p.k as usize);
        let (a, b) = (inputs(m * k, 1), inputs(k * n, 2));
        let (mut want, mut magnitude) = (vec![0.0; m * n], vec![0.0; m * n]);
        cpu::matmul(&a, &b, &mut want, &p).unwrap();
        cpu::matmul(&abs(&a), &abs(&b), &mut magnitude, &p).unwrap();
        let (ga, gb, gc) = (
            gpu.ctx.upload(&a).unwrap(),
            gpu.ctx.upload(&b).unwrap(),
            gpu.ctx.zeros(m * n).unwrap(),
        );
        gpu.bench(
            "matmul",
            &label,
            Throughput::Elements(p.flops()),
            |ctx| gpu::matmul(ctx, &ga, &gb, &gc, &p),
            |ctx| {
                let got = read(ctx, &gc);
                assert_within_rounding("gpu matmul", &got, &f64s(&want), &f64s(&magnitude), k);
            },
        );
    }
}

/// `gpu/conv2d_{forward,backward_input,backward_weight}/{conv1,conv2}`, the fused
/// block `gpu/conv2d_relu_pool_forward/...` and its backward
/// `gpu/conv2d_pool_backward_{input,weight}/...` (the latter with the bias gradient), in
/// GFLOP/s (each counted as the conv forward's FLOPs).
fn conv2d(gpu: &mut GpuBench, software: bool) {
    let mut shapes = vec![("conv2", teacher_conv2())];
    if !software {
        shapes.insert(0, ("conv1", teacher_conv1()));
    }
    for (label, p) in shapes {
        let (x, w) = (inputs(p.input_len(), 11), inputs(p.weight_len(), 12));
        let g = inputs(p.output_len(), 13);
        let (ax, aw, ag) = (abs(&x), abs(&w), abs(&g));
        let (gx, gw, gg) = (
            gpu.ctx.upload(&x).unwrap(),
            gpu.ctx.upload(&w).unwrap(),
            gpu.ctx.upload(&g).unwrap(),
        );
        let flops = Throughput::Elements(p.flops());
        let window = (p.kh * p.kw) as usize;

        let (mut want, mut magnitude) = (vec![0.0; p.output_len()], vec![0.0; p.output_len()]);
        cpu::conv2d_forward(&x, &w, &mut want, &p).unwrap();
        cpu::conv2d_forward(&ax, &aw, &mut magnitude, &p).unwrap();
        let out = gpu.ctx.zeros(p.output_len()).unwrap();
        let terms = p.c_in as usize * window;
        gpu.bench(
            "conv2d_forward",
            label,
            flops.clone(),
            |ctx| gpu::conv2d_forward(ctx, &gx, &gw, &out, &p),
            |ctx| {
                let got = read(ctx, &out);
                assert_within_rounding(
                    "gpu conv2d_forward",
                    &got,
                    &f64s(&want),
                    &f64s(&magnitude),
                    terms,
                );
            },
        );

        // The fused block, against the CPU's: the conv's rounding, then exact ReLU and max.
        let bias = inputs(p.c_out as usize, 14);
        let (mut want, mut argmax) = (vec![0.0; p.pooled_len()], vec![0u32; p.pooled_len()]);
        cpu::conv2d_relu_pool_forward(&x, &w, &bias, &mut want, &mut argmax, &p).unwrap();
        let (gbias, pooled, garg) = (
            gpu.ctx.upload(&bias).unwrap(),
            gpu.ctx.zeros(p.pooled_len()).unwrap(),
            gpu.ctx.zeros(p.pooled_len()).unwrap(),
        );
        let scale = want.iter().fold(1.0f32, |m, v| m.max(v.abs()));
        gpu.bench(
            "conv2d_relu_pool_forward",
            label,
            flops.clone(),
            |ctx| gpu::conv2d_relu_pool_forward(ctx, &gx, &gw, &gbias, &pooled, &garg, &p),
            |ctx| {
                for (i, (g, c)) in read(ctx, &pooled).iter().zip(&want).enumerate() {
                    assert!(
                        (g - c).abs() <= 1e-4 * scale,
                        "gpu conv2d_relu_pool_forward[{i}]: gpu {g}, cpu {c}"
                    );
                }
            },
        );

        let (mut want, mut magnitude) = (vec![0.0; p.input_len()], vec![0.0; p.input_len()]);
        cpu::conv2d_backward_input(&g, &w, &mut want, &p).unwrap();
        cpu::conv2d_backward_input(&ag, &aw, &mut magnitude, &p).unwrap();
        let grad_x = gpu.ctx.zeros(p.input_len()).unwrap();
        let terms = p.c_out as usize * window;
        gpu.bench(
            "conv2d_backward_input",
            label,
            flops.clone(),
            |ctx| gpu::conv2d_backward_input(ctx, &gg, &gw, &grad_x, &p),
            |ctx| {
                let got = read(ctx, &grad_x);
                let (want, magnitude) = (f64s(&want), f64s(&magnitude));
                assert_within_rounding("gpu conv2d_backward_input", &got, &want, &magnitude, terms);
            },
        );

        let (mut want, mut magnitude) = (vec![0.0; p.weight_len()], vec![0.0; p.weight_len()]);
        cpu::conv2d_backward_weight(&x, &g, &mut want, &p).unwrap();
        cpu::conv2d_backward_weight(&ax, &ag, &mut magnitude, &p).unwrap();
        let grad_w = gpu.ctx.zeros(p.weight_len()).unwrap();
        let terms = (p.n * p.h_out * p.w_out) as usize;
        gpu.bench(
            "conv2d_backward_weight",
            label,
            flops.clone(),
            |ctx| gpu::conv2d_backward_weight(ctx, &gx, &gg, &grad_w, &p),
            |ctx| {
                let got = read(ctx, &grad_w);
                let (want, magnitude) = (f64s(&want), f64s(&magnitude));
                assert_within_rounding(
                    "gpu conv2d_backward_weight",
                    &got,
                    &want,
                    &magnitude,
                    terms,
                );
            },
        );

        // The fused block's backward through its pool, from the fused forward's argmax.
        let gp = inputs(p.pooled_len(), 15);
        let agp = abs(&gp);
        let (ggp, garg) = (
            gpu.ctx.upload(&gp).unwrap(),
            gpu.ctx.upload_u32(&argmax).unwrap(),
        );
        let mut want = [p.input_len(), p.weight_len(), p.c_out as usize].map(|n| vec![0.0; n]);
        let mut magnitude = want.clone();
        for ((g, x, w), [gx, gw, gb]) in [
            ((&gp, &x, &w), &mut want),
            ((&agp, &ax, &aw), &mut magnitude),
        ] {
            cpu::conv2d_pool_backward_input(g, &argmax, w, gx, &p).unwrap();
            cpu::conv2d_pool_backward_weight(x, g, &argmax, gw, gb, &p).unwrap();
        }
        let outs = want.clone().map(|v| gpu.ctx.zeros(v.len()).unwrap());
        let terms = [
            p.c_out as usize * window,
            (p.n * p.h_out * p.w_out) as usize,
            p.pooled_len() / p.c_out as usize,
        ];
        // Outputs `o` of `outs` (the input, weight and bias gradients) against the CPU's.
        let check = |ctx: &GpuContext, name: &str, outputs: std::ops::Range<usize>| {
            for o in outputs {
                let got = read(ctx, &outs[o]);
                let (want, magnitude) = (f64s(&want[o]), f64s(&magnitude[o]));
                let what = format!("gpu {name}[{o}]");
                assert_within_rounding(&what, &got, &want, &magnitude, terms[o]);
            }
        };
        gpu.bench(
            "conv2d_pool_backward_input",
            label,
            flops.clone(),
            |ctx| gpu::conv2d_pool_backward_input(ctx, &ggp, &garg, &gw, &outs[0], &p),
            |ctx| check(ctx, "conv2d_pool_backward_input", 0..1),
        );
        gpu.bench(
            "conv2d_pool_backward_weight",
            label,
            flops.clone(),
            |ctx| gpu::conv2d_pool_backward_weight(ctx, &gx, &ggp, &garg, &outs[1], &outs[2], &p),
            |ctx| check(ctx, "conv2d_pool_backward_weight", 1..3),
        );
    }
}

/// `gpu/max_pool2d_{forward,backward}/{conv1,conv2}`: 2 × 2 windows over each conv's
/// output, in GB/s.
fn max_pool2d(gpu: &mut GpuBench) {
    for (label, c, side) in [("conv1", 32, 26), ("conv2", 64, 11)] {
        let p = Pool2dParams::new(BATCH, c, side, side, 2, 2).expect("pool shape");
        let (x, g) = (inputs(p.input_len(), 21), inputs(p.output_len(), 22));
        let (mut out, mut argmax) = (vec![0.0; p.output_len()], vec![0u32; p.output_len()]);
        let mut grad_x = vec![0.0; p.input_len()];
        cpu::max_pool2d_forward(&x, &mut out, &mut argmax, &p).unwrap();
        cpu::max_pool2d_backward(&g, &argmax, &mut grad_x, &p).unwrap();
        let (gx, gg) = (gpu.ctx.upload(&x).unwrap(), gpu.ctx.upload(&g).unwrap());
        let (g_out, g_argmax) = (
            gpu.ctx.zeros(p.output_len()).unwrap(),
            gpu.ctx.zeros(p.output_len()).unwrap(),
        );
        let g_grad_x = gpu.ctx.zeros(p.input_len()).unwrap();
        let traffic = Throughput::BytesDecimal(bytes(p.input_len() + 2 * p.output_len()));
        gpu.bench(
            "max_pool2d_forward",
            label,
            traffic.clone(),
            |ctx| gpu::max_pool2d_forward(ctx, &gx, &g_out, &g_argmax, &p),
            |ctx| {
                assert_eq!(read(ctx, &g_out), out, "gpu max_pool2d_forward {label}");
                assert_eq!(
                    read_u32(ctx, &g_argmax),
                    argmax,
                    "gpu max_pool2d argmax {label}"
                );
            },
        );
        gpu.bench(
            "max_pool2d_backward",
            label,
            traffic,
            |ctx| gpu::max_pool2d_backward(ctx, &gg, &g_argmax, &g_grad_x, &p),
            |ctx| {
                assert_eq!(
                    read(ctx, &g_grad_x),
                    grad_x,
                    "gpu max_pool2d_backward {label}"
                )
            },
        );
    }
}

/// `gpu/relu_{forward,backward}/conv1` on conv1's output (64, 32, 26, 26), and
/// `gpu/dropout_{forward,backward}/mlp_hidden` on a teacher-mlp hidden layer (64, 1200),
/// p = 0.5; in GB/s.
fn activation(gpu: &mut GpuBench) {
    let len = BATCH * 32 * 26 * 26;
    let p = ElementwiseParams::new(len).unwrap();
    let (x, g) = (inputs(len, 31), inputs(len, 32));
    let (mut out, mut grad_x) = (vec![0.0; len], vec![0.0; len]);
    cpu::relu_forward(&x, &mut out, &p).unwrap();
    cpu::relu_backward(&x, &g, &mut grad_x, &p).unwrap();
    let (gx, gg) = (gpu.ctx.upload(&x).unwrap(), gpu.ctx.upload(&g).unwrap());
    let (g_out, g_grad_x) = (gpu.ctx.zeros(len).unwrap(), gpu.ctx.zeros(len).unwrap());
    gpu.bench(
        "relu_forward",
        "conv1",
        Throughput::BytesDecimal(bytes(2 * len)),
        |ctx| gpu::relu_forward(ctx, &gx, &g_out, &p),
        |ctx| assert_eq!(read(ctx, &g_out), out, "gpu relu_forward"),
    );
    gpu.bench(
        "relu_backward",
        "conv1",
        Throughput::BytesDecimal(bytes(3 * len)),
        |ctx| gpu::relu_backward(ctx, &gx, &gg, &g_grad_x, &p),
        |ctx| assert_eq!(read(ctx, &g_grad_x), grad_x, "gpu relu_backward"),
    );
    let p = ElementwiseParams::with_alpha(len, 0.2).unwrap();
    let (mut out, mut grad_x) = (vec![0.0; len], vec![0.0; len]);
    cpu::leaky_relu_forward(&x, &mut out, &p).unwrap();
    cpu::leaky_relu_backward(&x, &g, &mut grad_x, &p).unwrap();
    gpu.bench(
        "leaky_relu_forward",
        "conv1",
        Throughput::BytesDecimal(bytes(2 * len)),
        |ctx| gpu::leaky_relu_forward(ctx, &gx, &g_out, &p),
        |ctx| assert_eq!(read(ctx, &g_out), out, "gpu leaky_relu_forward"),
    );
    gpu.bench(
        "leaky_relu_backward",
        "conv1",
        Throughput::BytesDecimal(bytes(3 * len)),
        |ctx| gpu::leaky_relu_backward(ctx, &gx, &gg, &g_grad_x, &p),
        |ctx| assert_eq!(read(ctx, &g_grad_x), grad_x, "gpu leaky_relu_backward"),
    );

    let len = BATCH * 1200;
    let p = DropoutParams::new(len, 0.5, 7).unwrap();
    let (x, g) = (inputs(len, 33), inputs(len, 34));
    let (mut out, mut mask, mut grad_x) = (vec![0.0; len], vec![0.0; len], vec![0.0; len]);
    cpu::dropout_forward(&x, &mut out, &mut mask, &p).unwrap();
    cpu::dropout_backward(&g, &mask, &mut grad_x, &p).unwrap();
    let (gx, gg) = (gpu.ctx.upload(&x).unwrap(), gpu.ctx.upload(&g).unwrap());
    let (g_out, g_mask, g_grad_x) = (
        gpu.ctx.zeros(len).unwrap(),
        gpu.ctx.zeros(len).unwrap(),
        gpu.ctx.zeros(len).unwrap(),
    );
    let traffic = Throughput::BytesDecimal(bytes(3 * len));
    gpu.bench(
        "dropout_forward",
        "mlp_hidden",
        traffic.clone(),
        |ctx| gpu::dropout_forward(ctx, &gx, &g_out, &g_mask, &p),
        |ctx| {
            // The same counter hash on both devices: the same mask, bit for bit.
            assert_eq!(read(ctx, &g_mask), mask, "gpu dropout_forward mask");
            assert_eq!(read(ctx, &g_out), out, "gpu dropout_forward");
        },
    );
    gpu.bench(
        "dropout_backward",
        "mlp_hidden",
        traffic,
        |ctx| gpu::dropout_backward(ctx, &gg, &g_mask, &g_grad_x, &p),
        |ctx| assert_eq!(read(ctx, &g_grad_x), grad_x, "gpu dropout_backward"),
    );
}

/// `gpu/{bias_forward,bias_backward,sum_axis,sum_axis_backward,add,scale,axpy}/conv1`,
/// over conv1's output (64, 32, 26, 26), the bias and sum over its channel axis; in GB/s.
fn elementwise(gpu: &mut GpuBench) {
    let (outer, channels, inner) = (BATCH, 32, 26 * 26);
    let axis = AxisParams::new(outer, channels, inner).unwrap();
    let len = axis.len();
    let (x, y, bias) = (inputs(len, 41), inputs(len, 42), inputs(channels, 43));
    let (gx, gy, g_bias) = (
        gpu.ctx.upload(&x).unwrap(),
        gpu.ctx.upload(&y).unwrap(),
        gpu.ctx.upload(&bias).unwrap(),
    );
    let g_out = gpu.ctx.zeros(len).unwrap();

    let mut out = vec![0.0; len];
    cpu::bias_forward(&x, &bias, &mut out, &axis).unwrap();
    gpu.bench(
        "bias_forward",
        "conv1",
        Throughput::BytesDecimal(bytes(2 * len)),
        |ctx| gpu::bias_forward(ctx, &gx, &g_bias, &g_out, &axis),
        |ctx| assert_eq!(read(ctx, &g_out), out, "gpu bias_forward"),
    );
    // Sums of 43,264 values each: the GPU adds in another order.
    let mut grad_bias = vec![0.0; channels];
    cpu::bias_backward(&x, &mut grad_bias, &axis).unwrap();
    let g_grad_bias = gpu.ctx.zeros(channels).unwrap();
    gpu.bench(
        "bias_backward",
        "conv1",
        Throughput::BytesDecimal(bytes(len + channels)),
        |ctx| gpu::bias_backward(ctx, &gx, &g_grad_bias, &axis),
        |ctx| {
            assert_close(
                "gpu bias_backward",
                &read(ctx, &g_grad_bias),
                &grad_bias,
                1e-3,
            )
        },
    );

    let (mut sum, mut spread) = (vec![0.0; outer * inner], vec![0.0; len]);
    cpu::sum_axis(&x, &mut sum, &axis).unwrap();
    cpu::sum_axis_backward(&sum, &mut spread, &axis).unwrap();
    let (g_sum, g_spread) = (
        gpu.ctx.zeros(outer * inner).unwrap(),
        gpu.ctx.zeros(len).unwrap(),
    );
    let g_sum_in = gpu.ctx.upload(&sum).unwrap();
    let traffic = Throughput::BytesDecimal(bytes(len + outer * inner));
    gpu.bench(
        "sum_axis",
        "conv1",
        traffic.clone(),
        |ctx| gpu::sum_axis(ctx, &gx, &g_sum, &axis),
        |ctx| assert_close("gpu sum_axis", &read(ctx, &g_sum), &sum, 1e-5),
    );
    gpu.bench(
        "sum_axis_backward",
        "conv1",
        traffic,
        |ctx| gpu::sum_axis_backward(ctx, &g_sum_in, &g_spread, &axis),
        |ctx| assert_eq!(read(ctx, &g_spread), spread, "gpu sum_axis_backward"),
    );

    let p = ElementwiseParams::with_alpha(len, 0.5).unwrap();
    cpu::add(&x, &y, &mut out, &p).unwrap();
    gpu.bench(
        "add",
        "conv1",
        Throughput::BytesDecimal(bytes(3 * len)),
        |ctx| gpu::add(ctx, &gx, &gy, &g_out, &p),
        |ctx| assert_eq!(read(ctx, &g_out), out, "gpu add"),
    );
    cpu::scale(&x, &mut out, &p).unwrap();
    gpu.bench(
        "scale",
        "conv1",
        Throughput::BytesDecimal(bytes(2 * len)),
        |ctx| gpu::scale(ctx, &gx, &g_out, &p),
        |ctx| assert_eq!(read(ctx, &g_out), out, "gpu scale"),
    );
    // y += 0.5·x in place: the check sees one launch on y; the timed launches keep
    // adding to it, which is harmless.
    let mut acc = y.clone();
    cpu::axpy(&x, &mut acc, &p).unwrap();
    let g_acc = gpu.ctx.upload(&y).unwrap();
    gpu.bench(
        "axpy",
        "conv1",
        Throughput::BytesDecimal(bytes(3 * len)),
        |ctx| gpu::axpy(ctx, &gx, &g_acc, &p),
        |ctx| assert_close("gpu axpy", &read(ctx, &g_acc), &acc, 1e-6),
    );
}

/// `gpu/{sgd_step,adam_step}/teacher-cnn`: one step over each of the teacher-cnn's
/// parameter tensors, one launch per tensor as in training; in GB/s.
fn optim(gpu: &mut GpuBench) {
    let lens = teacher_cnn_lens();
    let total: usize = lens.iter().sum();
    let tensors = |seed: u64, scale: f32| -> Vec<Vec<f32>> {
        let all: Vec<f32> = inputs(total, seed).iter().map(|v| scale * v).collect();
        split_by(&all, &lens)
    };
    let (params0, grads) = (tensors(61, 0.1), tensors(62, 1.0));
    let zeros = || -> Vec<Vec<f32>> { lens.iter().map(|&n| vec![0.0; n]).collect() };
    let ctx = gpu.ctx.clone();
    let upload =
        |ts: &[Vec<f32>]| -> Vec<GpuBuffer> { ts.iter().map(|t| ctx.upload(t).unwrap()).collect() };
    let g_grads = upload(&grads);

    let sgd = |len: usize| SgdParams {
        len: len as u32,
        lr: 0.01,
        momentum: 0.9,
        weight_decay: 0.0,
    };
    let (mut p, mut v) = (params0.clone(), zeros());
    for ((p, g), v) in p.iter_mut().zip(&grads).zip(v.iter_mut()) {
        cpu::sgd_step(p, g, v, &sgd(g.len())).unwrap();
    }
    let (g_p, g_v) = (upload(&params0), upload(&zeros()));
    gpu.bench(
        "sgd_step",
        "teacher-cnn",
        Throughput::BytesDecimal(bytes(5 * total)),
        |ctx| {
            for ((p, g), v) in g_p.iter().zip(&g_grads).zip(&g_v) {
                gpu::sgd_step(ctx, p, g, v, &sgd(g.len()))?;
            }
            Ok(())
        },
        |ctx| {
            let got: Vec<f32> = g_p.iter().flat_map(|b| read(ctx, b)).collect();
            assert_close("gpu sgd_step", &got, &p.concat(), 1e-6);
        },
    );

    let adam = |len: usize| AdamParams::new(len, 1e-3, 0.9, 0.999, 1e-8, 0.0, false, 1).unwrap();
    let (mut p, mut m, mut v) = (params0.clone(), zeros(), zeros());
    for (((p, g), m), v) in p.iter_mut().zip(&grads).zip(m.iter_mut()).zip(v.iter_mut()) {
        cpu::adam_step(p, g, m, v, &adam(g.len())).unwrap();
    }
    let (g_p, g_m, g_v) = (upload(&params0), upload(&zeros()), upload(&zeros()));
    gpu.bench(
        "adam_step",
        "teacher-cnn",
        Throughput::BytesDecimal(bytes(7 * total)),
        |ctx| {
            let state = g_m.iter().zip(&g_v);
            for ((p, g), (m, v)) in g_p.iter().zip(&g_grads).zip(state) {
                gpu::adam_step(ctx, p, g, m, v, &adam(g.len()))?;
            }
            Ok(())
        },
        |ctx| {
            let got: Vec<f32> = g_p.iter().flat_map(|b| read(ctx, b)).collect();
            assert_close("gpu adam_step", &got, &p.concat(), 1e-6);
        },
    );
}

/// `gpu/<kernel>/{64x10,60000x10}` for the softmax family: one batch of logits and the
/// whole training set; in GB/s, with the same bytes as the CPU benches.
fn softmax(gpu: &mut GpuBench) {
    let (temperature, alpha) = (4.0, 0.7);
    for rows in [BATCH, 60_000] {
        let cols = 10;
        let (label, len) = (format!("{rows}x{cols}"), rows * cols);
        let p = RowParams::new(rows, cols)
            .unwrap()
            .with_temperature(temperature)
            .with_alpha(alpha);
        let scaled = |seed| -> Vec<f32> { inputs(len, seed).iter().map(|v| 5.0 * v).collect() };
        let (s, t) = (scaled(51), scaled(52));
        let labels: Vec<u32> = (0..rows).map(|r| (r * 7 % cols) as u32).collect();
        let (gs, gt, g_labels) = (
            gpu.ctx.upload(&s).unwrap(),
            gpu.ctx.upload(&t).unwrap(),
            gpu.ctx.upload_u32(&labels).unwrap(),
        );
        let (g_loss, g_pairs, g_grad) = (
            gpu.ctx.zeros(rows).unwrap(),
            gpu.ctx.zeros(2 * rows).unwrap(),
            gpu.ctx.zeros(len).unwrap(),
        );

        let (mut loss, mut grad) = (vec![0.0; rows], vec![0.0; len]);
        cpu::softmax_kl_forward(&s, &t, &mut loss, &mut grad, &p).unwrap();
        gpu.bench(
            "softmax_kl_forward",
            &label,
            Throughput::BytesDecimal(bytes(3 * len + rows)),
            |ctx| gpu::softmax_kl_forward(ctx, &gs, &gt, &g_loss, &g_grad, &p),
            |ctx| {
                assert_close(
                    "gpu softmax_kl_forward loss",
                    &read(ctx, &g_loss),
                    &loss,
                    1e-4,
                );
                assert_close(
                    "gpu softmax_kl_forward grad",
                    &read(ctx, &g_grad),
                    &grad,
                    1e-4,
                );
            },
        );

        let (mut pairs, mut kd_grad) = (vec![0.0; 2 * rows], vec![0.0; len]);
        cpu::kd_loss_forward(&s, &t, &labels, &mut pairs, &mut kd_grad, &p).unwrap();
        gpu.bench(
            "kd_loss_forward",
            &label,
            Throughput::BytesDecimal(bytes(3 * len + 3 * rows)),
            |ctx| gpu::kd_loss_forward(ctx, &gs, &gt, &g_labels, &g_pairs, &g_grad, &p),
            |ctx| {
                assert_close(
                    "gpu kd_loss_forward loss",
                    &read(ctx, &g_pairs),
                    &pairs,
                    1e-4,
                );
                assert_close(
                    "gpu kd_loss_forward grad",
                    &read(ctx, &g_grad),
                    &kd_grad,
                    1e-4,
                );
            },
        );

        // The distillation loss's reduction and its backward, on those pairs and
        // gradients.
        let pm = RowParams::new(rows, 2).unwrap().with_alpha(alpha);
        let (mut mean, mut means) = (vec![0.0; 1], vec![0.0; 2]);
        cpu::row_loss_mean(&pairs, &mut mean, &mut means, &pm).unwrap();
        let (g_mean, g_means, g_pairs_in) = (
            gpu.ctx.zeros(1).unwrap(),
            gpu.ctx.zeros(2).unwrap(),
            gpu.ctx.upload(&pairs).unwrap(),
        );
        gpu.bench(
            "row_loss_mean",
            &label,
            Throughput::BytesDecimal(bytes(2 * rows + 3)),
            |ctx| gpu::row_loss_mean(ctx, &g_pairs_in, &g_mean, &g_means, &pm),
            |ctx| {
                assert_close("gpu row_loss_mean", &read(ctx, &g_means), &means, 1e-5);
                assert_close("gpu row_loss_mean loss", &read(ctx, &g_mean), &mean, 1e-5);
            },
        );
        let pb = ElementwiseParams::with_alpha(len, 1.0 / rows as f32).unwrap();
        let mut scaled = vec![0.0; len];
        cpu::row_loss_backward(&kd_grad, &[1.0], &mut scaled, &pb).unwrap();
        let (g_kd_grad, g_one, g_scaled) = (
            gpu.ctx.upload(&kd_grad).unwrap(),
            gpu.ctx.upload(&[1.0]).unwrap(),
            gpu.ctx.zeros(len).unwrap(),
        );
        gpu.bench(
            "row_loss_backward",
            &label,
            Throughput::BytesDecimal(bytes(2 * len + 1)),
            |ctx| gpu::row_loss_backward(ctx, &g_kd_grad, &g_one, &g_scaled, &pb),
            |ctx| {
                assert_close(
                    "gpu row_loss_backward",
                    &read(ctx, &g_scaled),
                    &scaled,
                    1e-6,
                )
            },
        );

        cpu::cross_entropy_forward(&s, &labels, &mut loss, &mut grad, &p).unwrap();
        gpu.bench(
            "cross_entropy_forward",
            &label,
            Throughput::BytesDecimal(bytes(2 * len + 2 * rows)),
            |ctx| gpu::cross_entropy_forward(ctx, &gs, &g_labels, &g_loss, &g_grad, &p),
            |ctx| {
                assert_close(
                    "gpu cross_entropy_forward loss",
                    &read(ctx, &g_loss),
                    &loss,
                    1e-5,
                );
                assert_close(
                    "gpu cross_entropy_forward grad",
                    &read(ctx, &g_grad),
                    &grad,
                    1e-5,
                );
            },
        );

        let (mut out, mut grad_x) = (vec![0.0; len], vec![0.0; len]);
        cpu::log_softmax_forward(&s, &mut out, &p).unwrap();
        cpu::log_softmax_backward(&out, &t, &mut grad_x, &p).unwrap();
        let (g_out, g_out_in) = (gpu.ctx.zeros(len).unwrap(), gpu.ctx.upload(&out).unwrap());
        gpu.bench(
            "log_softmax_forward",
            &label,
            Throughput::BytesDecimal(bytes(2 * len)),
            |ctx| gpu::log_softmax_forward(ctx, &gs, &g_out, &p),
            |ctx| assert_close("gpu log_softmax_forward", &read(ctx, &g_out), &out, 1e-5),
        );
        gpu.bench(
            "log_softmax_backward",
            &label,
            Throughput::BytesDecimal(bytes(3 * len)),
            |ctx| gpu::log_softmax_backward(ctx, &g_out_in, &gt, &g_grad, &p),
            |ctx| {
                assert_close(
                    "gpu log_softmax_backward",
                    &read(ctx, &g_grad),
                    &grad_x,
                    1e-5,
                )
            },
        );

        let mut argmax = vec![0u32; rows];
        cpu::argmax_rows(&s, &mut argmax, &p).unwrap();
        let g_argmax = gpu.ctx.zeros(rows).unwrap();
        gpu.bench(
            "argmax_rows",
            &label,
            Throughput::BytesDecimal(bytes(len + rows)),
            |ctx| gpu::argmax_rows(ctx, &gs, &g_argmax, &p),
            |ctx| assert_eq!(read_u32(ctx, &g_argmax), argmax, "gpu argmax_rows"),
        );
    }

    // A distillation step's teacher logits: 64 rows of the cache of the training set's.
    let (src_rows, cols) = (60_000, 10);
    let table = inputs(src_rows * cols, 53);
    let index: Vec<u32> = (0..BATCH).map(|i| (i * 937 % src_rows) as u32).collect();
    let pg = GatherParams::new(BATCH, cols, src_rows).unwrap();
    let mut gathered = vec![0.0; BATCH * cols];
    cpu::gather_rows(&table, &index, &mut gathered, &pg).unwrap();
    let (g_table, g_index, g_gathered) = (
        gpu.ctx.upload(&table).unwrap(),
        gpu.ctx.upload_u32(&index).unwrap(),
        gpu.ctx.zeros(BATCH * cols).unwrap(),
    );
    gpu.bench(
        "gather_rows",
        "64_of_60000x10",
        Throughput::BytesDecimal(bytes(2 * BATCH * cols + BATCH)),
        |ctx| gpu::gather_rows(ctx, &g_table, &g_index, &g_gathered, &pg),
        |ctx| assert_eq!(read(ctx, &g_gathered), gathered, "gpu gather_rows"),
    );
}

criterion_group!(benches, gpu_kernels);
criterion_main!(benches);
