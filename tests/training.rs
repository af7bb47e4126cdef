//! End-to-end training on a slice of the official MNIST: it learns, it is deterministic,
//! checkpoints round-trip, a resumed run continues the same loss curve, and the
//! distillation loss behaves as its definition says.

mod common;

use distill::data::{Dataset, Mnist};
use distill::optim::{OptimizerConfig, OptimizerKind};
use distill::progress::ProgressMode;
use distill::train::{self, Distillation, TrainOptions, TrainReport};
use engine::{Device, Tensor};
use models::{builtin, checkpoint, Linear, Mode, Module, Network};
use std::path::PathBuf;
use std::sync::OnceLock;

fn mnist_dir() -> PathBuf {
    std::env::var_os("MNIST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/mnist"))
        })
}

fn full() -> &'static Mnist {
    static DATA: OnceLock<Mnist> = OnceLock::new();
    DATA.get_or_init(|| Mnist::load(&mnist_dir()).expect("official MNIST in ../shared/data/mnist"))
}

/// The first `train` training images and the first `test` test images.
fn slice(train: usize, test: usize) -> Mnist {
    let data = full();
    Mnist {
        train: data.train.subset(..train),
        test: data.test.subset(..test),
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kd-training-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn options(epochs: usize, out: PathBuf) -> TrainOptions {
    TrainOptions {
        epochs,
        batch_size: 64,
        optimizer: OptimizerConfig::new(OptimizerKind::Adam, 1e-3),
        seed: 0,
        jitter: false,
        out,
        resume: false,
        progress: ProgressMode::Quiet,
    }
}

fn parameters(net: &Network) -> Vec<Vec<f32>> {
    net.parameters()
        .iter()
        .map(|(_, t)| t.to_vec().unwrap())
        .collect()
}

fn max_abs_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    a.iter()
        .flatten()
        .zip(b.iter().flatten())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// The built-in network `arch`, initialised from `opts.seed`, trained as `opts` says.
fn run(
    arch: &str,
    opts: &TrainOptions,
    data: &Mnist,
    kd: Option<&Distillation>,
) -> (Network, TrainReport) {
    let spec = builtin::builtin(arch).unwrap();
    let net = Network::new(&spec, opts.seed, &Device::Cpu).unwrap();
    let report = train::train(opts, &net, data, &Device::Cpu, kd).unwrap();
    (net, report)
}

#[test]
fn short_training_reaches_90_percent_on_1000_test_images() {
    let dir = temp_dir("short");
    let data = slice(10_000, 1000);
    let (_, report) = run(
        "student-cnn",
        &options(2, dir.join("s.safetensors")),
        &data,
        None,
    );
    let test = report.final_test().unwrap();
    assert_eq!(test.total, 1000);
    assert!(test.accuracy > 0.90, "accuracy {}", test.accuracy);
    // One line per epoch beside the checkpoint.
    let metrics = std::fs::read_to_string(dir.join("s.metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 2);
    let line: serde_json::Value = serde_json::from_str(metrics.lines().last().unwrap()).unwrap();
    assert_eq!(line["epoch"], 2);
    assert_eq!(line["test_errors"], test.errors);
}

#[test]
fn same_seed_gives_bit_identical_parameters() {
    let dir = temp_dir("determinism");
    let data = slice(640, 100);
    let train_seed = |seed: u64, file: &str| {
        let mut opts = options(1, dir.join(file));
        opts.seed = seed;
        parameters(&run("teacher-cnn", &opts, &data, None).0)
    };
    let (a, b, c) = (
        train_seed(0, "a.safetensors"),
        train_seed(0, "b.safetensors"),
        train_seed(1, "c.safetensors"),
    );
    assert!(a == b, "same seed, different parameters");
    assert!(a != c, "different seeds, same parameters");
}

#[test]
fn checkpoint_round_trip_gives_identical_logits() {
    let dir = temp_dir("roundtrip");
    let data = slice(640, 100);
    let path = dir.join("t.safetensors");
    let (trained, _) = run("teacher-cnn", &options(1, path.clone()), &data, None);
    let (loaded, ckpt) = checkpoint::load_network(&path, &Device::Cpu).unwrap();
    assert_eq!(ckpt.metadata["epoch"], "1");
    let x = engine::Tensor::from_vec(
        data.test.images()[..784 * 8].to_vec(),
        &[8, 1, 28, 28],
        &Device::Cpu,
    )
    .unwrap();
    let a = trained.forward(&x, Mode::Eval).unwrap().to_vec().unwrap();
    let b = loaded.forward(&x, Mode::Eval).unwrap().to_vec().unwrap();
    assert_eq!(a, b);
}

#[test]
fn resume_continues_the_same_loss_curve() {
    let dir = temp_dir("resume");
    let data = slice(1280, 100);
    let (straight, straight_report) = run(
        "student-cnn",
        &options(2, dir.join("a.safetensors")),
        &data,
        None,
    );
    // Stop after one epoch, then resume for the second, into a network of another seed:
    // the checkpoint's parameters replace it.
    let path = dir.join("b.safetensors");
    run("student-cnn", &options(1, path.clone()), &data, None);
    let mut opts = options(2, path.clone());
    opts.resume = true;
    let fresh = Network::new(&builtin::builtin("student-cnn").unwrap(), 9, &Device::Cpu).unwrap();
    let resumed = train::train(&opts, &fresh, &data, &Device::Cpu, None).unwrap();
    assert_eq!(resumed.epochs.len(), 1);
    assert_eq!(resumed.epochs[0].epoch, 2);
    assert_eq!(
        resumed.epochs[0].train_loss,
        straight_report.epochs[1].train_loss
    );
    assert_eq!(parameters(&fresh), parameters(&straight));
    // The metrics file holds both epochs.
    let lines = std::fs::read_to_string(dir.join("b.metrics.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 2);
}

/// A small trained teacher for the distillation tests.
fn teacher(data: &Mnist, dir: &std::path::Path) -> Network {
    run(
        "student-cnn",
        &options(1, dir.join("teacher.safetensors")),
        data,
        None,
    )
    .0
}

/// One epoch of a student-cnn distilled as `kd` says.
fn distill_run(data: &Mnist, kd: &Distillation, out: PathBuf) -> Network {
    run("student-cnn", &options(1, out), data, Some(kd)).0
}

#[test]
fn kd_with_alpha_0_is_exactly_cross_entropy_training() {
    let dir = temp_dir("alpha0");
    let data = slice(640, 100);
    let teacher = teacher(&data, &dir);
    let kd = Distillation::new(&teacher, 5.0, 0.0).unwrap();
    let distilled = distill_run(&data, &kd, dir.join("kd.safetensors"));
    let (plain, _) = run(
        "student-cnn",
        &options(1, dir.join("ce.safetensors")),
        &data,
        None,
    );
    assert_eq!(parameters(&distilled), parameters(&plain));
}

#[test]
fn kd_with_alpha_1_ignores_the_labels() {
    let dir = temp_dir("alpha1");
    let data = slice(640, 100);
    let teacher = teacher(&data, &dir);
    let kd = Distillation::new(&teacher, 5.0, 1.0).unwrap();
    let with_labels = distill_run(&data, &kd, dir.join("a.safetensors"));
    // The same images with every label replaced.
    let wrong: Vec<u8> = data.train.labels().iter().map(|l| (l + 1) % 10).collect();
    let relabelled = Mnist {
        train: Dataset::from_parts(data.train.images().to_vec(), wrong).unwrap(),
        test: data.test.subset(..),
    };
    let without = distill_run(&relabelled, &kd, dir.join("b.safetensors"));
    assert_eq!(parameters(&with_labels), parameters(&without));
}

#[test]
fn cached_teacher_logits_epoch_equals_live_teacher_epoch() {
    let dir = temp_dir("cache");
    let data = slice(640, 100);
    let teacher = teacher(&data, &dir);
    let mut kd = Distillation::new(&teacher, 5.0, 0.5).unwrap();
    let (cached_net, cached) = run(
        "student-cnn",
        &options(1, dir.join("cached.safetensors")),
        &data,
        Some(&kd),
    );
    kd.cache_teacher = false;
    let (live_net, live) = run(
        "student-cnn",
        &options(1, dir.join("live.safetensors")),
        &data,
        Some(&kd),
    );
    // NOTE: the cache runs the teacher in batches of 1000 and the live run in batches of
    // 64, so the logits may differ in the last bits; the epochs must still agree.
    let diff = max_abs_diff(&parameters(&cached_net), &parameters(&live_net));
    assert!(diff < 1e-4, "max parameter difference {diff}");
    let (a, b) = (cached.epochs[0].train_loss, live.epochs[0].train_loss);
    assert!(
        (a - b).abs() < 1e-5 * a.abs().max(1.0),
        "losses {a} and {b}"
    );
}

/// A module of the caller's own (no description) trains, checkpoints, resumes, teaches
/// and is taught through the same loop as a built-in network.
#[test]
fn a_custom_module_trains_distills_and_resumes() {
    /// Softmax regression on the pixels: flatten, one linear layer.
    struct Affine(Linear);
    impl Module for Affine {
        fn forward(&self, x: &Tensor, mode: Mode) -> engine::Result<Tensor> {
            self.0.forward(&x.flatten()?, mode)
        }
        fn parameters(&self) -> Vec<(String, Tensor)> {
            let named = self.0.parameters().into_iter();
            named.map(|(n, t)| (format!("affine.{n}"), t)).collect()
        }
    }
    let affine = |seed| {
        use rand::SeedableRng;
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        Affine(Linear::new(784, 10, &mut rng, &Device::Cpu).unwrap())
    };
    let dir = temp_dir("custom");
    let data = slice(2000, 500);
    let module = affine(0);
    let report = train::train(
        &options(2, dir.join("affine.safetensors")),
        &module,
        &data,
        &Device::Cpu,
        None,
    )
    .unwrap();
    let accuracy = report.final_test().unwrap().accuracy;
    assert!(
        accuracy > 0.7,
        "softmax regression reached {accuracy} (chance: 0.1)"
    );
    // Resumed from its checkpoint into a fresh module: the same parameters as straight.
    let path = dir.join("resumed.safetensors");
    train::train(
        &options(1, path.clone()),
        &affine(0),
        &data,
        &Device::Cpu,
        None,
    )
    .unwrap();
    let (mut opts, resumed) = (options(2, path), affine(5));
    opts.resume = true;
    train::train(&opts, &resumed, &data, &Device::Cpu, None).unwrap();
    let values = |m: &Affine| {
        m.parameters()
            .iter()
            .map(|(_, t)| t.to_vec().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(values(&resumed), values(&module));
    // As a teacher, and as a student of a built-in teacher.
    let kd = Distillation::new(&module, 4.0, 0.5).unwrap();
    distill_run(&data, &kd, dir.join("student.safetensors"));
    let teacher = teacher(&data, &dir);
    let kd = Distillation::new(&teacher, 4.0, 0.5).unwrap();
    let student = affine(1);
    train::train(
        &options(1, dir.join("affine-kd.safetensors")),
        &student,
        &data,
        &Device::Cpu,
        Some(&kd),
    )
    .unwrap();
}

/// A network whose output is not ten classes is refused before any step, by name.
#[test]
fn a_network_that_does_not_fit_mnist_is_refused() {
    let dir = temp_dir("misfit");
    let spec = models::NetworkSpec::new("five-classes")
        .flatten()
        .linear("fc", 784, 5);
    let net = Network::new(&spec, 0, &Device::Cpu).unwrap();
    let err = train::train(
        &options(1, dir.join("m.safetensors")),
        &net,
        &slice(64, 10),
        &Device::Cpu,
        None,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("five-classes") && err.contains("[5]") && err.contains("10 classes"),
        "{err}"
    );
}
