//! End-to-end training on a slice of the official MNIST: it learns, it is deterministic,
//! checkpoints round-trip, a resumed run continues the same loss curve, and the
//! distillation loss behaves as its definition says.

mod common;

use distill::data::{self, Dataset, DatasetKind, Mnist};
use distill::optim::{OptimizerConfig, OptimizerKind, Schedule};
use distill::progress::ProgressMode;
use distill::train::{self, Distillation, Loss, TrainOptions, TrainReport};
use engine::{Device, Tensor};
use models::{builtin, checkpoint, Linear, Mode, Module, Network};
use std::path::PathBuf;
use std::sync::OnceLock;

/// MNIST, found as the program finds it (`$MNIST_DIR`, else `data/mnist` in the
/// checkout) and downloaded there once when it is nowhere.
fn full() -> &'static Mnist {
    static DATA: OnceLock<Mnist> = OnceLock::new();
    DATA.get_or_init(|| {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let loaded =
            data::find_or_fetch(DatasetKind::Mnist, root).and_then(|dir| Mnist::load(&dir));
        loaded.unwrap_or_else(|e| {
            panic!(
                "{e}\nthese tests read MNIST from $MNIST_DIR or from {}: put its four files \
                 there (`distill download` fetches them)",
                root.join("data/mnist").display()
            )
        })
    })
}

/// The first `train` training images and the first `test` test images.
fn slice(train: usize, test: usize) -> Mnist {
    let data = full();
    Mnist {
        kind: DatasetKind::Mnist,
        val: Dataset::default(),
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
        schedule: Schedule::CONSTANT,
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

/// The metrics file after a resume has one line per epoch, in order, whatever a kill
/// left in it: a line for an epoch the checkpoint never got, a torn line, or no line for
/// the checkpoint's last epoch (killed between the save and the append).
#[test]
fn a_resume_makes_the_metrics_file_agree_with_the_checkpoint() {
    let dir = temp_dir("resume-metrics");
    let data = slice(640, 100);
    let path = dir.join("m.safetensors");
    let metrics = dir.join("m.metrics.jsonl");
    run("student-cnn", &options(1, path.clone()), &data, None);
    let epoch1 = std::fs::read_to_string(&metrics).unwrap();
    assert_eq!(epoch1.lines().count(), 1);
    let epochs = |text: &str| -> Vec<u64> {
        text.lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["epoch"]
                    .as_u64()
                    .unwrap()
            })
            .collect()
    };
    let stale_epoch2 = epoch1.replace("\"epoch\":1", "\"epoch\":2");
    for (left, what) in [
        (
            format!("{epoch1}{stale_epoch2}"),
            "a line past the checkpoint",
        ),
        (format!("{epoch1}{{\"epoch\":2,\"tra"), "a torn line"),
        (String::new(), "no line for the checkpoint's epoch"),
        (format!("{epoch1}{epoch1}"), "a duplicate"),
    ] {
        let resumed_path = dir.join("r.safetensors");
        std::fs::copy(&path, &resumed_path).unwrap();
        let state = checkpoint::state_path(&path);
        std::fs::copy(&state, checkpoint::state_path(&resumed_path)).unwrap();
        let resumed_metrics = dir.join("r.metrics.jsonl");
        std::fs::write(&resumed_metrics, &left).unwrap();
        let mut opts = options(2, resumed_path);
        opts.resume = true;
        run("student-cnn", &opts, &data, None);
        let text = std::fs::read_to_string(&resumed_metrics).unwrap();
        assert_eq!(epochs(&text), [1, 2], "after {what}:\n{text}");
        assert_eq!(
            text.lines().next().unwrap(),
            epoch1.trim_end(),
            "after {what}"
        );
    }
}

/// Every setting that changes the experiment is compared on `--resume`, and a change
/// is refused naming the setting with its saved and its given value.
#[test]
fn a_resume_with_another_recipe_is_refused_naming_each_change() {
    let dir = temp_dir("resume-recipe");
    let data = slice(640, 100);
    let path = dir.join("s.safetensors");
    run("student-cnn", &options(1, path.clone()), &data, None);
    let before = std::fs::read(&path).unwrap();
    let net = || Network::new(&builtin::builtin("student-cnn").unwrap(), 0, &Device::Cpu).unwrap();
    let resume = |change: &dyn Fn(&mut TrainOptions)| {
        let mut opts = options(2, path.clone());
        opts.resume = true;
        change(&mut opts);
        train::train(&opts, &net(), &data, &Device::Cpu, None)
            .err()
            .map(|e| e.to_string())
    };
    type Change<'a> = &'a dyn Fn(&mut TrainOptions);
    let cases: [(Change, &str); 5] = [
        (&|o| o.optimizer.lr = 2e-3, "lr was `0.001`, now `0.002`"),
        (&|o| o.batch_size = 32, "batch was `64`, now `32`"),
        (&|o| o.seed = 3, "seed was `0`, now `3`"),
        (&|o| o.jitter = true, "jitter was `false`, now `true`"),
        (
            &|o| o.optimizer.weight_decay = 0.5,
            "weight_decay was `0`, now `0.5`",
        ),
    ];
    for (change, want) in cases {
        let err = resume(change).expect("a changed recipe was resumed");
        assert!(err.contains(want), "{err}");
    }
    let both = resume(&|o| {
        o.optimizer.lr = 2e-3;
        o.seed = 3;
    })
    .unwrap();
    assert!(
        both.contains("lr was") && both.contains("seed was"),
        "{both}"
    );
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "a refused resume wrote"
    );

    // A distilled student remembers its teacher: another one (here the same
    // architecture with other parameters) is refused.
    let teacher_a = teacher(&data, &dir);
    let teacher_b = net();
    let kd_path = dir.join("kd.safetensors");
    let kd = Distillation::new(&teacher_a, 4.0, 0.5).unwrap();
    run(
        "student-cnn",
        &options(1, kd_path.clone()),
        &data,
        Some(&kd),
    );
    let mut opts = options(2, kd_path);
    opts.resume = true;
    let other = Distillation::new(&teacher_b, 4.0, 0.5).unwrap();
    let err = train::train(&opts, &net(), &data, &Device::Cpu, Some(&other))
        .err()
        .expect("a resume under another teacher ran")
        .to_string();
    assert!(err.contains("teacher_sha256 was"), "{err}");
    let same = train::train(&opts, &net(), &data, &Device::Cpu, Some(&kd));
    assert!(same.is_ok(), "{:?}", same.err());
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

/// Decoupled KD with both weights 0 is plain cross-entropy training, bit for bit; with
/// Zhao et al.'s weights it trains another network, records its three terms, and saves
/// the loss in the checkpoint.
#[test]
fn dkd_with_zero_weights_is_cross_entropy_and_otherwise_distils() {
    let dir = temp_dir("dkd");
    let data = slice(640, 100);
    let teacher = teacher(&data, &dir);
    let zero = Distillation::with_loss(Loss::Dkd { beta: 0.0 }, &teacher, 4.0, 0.0).unwrap();
    let distilled = distill_run(&data, &zero, dir.join("zero.safetensors"));
    let (plain, _) = run(
        "student-cnn",
        &options(1, dir.join("ce.safetensors")),
        &data,
        None,
    );
    assert_eq!(parameters(&distilled), parameters(&plain));
    let dkd = Distillation::with_loss(Loss::Dkd { beta: 8.0 }, &teacher, 4.0, 1.0).unwrap();
    let out = dir.join("dkd.safetensors");
    let (net, report) = run("student-cnn", &options(1, out.clone()), &data, Some(&dkd));
    assert_ne!(parameters(&net), parameters(&plain));
    let names: Vec<&str> = report.epochs[0].train_parts.iter().map(|p| p.0).collect();
    assert_eq!(names, ["ce", "tckd", "nckd"]);
    for (name, mean) in &report.epochs[0].train_parts {
        assert!(mean.is_finite() && *mean >= 0.0, "{name} = {mean}");
    }
    let line = report.epochs[0].to_json();
    assert!(
        line["train_nckd"].is_number() && line.get("train_kl").is_none(),
        "{line}"
    );
    let ckpt = checkpoint::read(&out).unwrap();
    assert_eq!(ckpt.metadata["loss"], "dkd");
    assert_eq!(ckpt.metadata["beta"], "8");
    // KD's alpha is a blend weight in [0, 1]; decoupled KD's is a scale, so 2 is allowed.
    assert!(Distillation::new(&teacher, 4.0, 2.0).is_err());
    assert!(Distillation::with_loss(Loss::Dkd { beta: 8.0 }, &teacher, 4.0, 2.0).is_ok());
}

/// With `max_norm`, every row of every weight ends a run within the bound (biases are
/// free), and the run differs from the unconstrained one.
#[test]
fn max_norm_holds_every_weight_row_to_the_bound() {
    let dir = temp_dir("max-norm");
    let data = slice(640, 100);
    let mut opts = options(1, dir.join("clipped.safetensors"));
    opts.optimizer.max_norm = Some(0.5);
    let (clipped, _) = run("student-cnn", &opts, &data, None);
    let (free, _) = run(
        "student-cnn",
        &options(1, dir.join("free.safetensors")),
        &data,
        None,
    );
    let mut clipped_rows = 0;
    for ((name, w), (_, w_free)) in clipped.parameters().iter().zip(free.parameters()) {
        let shape = w.shape().to_vec();
        if shape.len() < 2 {
            continue;
        }
        let cols: usize = shape[1..].iter().product();
        let (values, free_values) = (w.to_vec().unwrap(), w_free.to_vec().unwrap());
        for (row, free_row) in values.chunks(cols).zip(free_values.chunks(cols)) {
            let norm = |r: &[f32]| r.iter().map(|&v| v as f64 * v as f64).sum::<f64>().sqrt();
            assert!(
                norm(row) <= 0.5 * (1.0 + 1e-5),
                "{name}: a row of norm {}",
                norm(row)
            );
            clipped_rows += usize::from(norm(free_row) > 0.5);
        }
    }
    assert!(
        clipped_rows > 0,
        "the bound never bit: the test proves nothing"
    );
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
        kind: DatasetKind::Mnist,
        val: Dataset::default(),
        train: Dataset::from_parts(data.train.pixels().to_vec(), wrong).unwrap(),
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

/// `train` training images, the next `val` of the training split held out, and the
/// first `test` test images.
fn slice_with_val(train: usize, val: usize, test: usize) -> Mnist {
    let data = full();
    Mnist {
        kind: DatasetKind::Mnist,
        train: data.train.subset(..train),
        val: data.train.subset(train..train + val),
        test: data.test.subset(..test),
    }
}

/// The default preset cut to one epoch each.
fn quick_preset(alpha: f32) -> distill::presets::Preset {
    let mut p = *distill::presets::find("default").unwrap();
    p.teacher_recipe.epochs = 1;
    p.teacher_recipe.jitter = false;
    p.student_recipe.epochs = 1;
    p.alpha = alpha;
    p
}

fn checkpoint_tensors(path: &std::path::Path) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    checkpoint::read(path).unwrap().tensors
}

#[test]
fn a_study_pairs_each_seeds_students_from_identical_parameters_and_batches() {
    use distill::study::{run_study, StudyOptions};
    let dir = temp_dir("paired");
    let data = slice_with_val(640, 100, 100);
    // With alpha = 0 the distillation loss is the cross-entropy to the bit
    // (`kd_with_alpha_0_equals_plain_training`), so the two runs of a seed end equal only
    // if they started from the same parameters and saw the same batches in the same order.
    let opts = StudyOptions {
        preset: quick_preset(0.0),
        teacher: builtin::builtin("student-cnn").unwrap(),
        student: builtin::builtin("student-cnn").unwrap(),
        seed: 3,
        seeds: 2,
        out_dir: dir.clone(),
        progress: ProgressMode::Quiet,
    };
    let report = run_study(&opts, &data, &Device::Cpu).unwrap();
    assert_eq!(report.pairs.len(), 2);
    for seed in [3, 4] {
        let alone = checkpoint_tensors(&dir.join(format!("student-alone-seed{seed}.safetensors")));
        let kd = checkpoint_tensors(&dir.join(format!("student-distilled-seed{seed}.safetensors")));
        assert_eq!(alone, kd, "seed {seed}: only the loss may differ");
    }
    // Seeds differ from each other: the pairs are not one run repeated.
    assert_ne!(
        checkpoint_tensors(&dir.join("student-alone-seed3.safetensors")),
        checkpoint_tensors(&dir.join("student-alone-seed4.safetensors"))
    );
    let d = report.test_difference();
    assert_eq!((d.n, d.mean, d.sd), (2, 0.0, 0.0));
    assert!(
        report.verdict().starts_with("no difference"),
        "{}",
        report.verdict()
    );
    for (a, k) in &report.pairs {
        assert_eq!(
            (a.seed, a.val_errors, a.test_errors),
            (k.seed, k.val_errors, k.test_errors)
        );
        // The student is compared with the teacher on the test set.
        let f = k.fidelity.unwrap();
        assert!(
            (0.0..=1.0).contains(&f.agreement) && f.mean_kl >= 0.0,
            "{f:?}"
        );
        assert_eq!(a.reliability.total(), 100);
    }
    for file in [
        "comparison.md",
        "comparison.json",
        "accuracy.svg",
        "reliability.svg",
    ] {
        assert!(dir.join(file).is_file(), "{file}");
    }
}

#[test]
fn a_restarted_sweep_reads_its_finished_cells_instead_of_training_them() {
    use distill::sweep::{run_sweep, SweepOptions};
    let dir = temp_dir("sweep");
    let data = slice_with_val(640, 100, 100);
    let opts = |dir: &std::path::Path, epochs: usize| {
        let mut preset = quick_preset(0.5);
        preset.student_recipe.epochs = epochs;
        SweepOptions {
            preset,
            teacher: builtin::builtin("student-cnn").unwrap(),
            student: builtin::builtin("student-cnn").unwrap(),
            temperatures: vec![2.0, 4.0],
            alphas: vec![0.5],
            widths: vec![],
            seed: 0,
            seeds: 1,
            out_dir: dir.to_path_buf(),
            progress: ProgressMode::Quiet,
        }
    };
    let first = run_sweep(&opts(&dir, 1), &data, &Device::Cpu).unwrap();
    // The student alone and two distilled cells, for one seed.
    assert_eq!((first.results.len(), first.trained_now), (3, 3));
    let again = run_sweep(&opts(&dir, 1), &data, &Device::Cpu).unwrap();
    assert_eq!(again.trained_now, 0);
    assert_eq!(again.results, first.results);
    // A lost result is trained again, alone.
    std::fs::remove_file(dir.join("runs/T4-a0.5-seed0.json")).unwrap();
    let third = run_sweep(&opts(&dir, 1), &data, &Device::Cpu).unwrap();
    assert_eq!(third.trained_now, 1);
    assert_eq!(
        third.results, first.results,
        "the same run gives the same errors"
    );
    // Another recipe does not reuse the old results.
    let longer = run_sweep(&opts(&dir, 2), &data, &Device::Cpu).unwrap();
    assert_eq!(longer.trained_now, 3);
    let md = std::fs::read_to_string(dir.join("sweep.md")).unwrap();
    assert!(md.contains("Best cell: T = "), "{md}");
    assert!(std::fs::read_to_string(dir.join("heatmap.svg"))
        .unwrap()
        .starts_with("<svg"));
    // No checkpoint is left behind once a cell has its result.
    let left: Vec<_> = std::fs::read_dir(dir.join("runs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".safetensors"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// A distilled run resumed with another temperature, weight or loss is refused, naming
/// each; the same distillation continues.
#[test]
fn a_resume_refuses_another_distillation() {
    let dir = temp_dir("resume-kd");
    let data = slice(640, 100);
    let teacher = teacher(&data, &dir);
    let out = dir.join("s.safetensors");
    let kd = Distillation::new(&teacher, 4.0, 0.5).unwrap();
    run("student-cnn", &options(1, out.clone()), &data, Some(&kd));
    let resumed = TrainOptions {
        resume: true,
        ..options(2, out)
    };
    let spec = builtin::builtin("student-cnn").unwrap();
    let net = Network::new(&spec, 0, &Device::Cpu).unwrap();
    let dkd = Distillation::with_loss(Loss::Dkd { beta: 8.0 }, &teacher, 2.0, 1.0).unwrap();
    let message = train::train(&resumed, &net, &data, &Device::Cpu, Some(&dkd))
        .err()
        .expect("another distillation is refused")
        .to_string();
    for change in [
        "temperature was `4`, now `2`",
        "alpha was `0.5`, now `1`",
        "loss was `kd`, now `dkd`",
    ] {
        assert!(message.contains(change), "{message}");
    }
    let report = train::train(&resumed, &net, &data, &Device::Cpu, Some(&kd)).unwrap();
    assert_eq!(report.epochs.len(), 1, "the second epoch only");
}

#[test]
fn a_resume_refuses_another_schedule_and_continues_the_same_one() {
    use distill::optim::ScheduleKind;
    let dir = temp_dir("resume-schedule");
    let data = slice_with_val(640, 100, 100);
    let out = dir.join("s.safetensors");
    let mut opts = options(2, out.clone());
    opts.schedule = Schedule::new(ScheduleKind::Cosine);
    run("student-cnn", &opts, &data, None);
    let mut other = opts.clone();
    other.resume = true;
    other.epochs = 3;
    other.schedule = Schedule::new(ScheduleKind::Step);
    let spec = builtin::builtin("student-cnn").unwrap();
    let net = Network::new(&spec, 0, &Device::Cpu).unwrap();
    let message = train::train(&other, &net, &data, &Device::Cpu, None)
        .err()
        .expect("another schedule is refused")
        .to_string();
    assert!(
        message.contains("schedule was `cosine`, now `step`")
            && message.contains("epochs was `2`, now `3`"),
        "{message}"
    );
    // The same recipe has nothing left to do; the cosine had nearly reached 0.
    let mut same = opts.clone();
    same.resume = true;
    let report = train::train(&same, &net, &data, &Device::Cpu, None).unwrap();
    assert!(report.epochs.is_empty());
    let metrics = std::fs::read_to_string(dir.join("s.metrics.jsonl")).unwrap();
    let last: serde_json::Value = serde_json::from_str(metrics.lines().last().unwrap()).unwrap();
    assert!(last["lr"].as_f64().unwrap() < 1e-5, "{last}");
    assert!(
        last["val_errors"].is_u64() && last["test_errors"].is_u64(),
        "{last}"
    );
    let first: serde_json::Value = serde_json::from_str(metrics.lines().next().unwrap()).unwrap();
    assert!(
        first.get("test_errors").is_none(),
        "the test set waits for the last epoch: {first}"
    );
}

/// Sweeps of KD and of decoupled KD at two betas share one folder: the teacher and the
/// runs alone are trained once, each loss's runs apart.
#[test]
fn sweeps_of_two_losses_share_the_runs_alone_and_nothing_else() {
    use distill::sweep::{run_sweep, SweepOptions};
    let dir = temp_dir("sweep-losses");
    let data = slice_with_val(640, 100, 100);
    let opts = |loss: Loss| {
        let mut preset = quick_preset(0.5);
        preset.loss = loss;
        SweepOptions {
            preset,
            teacher: builtin::builtin("student-cnn").unwrap(),
            student: builtin::builtin("student-cnn").unwrap(),
            temperatures: vec![4.0],
            alphas: vec![0.5],
            widths: vec![],
            seed: 0,
            seeds: 1,
            out_dir: dir.clone(),
            progress: ProgressMode::Quiet,
        }
    };
    let kd = run_sweep(&opts(Loss::Kd), &data, &Device::Cpu).unwrap();
    assert_eq!(kd.trained_now, 2);
    let dkd = run_sweep(&opts(Loss::Dkd { beta: 8.0 }), &data, &Device::Cpu).unwrap();
    assert_eq!(dkd.trained_now, 1, "the run alone is shared");
    assert_eq!(dkd.results[1].cell.key, "T4-a0.5-dkd-b8-seed0");
    let other = run_sweep(&opts(Loss::Dkd { beta: 1.0 }), &data, &Device::Cpu).unwrap();
    assert_eq!(other.trained_now, 1, "another beta is another run");
    let again = run_sweep(&opts(Loss::Kd), &data, &Device::Cpu).unwrap();
    assert_eq!((again.trained_now, again.results), (0, kd.results));
    let md = std::fs::read_to_string(dir.join("sweep.md")).unwrap();
    assert!(md.contains("distilled with KD"), "{md}");
}

#[test]
fn a_width_sweep_trains_each_width_alone_and_distilled() {
    use distill::sweep::{run_sweep, student_of_width, SweepOptions};
    let dir = temp_dir("widths");
    let data = slice_with_val(640, 100, 100);
    let opts = SweepOptions {
        preset: quick_preset(0.5),
        teacher: builtin::builtin("student-cnn").unwrap(),
        student: builtin::builtin("student-cnn").unwrap(),
        temperatures: vec![4.0],
        alphas: vec![0.5],
        widths: vec![2, 4],
        seed: 0,
        seeds: 1,
        out_dir: dir.clone(),
        progress: ProgressMode::Quiet,
    };
    let report = run_sweep(&opts, &data, &Device::Cpu).unwrap();
    let base = builtin::builtin("student-cnn").unwrap();
    // Width 16 is student-cnn itself: 16 conv channels, 64 hidden units.
    assert_eq!(
        student_of_width(&base, 16).parameter_count(),
        base.parameter_count()
    );
    let runs: Vec<_> = report
        .results
        .iter()
        .map(|r| (r.cell.student.name.as_str(), r.cell.kd, r.parameters))
        .collect();
    // conv 2·9 + 2, fc1 2·169·8 + 8, fc2 8·10 + 10: 2,822; width 4: 40 + 10,832 + 170.
    assert_eq!(
        runs,
        [
            ("student-cnn-w2", None, 2_822),
            ("student-cnn-w2", Some((4.0, 0.5)), 2_822),
            ("student-cnn-w4", None, 11_042),
            ("student-cnn-w4", Some((4.0, 0.5)), 11_042),
        ]
    );
    let md = std::fs::read_to_string(dir.join("capacity.md")).unwrap();
    assert!(md.contains("| 4 | 11042 |"), "{md}");
    let svg = std::fs::read_to_string(dir.join("capacity.svg")).unwrap();
    assert_eq!(svg.matches("<polyline").count(), 2, "alone and distilled");
}
