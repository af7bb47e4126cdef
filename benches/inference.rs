//! Criterion benches of inference, the path a shipped network runs:
//! `cargo bench --bench inference`.
//!
//! ```text
//! inference/cpu/<network>/1      one image: the median is the latency
//! inference/cpu/<network>/256    a batch of 256: throughput
//! inference/gpu/...              the same on the adapter `Device::select("gpu")` picks
//! ```
//!
//! for every built-in network. Each sample is what `distill eval` does per batch: a
//! forward in eval mode under `no_grad` (no graph, so no activation outlives the layer
//! that reads it), then the logits read back to the host. Throughput is
//! `Throughput::Elements(images)`, so criterion's "elem/s" reads images per second.
//!
//! The check before timing: each of the batch's first images, run alone, gets the logits
//! of its row in the batch of 256 (within 1e-4 of the logits' scale: a batch of one runs
//! other matmul tiles, so the sums round differently).

use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, SamplingMode,
    Throughput,
};
use engine::{no_grad, Device, Tensor};
use models::{builtin, Mode, Module, Network};
use std::hint::black_box;
use std::time::Duration;

// NOTE: only `announce_isa` of the shared helpers is used here.
#[allow(dead_code)]
mod common;

/// The batch a server or `distill eval` fills.
const BATCH: usize = 256;
/// Images of the batch checked one by one against it.
const CHECKED: usize = 4;

/// `n` MNIST-sized images with pixels in `[0, 1)`, the same every run.
fn images(n: usize, device: &Device) -> Tensor {
    let pixels: Vec<f32> = common::inputs(n * 28 * 28, 5)
        .into_iter()
        .map(|v| (v + 1.0) / 2.0)
        .collect();
    Tensor::from_vec(pixels, &[n, 1, 28, 28], device).expect("the images")
}

/// The logits of `x`, read back, as one sample of the bench computes them.
fn infer(net: &Network, x: &Tensor) -> Vec<f32> {
    let _guard = no_grad();
    let logits = net.forward(x, Mode::Eval).expect("forward");
    logits.to_vec().expect("read the logits back")
}

/// Panics unless the first `CHECKED` images alone give their rows of the batch.
fn check(arch: &str, net: &Network, batch: &Tensor, device: &Device) {
    let all = infer(net, batch);
    let scale = all.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1.0);
    let pixels = batch.to_vec().expect("the images");
    for i in 0..CHECKED {
        let one = Tensor::from_vec(
            pixels[i * 784..(i + 1) * 784].to_vec(),
            &[1, 1, 28, 28],
            device,
        )
        .expect("one image");
        let alone = infer(net, &one);
        for (c, (&a, &b)) in alone.iter().zip(&all[i * 10..(i + 1) * 10]).enumerate() {
            assert!(
                (a - b).abs() <= 1e-4 * scale,
                "inference/{arch}: image {i} alone gives logit {c} = {a}, in the batch {b}"
            );
        }
    }
}

/// Times every built-in network at batch 1 and `BATCH` on `device`.
fn bench_device(group: &mut BenchmarkGroup<'_, WallTime>, device: &Device, name: &str) {
    for arch in builtin::NAMES {
        let spec = builtin::builtin(arch).expect("a built-in network");
        let net = Network::new(&spec, 0, device).expect("the network");
        let batch = images(BATCH, device);
        check(arch, &net, &batch, device);
        for n in [1, BATCH] {
            let x = if n == BATCH {
                batch.clone()
            } else {
                images(n, device)
            };
            group.throughput(Throughput::Elements(n as u64));
            group.bench_function(BenchmarkId::new(format!("{name}/{arch}"), n), |b| {
                b.iter(|| black_box(infer(&net, &x)))
            });
        }
    }
}

fn inference(crit: &mut Criterion) {
    common::announce_isa();
    let mut group = crit.benchmark_group("inference");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    bench_device(&mut group, &Device::Cpu, "cpu");

    match Device::select("gpu") {
        Ok((device, note)) => {
            if device.is_software() {
                eprintln!("inference/gpu: {note}; ten samples each");
                group
                    .sample_size(10)
                    .measurement_time(Duration::from_secs(5));
            } else {
                eprintln!("inference/gpu: {note}");
            }
            bench_device(&mut group, &device, "gpu");
        }
        Err(e) => eprintln!("*** inference/gpu/...: SKIPPED, no GPU adapter: {e} ***"),
    }
    group.finish();
}

criterion_group!(benches, inference);
criterion_main!(benches);
