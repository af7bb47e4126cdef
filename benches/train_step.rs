//! Criterion benches of whole training steps: `cargo bench --bench train_step`.
//!
//! ```text
//! train_step/cpu/teacher-cnn      forward, cross-entropy, backward, Adam step; batch 64
//! train_step/cpu/student-cnn      the same for the student
//! train_step/cpu/kd-student-cnn   student forward, kd_loss against precomputed teacher
//!                                 logits (T = 5, alpha = 0.1), backward, Adam step
//! train_step/gpu/...              the same on the adapter `Device::select("gpu")` picks
//! ```
//!
//! Every step ends by reading its loss back (`to_vec`), as a training loop that reports
//! it would: on the GPU that is the sync point, so each sample covers completed work.
//! Before timing, each bench checks that a step lowers the loss on its fixed batch.
//!
//! Throughput is `Throughput::Elements(3 × forward FLOPs per image × batch)` (backward
//! about twice the forward), so criterion's "Gelem/s" reads GFLOP/s: for the teacher-cnn
//! 3 × 5,291,594 × 64 = 1.016 GFLOP a step. The teacher's logits of a KD step are
//! computed once, outside the timed loop, and not counted.

use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, SamplingMode,
    Throughput,
};
use distill::optim::{Optimizer, OptimizerConfig, OptimizerKind};
use engine::{no_grad, Device, Labels, Tensor};
use models::{builtin, Mode, Module, Network};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::hint::black_box;
use std::time::Duration;

// NOTE: only `announce_isa` of the shared helpers is used here.
#[allow(dead_code)]
mod common;

const BATCH: usize = 64;
/// The distillation preset's temperature and weight of the KL term.
const TEMPERATURE: f32 = 5.0;
const ALPHA: f32 = 0.1;

/// One network, its optimizer and a fixed batch: `run` takes one training step on it.
struct Step {
    net: Network,
    params: Vec<(String, Tensor)>,
    opt: Optimizer,
    x: Tensor,
    y: Labels,
    /// The teacher's logits for the batch in a KD step; `None`: plain cross-entropy.
    teacher_logits: Option<Tensor>,
}

impl Step {
    /// MNIST-like images (pixels uniform in [0, 1]), fixed labels, Adam at 1e-3; with
    /// `kd`, the logits of a teacher-cnn (fresh, seed 1) on the same images.
    fn new(arch: &str, device: &Device, kd: bool) -> Result<Step, models::ModelError> {
        let spec = |name: &str| builtin::builtin(name).expect("a built-in network");
        let mut rng = StdRng::seed_from_u64(0);
        let pixels: Vec<f32> = (0..BATCH * 28 * 28).map(|_| rng.random::<f32>()).collect();
        let labels: Vec<u32> = (0..BATCH).map(|i| (i * 7 % 10) as u32).collect();
        let x = Tensor::from_vec(pixels, &[BATCH, 1, 28, 28], device)?;
        let y = Labels::new(&labels, device)?;
        let teacher_logits = if kd {
            let teacher = Network::new(&spec("teacher-cnn"), 1, device)?;
            let _guard = no_grad();
            Some(teacher.forward(&x, Mode::Eval)?.detach())
        } else {
            None
        };
        let net = Network::new(&spec(arch), 0, device)?;
        let params = net.parameters();
        let opt = Optimizer::new(OptimizerConfig::new(OptimizerKind::Adam, 1e-3), &params)?;
        Ok(Step {
            net,
            params,
            opt,
            x,
            y,
            teacher_logits,
        })
    }

    /// One step; returns the loss before the update, read back from the device.
    fn run(&mut self) -> f32 {
        let logits = self
            .net
            .forward(&self.x, Mode::Train { seed: 0 })
            .expect("forward");
        let loss = match &self.teacher_logits {
            Some(t) => {
                logits
                    .kd_loss(t, &self.y, TEMPERATURE, ALPHA)
                    .expect("kd_loss")
                    .loss
            }
            None => logits.cross_entropy(&self.y).expect("cross_entropy"),
        };
        let grads = loss.backward().expect("backward");
        self.opt.step(&self.params, &grads).expect("optimizer step");
        loss.to_vec().expect("read the loss")[0]
    }
}

/// Times the three steps on `device` as
/// `train_step/<name>/{teacher-cnn,student-cnn,kd-student-cnn}`.
fn bench_device(group: &mut BenchmarkGroup<'_, WallTime>, device: &Device, name: &str) {
    for (label, arch, kd) in [
        ("teacher-cnn", "teacher-cnn", false),
        ("student-cnn", "student-cnn", false),
        ("kd-student-cnn", "student-cnn", true),
    ] {
        let mut step = Step::new(arch, device, kd).expect("set up the step");
        // The check: the loss after one step is below the loss before it.
        let (before, after) = (step.run(), step.run());
        assert!(
            after < before,
            "train_step/{name}/{label}: one step did not lower the loss ({before} -> {after})"
        );
        eprintln!("train_step/{name}/{label}: loss {before:.5} -> {after:.5} after one step");
        let flops = 3 * step.net.forward_flops_per_image() * BATCH as u64;
        group.throughput(Throughput::Elements(flops));
        group.bench_function(BenchmarkId::new(name, label), |b| {
            b.iter(|| black_box(step.run()))
        });
    }
}

fn train_step(crit: &mut Criterion) {
    common::announce_isa();
    let mut group = crit.benchmark_group("train_step");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    bench_device(&mut group, &Device::Cpu, "cpu");

    match Device::select("gpu") {
        Ok((device, note)) => {
            if device.is_software() {
                // llvmpipe: about a second a teacher step; ten samples of one step each.
                eprintln!("train_step/gpu: {note}; ten samples each");
                group
                    .sample_size(10)
                    .measurement_time(Duration::from_secs(10));
            } else {
                eprintln!("train_step/gpu: {note}");
            }
            bench_device(&mut group, &device, "gpu");
        }
        Err(e) => eprintln!("*** train_step/gpu/...: SKIPPED, no GPU adapter: {e} ***"),
    }
    group.finish();
}

criterion_group!(benches, train_step);
criterion_main!(benches);
