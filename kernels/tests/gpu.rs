//! CPU == GPU: every WGSL kernel against its rayon twin on the same random inputs, on
//! small generated shapes that are not multiples of any tile (batch 1, 1×1 images, m, n,
//! k like 1, 7, 33, 65), plus the GPU plumbing: split dispatches, batched submits,
//! buffer reuse and errors.
//!
//! Tolerance: `|gpu - cpu| <= TOL · max(1, max |cpu|)` over each output, as sums run in
//! another order on the GPU; masks, argmax and other integer outputs must match exactly.
//!
//! Run with `KD_REQUIRE_GPU=1` to fail instead of skipping where there is no adapter
//! (`apt-get install mesa-vulkan-drivers libvulkan1` gives a software one).
#![cfg(feature = "gpu")]

use kernels::cpu;
use kernels::gpu::{self, AdapterChoice, GpuBuffer, GpuContext, GpuError};
use kernels::params::*;
use kernels::registry::Kernel;
use kernels::KernelError;
use proptest::prelude::*;
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::sync::{Arc, OnceLock};

const TOL: f32 = 1e-4;

/// The shared GPU context, or `None` after a loud skip message (a panic with
/// `KD_REQUIRE_GPU=1`).
fn gpu() -> Option<Arc<GpuContext>> {
    static CTX: OnceLock<Result<Arc<GpuContext>, GpuError>> = OnceLock::new();
    match CTX.get_or_init(|| GpuContext::new(AdapterChoice::Any)) {
        Ok(ctx) => Some(ctx.clone()),
        Err(e) if std::env::var("KD_REQUIRE_GPU").is_ok_and(|v| v == "1") => {
            panic!("KD_REQUIRE_GPU=1 but no GPU: {e}")
        }
        Err(e) => {
            eprintln!("\n*** SKIPPED: {e}; set KD_REQUIRE_GPU=1 to fail instead ***\n");
            None
        }
    }
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 16,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// `len` values uniform in `[-scale, scale)` from `seed`.
fn data(seed: u64, len: usize, scale: f32) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..len).map(|_| rng.random_range(-scale..scale)).collect()
}

fn assert_close(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= TOL * scale,
            "{what}[{i}]: gpu {g}, cpu {w} (scale {scale})"
        );
    }
}

fn read(ctx: &GpuContext, buf: &GpuBuffer) -> Vec<f32> {
    ctx.read(buf).expect("read back")
}

// ---- matmul and conv2d -------------------------------------------------------------

fn dim() -> impl Strategy<Value = usize> {
    prop_oneof![Just(1usize), Just(7), Just(33), Just(65), 1usize..70]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn matmul_matches_cpu(m in dim(), n in dim(), k in dim(), ta: bool, tb: bool, acc: bool, seed: u64) {
        let Some(ctx) = gpu() else { return Ok(()) };
        let mut p = MatmulParams::new(m, n, k).unwrap();
        (p.trans_a, p.trans_b, p.accumulate) = (ta as u32, tb as u32, acc as u32);
        let (a, b, c0) = (data(seed, m * k, 1.0), data(seed + 1, k * n, 1.0), data(seed + 2, m * n, 1.0));
        let mut want = c0.clone();
        cpu::matmul(&a, &b, &mut want, &p).unwrap();
        let (ga, gb, gc) = (ctx.upload(&a).unwrap(), ctx.upload(&b).unwrap(), ctx.upload(&c0).unwrap());
        gpu::matmul(&ctx, &ga, &gb, &gc, &p).unwrap();
        assert_close(&format!("matmul {p:?}"), &read(&ctx, &gc), &want);
    }
}

/// A long `k` under few output tiles is split into pieces of 256 summed by `sum_axis`
/// (with the old `c` as slice 0 when accumulating): 3 to 5 pieces here.
#[test]
fn matmul_split_k_matches_cpu() {
    let Some(ctx) = gpu() else { return };
    for (i, (m, n, k)) in [(7, 9, 700), (1, 1, 300), (65, 33, 1100)]
        .into_iter()
        .enumerate()
    {
        for flags in 0..8u32 {
            let mut p = MatmulParams::new(m, n, k).unwrap();
            (p.trans_a, p.trans_b, p.accumulate) = (flags & 1, (flags >> 1) & 1, flags >> 2);
            let seed = 10 * i as u64 + flags as u64;
            let (a, b) = (data(seed, m * k, 1.0), data(seed + 1, k * n, 1.0));
            // c longer than m * n: only its first m * n values take part.
            let c0 = data(seed + 2, m * n + 3, 1.0);
            let mut want = c0.clone();
            cpu::matmul(&a, &b, &mut want[..m * n], &p).unwrap();
            let (ga, gb, gc) = (
                ctx.upload(&a).unwrap(),
                ctx.upload(&b).unwrap(),
                ctx.upload(&c0).unwrap(),
            );
            gpu::matmul(&ctx, &ga, &gb, &gc, &p).unwrap();
            assert_close(&format!("matmul {p:?}"), &read(&ctx, &gc), &want);
        }
    }
}

fn conv_params() -> impl Strategy<Value = Conv2dParams> {
    (
        1usize..3,
        1usize..4,
        1usize..10,
        1usize..10,
        1usize..5,
        1usize..4,
        1usize..4,
        1usize..3,
        0usize..2,
    )
        .prop_filter_map("kernel fits", |(n, ci, h, w, co, kh, kw, s, pad)| {
            Conv2dParams::new(n, ci, h, w, co, kh, kw, s, pad).ok()
        })
}

/// Runs the three conv kernels on both sides and compares them.
fn check_conv(ctx: &Arc<GpuContext>, p: &Conv2dParams, seed: u64) {
    let (x, wt, g) = (
        data(seed, p.input_len(), 1.0),
        data(seed + 1, p.weight_len(), 1.0),
        data(seed + 2, p.output_len(), 1.0),
    );
    let (mut out, mut gx, mut gw) = (
        vec![0.0; p.output_len()],
        vec![0.0; p.input_len()],
        vec![0.0; p.weight_len()],
    );
    cpu::conv2d_forward(&x, &wt, &mut out, p).unwrap();
    cpu::conv2d_backward_input(&g, &wt, &mut gx, p).unwrap();
    cpu::conv2d_backward_weight(&x, &g, &mut gw, p).unwrap();
    let (bx, bw, bg) = (
        ctx.upload(&x).unwrap(),
        ctx.upload(&wt).unwrap(),
        ctx.upload(&g).unwrap(),
    );
    // Garbage in the outputs: every kernel must overwrite them.
    let (bo, bgx, bgw) = (
        ctx.upload(&data(7, out.len(), 9.0)).unwrap(),
        ctx.upload(&data(8, gx.len(), 9.0)).unwrap(),
        ctx.upload(&data(9, gw.len(), 9.0)).unwrap(),
    );
    gpu::conv2d_forward(ctx, &bx, &bw, &bo, p).unwrap();
    gpu::conv2d_backward_input(ctx, &bg, &bw, &bgx, p).unwrap();
    gpu::conv2d_backward_weight(ctx, &bx, &bg, &bgw, p).unwrap();
    assert_close(&format!("conv2d_forward {p:?}"), &read(ctx, &bo), &out);
    assert_close(
        &format!("conv2d_backward_input {p:?}"),
        &read(ctx, &bgx),
        &gx,
    );
    assert_close(
        &format!("conv2d_backward_weight {p:?}"),
        &read(ctx, &bgw),
        &gw,
    );
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn conv2d_matches_cpu(p in conv_params(), seed: u64) {
        let Some(ctx) = gpu() else { return Ok(()) };
        check_conv(&ctx, &p, seed);
    }
}

/// The fused conv + bias + ReLU + 2×2 pool on both sides. Values within `TOL`; the
/// argmax exactly, except where the GPU's other summation order may flip a near tie:
/// there the two winners' (CPU) values must be within `TOL` of each other.
fn check_conv_relu_pool(ctx: &Arc<GpuContext>, p: &Conv2dParams, seed: u64) {
    let (x, wt, bias) = (
        data(seed, p.input_len(), 1.0),
        data(seed + 1, p.weight_len(), 1.0),
        data(seed + 2, p.c_out as usize, 1.0),
    );
    let (mut out, mut arg) = (vec![0.0; p.pooled_len()], vec![0u32; p.pooled_len()]);
    cpu::conv2d_relu_pool_forward(&x, &wt, &bias, &mut out, &mut arg, p).unwrap();
    let (bx, bw, bb) = (
        ctx.upload(&x).unwrap(),
        ctx.upload(&wt).unwrap(),
        ctx.upload(&bias).unwrap(),
    );
    let (bout, barg) = (
        ctx.upload(&data(7, out.len(), 9.0)).unwrap(),
        ctx.zeros(arg.len()).unwrap(),
    );
    gpu::conv2d_relu_pool_forward(ctx, &bx, &bw, &bb, &bout, &barg, p).unwrap();
    assert_close(
        &format!("conv2d_relu_pool_forward {p:?}"),
        &read(ctx, &bout),
        &out,
    );
    // The CPU's relu(conv + bias), to weigh a flipped winner.
    let mut z = vec![0.0; p.output_len()];
    cpu::conv2d_forward(&x, &wt, &mut z, p).unwrap();
    let plane = (p.h_out * p.w_out) as usize;
    let pooled_plane = ((p.h_out / 2) * (p.w_out / 2)) as usize;
    let scale = z.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    let gpu_arg = ctx.read_u32(&barg).unwrap();
    for (i, (&g, &c)) in gpu_arg.iter().zip(&arg).enumerate() {
        if g != c {
            // Output i lies in the (sample, channel) plane i / pooled_plane.
            let (q, channel) = (i / pooled_plane, i / pooled_plane % p.c_out as usize);
            let value = |a: u32| (z[q * plane + a as usize] + bias[channel]).max(0.0);
            assert!(
                (value(g) - value(c)).abs() <= TOL * scale,
                "conv2d_relu_pool_forward {p:?}: argmax[{i}] gpu {g}, cpu {c}"
            );
        }
    }
    check_conv_pool_backward(ctx, p, &arg, seed);
}

/// The block's backward through its pool, given the CPU's argmax, on both sides.
fn check_conv_pool_backward(ctx: &Arc<GpuContext>, p: &Conv2dParams, argmax: &[u32], seed: u64) {
    let (x, wt, g) = (
        data(seed, p.input_len(), 1.0),
        data(seed + 1, p.weight_len(), 1.0),
        data(seed + 3, p.pooled_len(), 1.0),
    );
    let (mut gx, mut gw, mut gb) = (
        vec![0.0; p.input_len()],
        vec![0.0; p.weight_len()],
        vec![0.0; p.c_out as usize],
    );
    cpu::conv2d_pool_backward_input(&g, argmax, &wt, &mut gx, p).unwrap();
    cpu::conv2d_pool_backward_weight(&x, &g, argmax, &mut gw, &mut gb, p).unwrap();
    let (bx, bw, bg, barg) = (
        ctx.upload(&x).unwrap(),
        ctx.upload(&wt).unwrap(),
        ctx.upload(&g).unwrap(),
        ctx.upload_u32(argmax).unwrap(),
    );
    // Garbage in the outputs: every kernel must overwrite them.
    let (bgx, bgw, bgb) = (
        ctx.upload(&data(7, gx.len(), 9.0)).unwrap(),
        ctx.upload(&data(8, gw.len(), 9.0)).unwrap(),
        ctx.upload(&data(9, gb.len(), 9.0)).unwrap(),
    );
    gpu::conv2d_pool_backward_input(ctx, &bg, &barg, &bw, &bgx, p).unwrap();
    gpu::conv2d_pool_backward_weight(ctx, &bx, &bg, &barg, &bgw, &bgb, p).unwrap();
    for (name, gpu, cpu) in [
        ("conv2d_pool_backward_input", &bgx, &gx),
        ("conv2d_pool_backward_weight", &bgw, &gw),
        ("conv2d_pool_backward_weight's bias", &bgb, &gb),
    ] {
        assert_close(&format!("{name} {p:?}"), &read(ctx, gpu), cpu);
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn conv2d_relu_pool_matches_cpu(p in conv_params(), seed: u64) {
        prop_assume!(p.pool().is_ok());
        let Some(ctx) = gpu() else { return Ok(()) };
        check_conv_relu_pool(&ctx, &p, seed);
    }
}

/// Two row tiles (70 filters) and many column tiles: the teacher-cnn's conv2 at batch 3.
#[test]
fn conv2d_relu_pool_across_tiles() {
    let Some(ctx) = gpu() else { return };
    for (p, seed) in [
        (Conv2dParams::new(3, 32, 13, 13, 70, 3, 3, 1, 0).unwrap(), 1),
        (Conv2dParams::new(2, 1, 28, 28, 32, 3, 3, 1, 1).unwrap(), 2),
    ] {
        check_conv_relu_pool(&ctx, &p, seed);
    }
}

/// `n · h_out · w_out = 3 · 24 · 24 = 1728 > 1024`: the weight gradient is summed from
/// two partials; and a strided, padded MNIST-like layer.
#[test]
fn conv2d_split_reduction_and_mnist_shapes() {
    let Some(ctx) = gpu() else { return };
    check_conv(
        &ctx,
        &Conv2dParams::new(3, 2, 24, 24, 3, 3, 3, 1, 1).unwrap(),
        1,
    );
    check_conv(
        &ctx,
        &Conv2dParams::new(2, 1, 28, 28, 4, 5, 5, 2, 2).unwrap(),
        2,
    );
    check_conv(
        &ctx,
        &Conv2dParams::new(1, 1, 1, 1, 1, 1, 1, 1, 0).unwrap(),
        3,
    );
}

// ---- elementwise, bias, sums -------------------------------------------------------

proptest! {
    #![proptest_config(config())]

    #[test]
    fn elementwise_match_cpu(len in 1usize..3000, alpha in -2.0f32..2.0, seed: u64) {
        let Some(ctx) = gpu() else { return Ok(()) };
        let (a, b) = (data(seed, len, 1.0), data(seed + 1, len, 1.0));
        let (ga, gb, out) = (ctx.upload(&a).unwrap(), ctx.upload(&b).unwrap(), ctx.zeros(len).unwrap());
        let p = ElementwiseParams::with_alpha(len, alpha).unwrap();
        let mut want = vec![0.0; len];
        cpu::add(&a, &b, &mut want, &p).unwrap();
        gpu::add(&ctx, &ga, &gb, &out, &p).unwrap();
        assert_close("add", &read(&ctx, &out), &want);
        cpu::scale(&a, &mut want, &p).unwrap();
        gpu::scale(&ctx, &ga, &out, &p).unwrap();
        assert_close("scale", &read(&ctx, &out), &want);
        let mut y = b.clone();
        cpu::axpy(&a, &mut y, &p).unwrap();
        gpu::axpy(&ctx, &ga, &gb, &p).unwrap();
        assert_close("axpy", &read(&ctx, &gb), &y);
    }

    #[test]
    fn bias_and_sum_axis_match_cpu(outer in 1usize..5, channels in 1usize..70, inner in 1usize..40, seed: u64) {
        let Some(ctx) = gpu() else { return Ok(()) };
        let p = AxisParams::new(outer, channels, inner).unwrap();
        let (x, bias, g) = (data(seed, p.len(), 1.0), data(seed + 1, channels, 1.0), data(seed + 2, outer * inner, 1.0));
        let (mut out, mut gb, mut sum, mut gx) =
            (vec![0.0; p.len()], vec![0.0; channels], vec![0.0; outer * inner], vec![0.0; p.len()]);
        cpu::bias_forward(&x, &bias, &mut out, &p).unwrap();
        cpu::bias_backward(&x, &mut gb, &p).unwrap();
        cpu::sum_axis(&x, &mut sum, &p).unwrap();
        cpu::sum_axis_backward(&g, &mut gx, &p).unwrap();
        let (bx, bbias, bg) = (ctx.upload(&x).unwrap(), ctx.upload(&bias).unwrap(), ctx.upload(&g).unwrap());
        let (bout, bgb, bsum, bgx) = (ctx.zeros(p.len()).unwrap(), ctx.zeros(channels).unwrap(), ctx.zeros(outer * inner).unwrap(), ctx.zeros(p.len()).unwrap());
        gpu::bias_forward(&ctx, &bx, &bbias, &bout, &p).unwrap();
        gpu::bias_backward(&ctx, &bx, &bgb, &p).unwrap();
        gpu::sum_axis(&ctx, &bx, &bsum, &p).unwrap();
        gpu::sum_axis_backward(&ctx, &bg, &bgx, &p).unwrap();
        assert_close("bias_forward", &read(&ctx, &bout), &out);
        assert_close("bias_backward", &read(&ctx, &bgb), &gb);
        assert_close("sum_axis", &read(&ctx, &bsum), &sum);
        assert_close("sum_axis_backward", &read(&ctx, &bgx), &gx);
    }
}

// ---- activations -------------------------------------------------------------------

proptest! {
    #![proptest_config(config())]

    #[test]
    fn relu_and_dropout_match_cpu(len in 1usize..3000, p_drop in 0.0f32..0.9, seed: u32) {
        let Some(ctx) = gpu() else { return Ok(()) };
        // Some exact zeros, where relu'(0) = 0 must hold on both sides.
        let x: Vec<f32> = data(seed as u64, len, 1.0).into_iter().enumerate()
            .map(|(i, v)| if i % 7 == 0 { 0.0 } else { v }).collect();
        let g = data(seed as u64 + 1, len, 1.0);
        let pe = ElementwiseParams::new(len).unwrap();
        let (mut out, mut gx) = (vec![0.0; len], vec![0.0; len]);
        let (bx, bg, bout, bgx) = (ctx.upload(&x).unwrap(), ctx.upload(&g).unwrap(), ctx.zeros(len).unwrap(), ctx.zeros(len).unwrap());
        cpu::relu_forward(&x, &mut out, &pe).unwrap();
        cpu::relu_backward(&x, &g, &mut gx, &pe).unwrap();
        gpu::relu_forward(&ctx, &bx, &bout, &pe).unwrap();
        gpu::relu_backward(&ctx, &bx, &bg, &bgx, &pe).unwrap();
        prop_assert_eq!(read(&ctx, &bout), out.clone());
        prop_assert_eq!(read(&ctx, &bgx), gx.clone());

        // Leaky ReLU at PyTorch's default slope and at a negative one.
        for slope in [0.01, -0.5] {
            let pl = ElementwiseParams::with_alpha(len, slope).unwrap();
            cpu::leaky_relu_forward(&x, &mut out, &pl).unwrap();
            cpu::leaky_relu_backward(&x, &g, &mut gx, &pl).unwrap();
            gpu::leaky_relu_forward(&ctx, &bx, &bout, &pl).unwrap();
            gpu::leaky_relu_backward(&ctx, &bx, &bg, &bgx, &pl).unwrap();
            prop_assert_eq!(read(&ctx, &bout), out.clone());
            prop_assert_eq!(read(&ctx, &bgx), gx.clone());
        }

        let pd = DropoutParams::new(len, p_drop, seed).unwrap();
        let (mut out, mut mask, mut gx) = (vec![0.0; len], vec![0.0; len], vec![0.0; len]);
        cpu::dropout_forward(&x, &mut out, &mut mask, &pd).unwrap();
        cpu::dropout_backward(&g, &mask, &mut gx, &pd).unwrap();
        let bmask = ctx.zeros(len).unwrap();
        gpu::dropout_forward(&ctx, &bx, &bout, &bmask, &pd).unwrap();
        gpu::dropout_backward(&ctx, &bg, &bmask, &bgx, &pd).unwrap();
        prop_assert_eq!(read(&ctx, &bmask), mask, "the same mask bit for bit");
        prop_assert_eq!(read(&ctx, &bout), out);
        prop_assert_eq!(read(&ctx, &bgx), gx);
    }
}

// ---- pooling -----------------------------------------------------------------------

fn pool_params() -> impl Strategy<Value = Pool2dParams> {
    (
        1usize..3,
        1usize..4,
        1usize..12,
        1usize..12,
        1usize..4,
        1usize..4,
    )
        .prop_filter_map("window fits", |(n, c, h, w, k, s)| {
            Pool2dParams::new(n, c, h, w, k, s).ok()
        })
}

proptest! {
    #![proptest_config(config())]

    /// `ties` draws values from {0, 1, 2} so that windows tie often: the first wins.
    #[test]
    fn max_pool2d_matches_cpu(p in pool_params(), ties: bool, seed: u64) {
        let Some(ctx) = gpu() else { return Ok(()) };
        let mut x = data(seed, p.input_len(), 1.0);
        if ties {
            x.iter_mut().for_each(|v| *v = (*v * 1.5 + 1.5).floor());
        }
        let g = data(seed + 1, p.output_len(), 1.0);
        let (mut out, mut arg, mut gx) = (vec![0.0; p.output_len()], vec![0u32; p.output_len()], vec![0.0; p.input_len()]);
        cpu::max_pool2d_forward(&x, &mut out, &mut arg, &p).unwrap();
        cpu::max_pool2d_backward(&g, &arg, &mut gx, &p).unwrap();
        let (bx, bg, bout, barg, bgx) =
            (ctx.upload(&x).unwrap(), ctx.upload(&g).unwrap(), ctx.zeros(out.len()).unwrap(), ctx.zeros(arg.len()).unwrap(), ctx.upload(&data(5, gx.len(), 9.0)).unwrap());
        gpu::max_pool2d_forward(&ctx, &bx, &bout, &barg, &p).unwrap();
        gpu::max_pool2d_backward(&ctx, &bg, &barg, &bgx, &p).unwrap();
        prop_assert_eq!(read(&ctx, &bout), out);
        prop_assert_eq!(ctx.read_u32(&barg).unwrap(), arg);
        assert_close(&format!("max_pool2d_backward {p:?}"), &read(&ctx, &bgx), &gx);
    }
}

// ---- row kernels -------------------------------------------------------------------

proptest! {
    #![proptest_config(config())]

    #[test]
    fn row_kernels_match_cpu(rows in 1usize..100, cols in 1usize..20, t in 1.0f32..5.0, alpha in 0.0f32..1.0, beta in 0.0f32..8.0, seed: u64) {
        let Some(ctx) = gpu() else { return Ok(()) };
        let p = RowParams::new(rows, cols).unwrap().with_temperature(t).with_alpha(alpha).with_beta(beta);
        let len = rows * cols;
        let (s, te, g) = (data(seed, len, 5.0), data(seed + 1, len, 5.0), data(seed + 2, len, 1.0));
        let mut rng = StdRng::seed_from_u64(seed);
        let labels: Vec<u32> = (0..rows).map(|_| rng.random_range(0..cols as u32)).collect();
        let (bs, bt, bg, bl) = (ctx.upload(&s).unwrap(), ctx.upload(&te).unwrap(), ctx.upload(&g).unwrap(), ctx.upload_u32(&labels).unwrap());
        let (bout, bgrad, bloss, bloss2, barg) = (ctx.zeros(len).unwrap(), ctx.zeros(len).unwrap(), ctx.zeros(rows).unwrap(), ctx.zeros(2 * rows).unwrap(), ctx.zeros(rows).unwrap());
        let (mut out, mut grad, mut loss, mut loss2, mut arg) = (vec![0.0; len], vec![0.0; len], vec![0.0; rows], vec![0.0; 2 * rows], vec![0u32; rows]);

        cpu::log_softmax_forward(&s, &mut out, &p).unwrap();
        gpu::log_softmax_forward(&ctx, &bs, &bout, &p).unwrap();
        assert_close("log_softmax_forward", &read(&ctx, &bout), &out);
        cpu::log_softmax_backward(&out, &g, &mut grad, &p).unwrap();
        gpu::log_softmax_backward(&ctx, &bout, &bg, &bgrad, &p).unwrap();
        assert_close("log_softmax_backward", &read(&ctx, &bgrad), &grad);

        cpu::cross_entropy_forward(&s, &labels, &mut loss, &mut grad, &p).unwrap();
        gpu::cross_entropy_forward(&ctx, &bs, &bl, &bloss, &bgrad, &p).unwrap();
        assert_close("cross_entropy_forward loss", &read(&ctx, &bloss), &loss);
        assert_close("cross_entropy_forward grad", &read(&ctx, &bgrad), &grad);

        cpu::softmax_kl_forward(&s, &te, &mut loss, &mut grad, &p).unwrap();
        gpu::softmax_kl_forward(&ctx, &bs, &bt, &bloss, &bgrad, &p).unwrap();
        assert_close("softmax_kl_forward loss", &read(&ctx, &bloss), &loss);
        assert_close("softmax_kl_forward grad", &read(&ctx, &bgrad), &grad);

        cpu::kd_loss_forward(&s, &te, &labels, &mut loss2, &mut grad, &p).unwrap();
        gpu::kd_loss_forward(&ctx, &bs, &bt, &bl, &bloss2, &bgrad, &p).unwrap();
        assert_close("kd_loss_forward loss", &read(&ctx, &bloss2), &loss2);
        assert_close("kd_loss_forward grad", &read(&ctx, &bgrad), &grad);

        // Decoupled KD needs two classes; its three columns' mean is checked with it.
        if cols >= 2 {
            let (mut loss3, mut grad3) = (vec![0.0; 3 * rows], vec![0.0; len]);
            let (bloss3, bgrad3) = (ctx.zeros(3 * rows).unwrap(), ctx.zeros(len).unwrap());
            cpu::dkd_loss_forward(&s, &te, &labels, &mut loss3, &mut grad3, &p).unwrap();
            gpu::dkd_loss_forward(&ctx, &bs, &bt, &bl, &bloss3, &bgrad3, &p).unwrap();
            assert_close("dkd_loss_forward loss", &read(&ctx, &bloss3), &loss3);
            assert_close("dkd_loss_forward grad", &read(&ctx, &bgrad3), &grad3);
            let pm = RowParams::new(rows, 3).unwrap().with_alpha(alpha).with_beta(beta);
            let (mut mean, mut means) = (vec![0.0; 1], vec![0.0; 3]);
            cpu::row_loss_mean(&loss3, &mut mean, &mut means, &pm).unwrap();
            let (bmean, bmeans) = (ctx.zeros(1).unwrap(), ctx.zeros(3).unwrap());
            gpu::row_loss_mean(&ctx, &bloss3, &bmean, &bmeans, &pm).unwrap();
            assert_close("row_loss_mean loss (3 columns)", &read(&ctx, &bmean), &mean);
            assert_close("row_loss_mean means (3 columns)", &read(&ctx, &bmeans), &means);
        }

        cpu::argmax_rows(&s, &mut arg, &p).unwrap();
        gpu::argmax_rows(&ctx, &bs, &barg, &p).unwrap();
        prop_assert_eq!(ctx.read_u32(&barg).unwrap(), arg);

        // The mean of the (CE, KL) pairs just computed, and of one column of them.
        for cols in [1, 2] {
            let pm = RowParams::new(rows, cols).unwrap().with_alpha(alpha);
            let pairs = if cols == 2 { loss2.clone() } else { loss2.iter().step_by(2).copied().collect() };
            let (mut mean, mut means) = (vec![0.0; 1], vec![0.0; cols]);
            cpu::row_loss_mean(&pairs, &mut mean, &mut means, &pm).unwrap();
            let (bmean, bmeans) = (ctx.zeros(1).unwrap(), ctx.zeros(cols).unwrap());
            gpu::row_loss_mean(&ctx, &ctx.upload(&pairs).unwrap(), &bmean, &bmeans, &pm).unwrap();
            assert_close("row_loss_mean loss", &read(&ctx, &bmean), &mean);
            assert_close("row_loss_mean means", &read(&ctx, &bmeans), &means);
        }
        let pb = ElementwiseParams::with_alpha(len, 1.0 / rows as f32).unwrap();
        cpu::row_loss_backward(&grad, &[t], &mut out, &pb).unwrap();
        gpu::row_loss_backward(&ctx, &bgrad, &ctx.upload(&[t]).unwrap(), &bout, &pb).unwrap();
        assert_close("row_loss_backward", &read(&ctx, &bout), &out);

        // Rows of the student's logits in a random order, repeats included.
        let index: Vec<u32> = (0..rows + 3).map(|_| rng.random_range(0..rows as u32)).collect();
        let pg = GatherParams::new(index.len(), cols, rows).unwrap();
        let mut gathered = vec![0.0; index.len() * cols];
        cpu::gather_rows(&s, &index, &mut gathered, &pg).unwrap();
        let bgathered = ctx.zeros(gathered.len()).unwrap();
        gpu::gather_rows(&ctx, &bs, &ctx.upload_u32(&index).unwrap(), &bgathered, &pg).unwrap();
        prop_assert_eq!(read(&ctx, &bgathered), gathered);
    }
}

// ---- optimizers --------------------------------------------------------------------

proptest! {
    #![proptest_config(config())]

    #[test]
    fn optimizers_match_cpu(len in 1usize..3000, momentum in prop_oneof![Just(0.0f32), 0.0f32..0.99],
                            wd in prop_oneof![Just(0.0f32), 0.0f32..0.1], decoupled: bool, t in 1u64..20, seed: u64) {
        let Some(ctx) = gpu() else { return Ok(()) };
        let (x, g, s1) = (data(seed, len, 1.0), data(seed + 1, len, 1.0), data(seed + 2, len, 0.1));
        let s2: Vec<f32> = data(seed + 3, len, 0.1).iter().map(|v| v * v).collect();
        let ps = SgdParams { len: len as u32, lr: 0.05, momentum, weight_decay: wd };
        let (mut cx, mut cv) = (x.clone(), s1.clone());
        cpu::sgd_step(&mut cx, &g, &mut cv, &ps).unwrap();
        let (bx, bg, bv) = (ctx.upload(&x).unwrap(), ctx.upload(&g).unwrap(), ctx.upload(&s1).unwrap());
        gpu::sgd_step(&ctx, &bx, &bg, &bv, &ps).unwrap();
        assert_close("sgd_step param", &read(&ctx, &bx), &cx);
        assert_close("sgd_step velocity", &read(&ctx, &bv), &cv);

        let pa = AdamParams::new(len, 1e-3, 0.9, 0.999, 1e-8, wd, decoupled, t).unwrap();
        let (mut cx, mut cm, mut cv) = (x.clone(), s1.clone(), s2.clone());
        cpu::adam_step(&mut cx, &g, &mut cm, &mut cv, &pa).unwrap();
        let (bx, bm, bv) = (ctx.upload(&x).unwrap(), ctx.upload(&s1).unwrap(), ctx.upload(&s2).unwrap());
        gpu::adam_step(&ctx, &bx, &bg, &bm, &bv, &pa).unwrap();
        assert_close("adam_step param", &read(&ctx, &bx), &cx);
        assert_close("adam_step m", &read(&ctx, &bm), &cm);
        assert_close("adam_step v", &read(&ctx, &bv), &cv);
    }

    // Row norms of data(.., 1.0) over `cols` values lie around sqrt(cols / 3): bounds
    // from 0.3 to 3 times that clip most rows, some rows or none.
    #[test]
    fn max_norm_rows_matches_cpu(rows in 1usize..300, cols in 1usize..40, bound in 0.3f32..3.0, seed: u64) {
        let Some(ctx) = gpu() else { return Ok(()) };
        let p = MaxNormParams::new(rows, cols, bound * (cols as f32 / 3.0).sqrt()).unwrap();
        let x = data(seed, rows * cols, 1.0);
        let mut cx = x.clone();
        cpu::max_norm_rows(&mut cx, &p).unwrap();
        let bx = ctx.upload(&x).unwrap();
        gpu::max_norm_rows(&ctx, &bx, &p).unwrap();
        assert_close("max_norm_rows", &read(&ctx, &bx), &cx);
    }
}

// ---- plumbing ----------------------------------------------------------------------

/// With the split threshold lowered to 6 workgroups per dimension every kernel family
/// runs on a 2-D grid (the shaders' `wg.x + wg.y · num_workgroups.x`), and still agrees.
#[test]
fn split_dispatches_agree_with_cpu() {
    let Some(_) = gpu() else { return };
    // A context of its own, so that the knob does not touch the other tests.
    let ctx = GpuContext::new(AdapterChoice::Any).unwrap();
    ctx.set_dispatch_limit(6);
    let p = MatmulParams::new(130, 150, 9).unwrap();
    let (a, b) = (data(1, 130 * 9, 1.0), data(2, 9 * 150, 1.0));
    let mut want = vec![0.0; 130 * 150];
    cpu::matmul(&a, &b, &mut want, &p).unwrap();
    let gc = ctx.zeros(want.len()).unwrap();
    gpu::matmul(
        &ctx,
        &ctx.upload(&a).unwrap(),
        &ctx.upload(&b).unwrap(),
        &gc,
        &p,
    )
    .unwrap();
    assert_close("matmul (9 tiles on a 5 x 2 grid)", &read(&ctx, &gc), &want);

    let len = 2500; // 10 workgroups of 256 -> a 5 x 2 grid
    let (x, y) = (data(3, len, 1.0), data(4, len, 1.0));
    let pe = ElementwiseParams::new(len).unwrap();
    let mut want = vec![0.0; len];
    cpu::add(&x, &y, &mut want, &pe).unwrap();
    let out = ctx.zeros(len).unwrap();
    gpu::add(
        &ctx,
        &ctx.upload(&x).unwrap(),
        &ctx.upload(&y).unwrap(),
        &out,
        &pe,
    )
    .unwrap();
    assert_close("add", &read(&ctx, &out), &want);

    let pa = AxisParams::new(2, 11, 5).unwrap(); // 11 channels -> 11 workgroups
    let mut want = vec![0.0; 11];
    cpu::bias_backward(&data(5, pa.len(), 1.0), &mut want, &pa).unwrap();
    let gb = ctx.zeros(11).unwrap();
    gpu::bias_backward(
        &ctx,
        &ctx.upload(&data(5, pa.len(), 1.0)).unwrap(),
        &gb,
        &pa,
    )
    .unwrap();
    assert_close("bias_backward", &read(&ctx, &gb), &want);

    let pr = RowParams::new(700, 3).unwrap(); // 11 workgroups of 64 rows
    let s = data(6, 2100, 3.0);
    let mut want = vec![0u32; 700];
    cpu::argmax_rows(&s, &mut want, &pr).unwrap();
    let arg = ctx.zeros(700).unwrap();
    gpu::argmax_rows(&ctx, &ctx.upload(&s).unwrap(), &arg, &pr).unwrap();
    assert_eq!(ctx.read_u32(&arg).unwrap(), want, "argmax_rows");

    // Two partials of the weight gradient times 1 tile: 2 workgroups; and the sum.
    check_conv(
        &ctx,
        &Conv2dParams::new(3, 2, 24, 24, 3, 3, 3, 1, 1).unwrap(),
        4,
    );
}

/// A real dispatch past the 65,535-workgroup limit of one dimension: one workgroup per
/// channel, 70,000 channels of one value each (cheap even on llvmpipe).
#[test]
fn more_than_65535_workgroups() {
    let Some(ctx) = gpu() else { return };
    let p = AxisParams::new(2, 70_000, 1).unwrap();
    let g = data(11, p.len(), 1.0);
    let mut want = vec![0.0; 70_000];
    cpu::bias_backward(&g, &mut want, &p).unwrap();
    let gb = ctx.zeros(70_000).unwrap();
    gpu::bias_backward(&ctx, &ctx.upload(&g).unwrap(), &gb, &p).unwrap();
    assert_close(
        "bias_backward over 70,000 workgroups",
        &read(&ctx, &gb),
        &want,
    );
}

/// 2,400 dispatches recorded before one read cross the per-submit uniform ring twice:
/// each must still see its own params.
#[test]
fn many_dispatches_before_one_read() {
    let Some(_) = gpu() else { return };
    // A context of its own: the queue counts would include the other tests' work.
    let ctx = GpuContext::new(AdapterChoice::Any).unwrap();
    let (x, y) = (ctx.upload(&[1.0, 2.0, 3.0]).unwrap(), ctx.zeros(3).unwrap());
    let before = ctx.queue_stats();
    for i in 0..2400 {
        gpu::axpy(
            &ctx,
            &x,
            &y,
            &ElementwiseParams::with_alpha(3, (i % 3) as f32).unwrap(),
        )
        .unwrap();
    }
    // Σ alpha = 800 · (0 + 1 + 2) = 2400.
    assert_eq!(read(&ctx, &y), [2400.0, 4800.0, 7200.0]);
    // Two full rings of 1024, then the read's submit with the last 352.
    let sent = ctx.queue_stats() - before;
    assert_eq!((sent.submits, sent.dispatches), (3, 2400));
}

/// A buffer dropped while a recorded kernel still reads it goes back to the pool; an
/// upload that reuses it must not overwrite what that kernel reads.
/// And the upload does so without a submit of its own.
#[test]
fn pooled_buffers_are_refilled_after_earlier_readers() {
    let Some(_) = gpu() else { return };
    let ctx = GpuContext::new(AdapterChoice::Any).unwrap();
    let out = ctx.zeros(4).unwrap();
    {
        let tmp = ctx.upload(&[1.0, 2.0, 3.0, 4.0]).unwrap();
        gpu::scale(
            &ctx,
            &tmp,
            &out,
            &ElementwiseParams::with_alpha(4, 2.0).unwrap(),
        )
        .unwrap();
    }
    let before = ctx.queue_stats();
    let reused = ctx.upload(&[-7.0; 4]).unwrap();
    let doubled = ctx.zeros(4).unwrap();
    gpu::scale(
        &ctx,
        &reused,
        &doubled,
        &ElementwiseParams::with_alpha(4, 2.0).unwrap(),
    )
    .unwrap();
    assert_eq!(
        (ctx.queue_stats() - before).submits,
        0,
        "uploads do not submit"
    );
    assert_eq!(read(&ctx, &out), [2.0, 4.0, 6.0, 8.0]);
    assert_eq!(read(&ctx, &doubled), [-14.0; 4]);
    assert_eq!(read(&ctx, &reused), [-7.0; 4]);
    ctx.copy(&out, &reused).unwrap();
    assert_eq!(read(&ctx, &reused), [2.0, 4.0, 6.0, 8.0]);
}

/// `copy_to` places a buffer at a word offset of another, and refuses to run past it.
#[test]
fn copy_to_an_offset() {
    let Some(ctx) = gpu() else { return };
    let dst = ctx.upload(&[9.0; 5]).unwrap();
    ctx.copy_to(&ctx.upload(&[1.0, 2.0]).unwrap(), &dst, 2)
        .unwrap();
    assert_eq!(read(&ctx, &dst), [9.0, 9.0, 1.0, 2.0, 9.0]);
    let err = ctx
        .copy_to(&ctx.upload(&[1.0, 2.0]).unwrap(), &dst, 4)
        .unwrap_err();
    assert!(
        matches!(
            err,
            GpuError::Kernel(KernelError::TooShort { needed: 6, .. })
        ),
        "{err}"
    );
}

/// Runs `K` on both devices with argument `short` one word short, every other argument
/// at its length, and requires the same [`KernelError::TooShort`] naming it.
fn short_argument_alike<K: Kernel>(ctx: &Arc<GpuContext>, p: &K::Params) {
    let lens = K::lens(p);
    for (short, arg) in K::ARGS.iter().enumerate().filter(|&(i, _)| lens[i] > 0) {
        let len = |i: usize| lens[i] - (i == short) as usize;
        let is_read = |i: &usize| !K::ARGS[*i].access.writes();
        let (read_ids, write_ids): (Vec<usize>, Vec<usize>) = (0..lens.len()).partition(is_read);
        let host = |ids: &[usize]| {
            ids.iter()
                .map(|&i| vec![0.0f32; len(i)])
                .collect::<Vec<_>>()
        };
        let (reads, mut writes) = (host(&read_ids), host(&write_ids));
        let reads: Vec<&[f32]> = reads.iter().map(|v| &v[..]).collect();
        let mut writes: Vec<&mut [f32]> = writes.iter_mut().map(|v| &mut v[..]).collect();
        let cpu_err = K::cpu(&reads, &mut writes, p).unwrap_err();
        let want = KernelError::TooShort {
            op: K::ID.name(),
            arg: arg.name,
            len: len(short),
            needed: lens[short],
        };
        assert_eq!(cpu_err, want, "{:?} on the CPU", K::ID);
        let device = |ids: &[usize]| {
            ids.iter()
                .map(|&i| ctx.zeros(len(i)).unwrap())
                .collect::<Vec<_>>()
        };
        let (reads, writes) = (device(&read_ids), device(&write_ids));
        let reads: Vec<&GpuBuffer> = reads.iter().collect();
        let writes: Vec<&GpuBuffer> = writes.iter().collect();
        let gpu_err = K::gpu(ctx, &reads, &writes, p).unwrap_err();
        assert_eq!(gpu_err, GpuError::Kernel(want), "{:?} on the GPU", K::ID);
    }
}

#[test]
fn every_kernel_refuses_a_short_argument_alike_on_both_devices() {
    let Some(ctx) = gpu() else { return };
    use kernels::registry::*;
    let conv = Conv2dParams::new(2, 2, 5, 5, 3, 3, 3, 1, 1).unwrap();
    let axis = AxisParams::new(2, 3, 4).unwrap();
    let pool = Pool2dParams::new(2, 3, 4, 4, 2, 2).unwrap();
    let e = ElementwiseParams::with_alpha(5, 0.1).unwrap();
    let drop = DropoutParams::new(5, 0.5, 1).unwrap();
    let rows = RowParams::new(3, 4)
        .unwrap()
        .with_temperature(2.0)
        .with_alpha(0.5);
    macro_rules! each {
        ($($k:ident: $p:expr),* $(,)?) => {{
            let checked = [$({ short_argument_alike::<$k>(&ctx, &$p); KernelId::$k }),*];
            assert_eq!(checked.len(), KernelId::COUNT, "a kernel is missing from the list");
        }};
    }
    each!(
        Matmul: MatmulParams::new(2, 3, 4).unwrap(),
        Conv2dForward: conv,
        Conv2dReluPoolForward: conv,
        Conv2dBackwardInput: conv,
        Conv2dBackwardWeight: conv,
        Conv2dPoolBackwardInput: conv,
        Conv2dPoolBackwardWeight: conv,
        BiasForward: axis,
        BiasBackward: axis,
        MaxPool2dForward: pool,
        MaxPool2dBackward: pool,
        ReluForward: e,
        ReluBackward: e,
        LeakyReluForward: e,
        LeakyReluBackward: e,
        DropoutForward: drop,
        DropoutBackward: drop,
        Add: e,
        Scale: e,
        Axpy: e,
        SumAxis: axis,
        SumAxisBackward: axis,
        LogSoftmaxForward: rows,
        LogSoftmaxBackward: rows,
        CrossEntropyForward: rows,
        SoftmaxKlForward: rows,
        KdLossForward: rows,
        DkdLossForward: rows,
        RowLossMean: RowParams::new(3, 2).unwrap(),
        RowLossBackward: e,
        GatherRows: GatherParams::new(2, 3, 4).unwrap(),
        ArgmaxRows: rows,
        SgdStep: SgdParams::new(5, 0.1, 0.9, 0.0).unwrap(),
        AdamStep: AdamParams::new(5, 0.1, 0.9, 0.999, 1e-8, 0.0, false, 1).unwrap(),
        MaxNormRows: MaxNormParams::new(2, 3, 1.0).unwrap(),
    );
}

#[test]
fn bad_arguments_are_errors_not_panics() {
    let Some(ctx) = gpu() else { return };
    let (a, short) = (ctx.zeros(6).unwrap(), ctx.zeros(5).unwrap());
    let p = MatmulParams::new(2, 3, 3).unwrap();
    let err = gpu::matmul(&ctx, &a, &short, &ctx.zeros(6).unwrap(), &p).unwrap_err();
    let short_b = KernelError::TooShort {
        op: "matmul",
        arg: "b",
        len: 5,
        needed: 9,
    };
    assert_eq!(err, GpuError::Kernel(short_b.clone()), "{err}");
    // The CPU twin refuses the same call with the same error.
    let cpu_err = cpu::matmul(&[0.0; 6], &[0.0; 5], &mut [0.0; 6], &p).unwrap_err();
    assert_eq!(cpu_err, short_b);
    let pe = ElementwiseParams::new(6).unwrap();
    let err = gpu::add(&ctx, &a, &a, &a, &pe).unwrap_err();
    assert!(matches!(err, GpuError::Aliased { op: "add", .. }), "{err}");
    // Reading the same buffer twice is fine.
    gpu::add(&ctx, &a, &a, &ctx.zeros(6).unwrap(), &pe).unwrap();
    assert!(ctx.read(&a).is_ok());
    // A buffer past the adapter's largest (2^45 words, 128 TiB) is refused when asked
    // for, not reported later as a lost device; the context stays usable.
    for len in [1usize << 45, usize::MAX] {
        let err = ctx.zeros(len).map(|_| ()).unwrap_err();
        assert!(
            matches!(
                err,
                GpuError::TooLarge {
                    op: "zeros",
                    arg: "buffer",
                    ..
                }
            ),
            "{err}"
        );
    }
    let err = ctx.zeros(1 << 45).map(|_| ()).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("zeros: `buffer` needs 140737488355328 bytes, the adapter allows "),
        "{err}"
    );
    assert!(ctx.read(&a).is_ok());
    println!(
        "adapter: {} (software: {})",
        ctx.adapter_name(),
        ctx.is_software()
    );
}

#[test]
fn empty_shapes_do_nothing_and_read_back_empty() {
    let Some(ctx) = gpu() else { return };
    let e = ctx.zeros(0).unwrap();
    gpu::add(
        &ctx,
        &e,
        &e,
        &ctx.zeros(0).unwrap(),
        &ElementwiseParams::new(0).unwrap(),
    )
    .unwrap();
    assert_eq!(read(&ctx, &e), Vec::<f32>::new());
    // k = 0: c = 0 (an empty sum), as the CPU kernel.
    let c = ctx.upload(&[5.0; 4]).unwrap();
    gpu::matmul(&ctx, &e, &e, &c, &MatmulParams::new(2, 2, 0).unwrap()).unwrap();
    assert_eq!(read(&ctx, &c), [0.0; 4]);
}

/// The engine shares contexts and buffers between threads.
#[test]
fn context_and_buffers_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<GpuContext>();
    check::<GpuBuffer>();
    check::<GpuError>();
}
