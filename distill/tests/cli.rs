//! The `distill` program on bad input: every mistake a user can make on the command line
//! ends in a non-zero exit and an `error: ...` line that names the flag, file or
//! directory at fault, before any training starts. Runs the real binary; only the test of
//! `--out`'s default trains (a student-cnn on 1,000 images), so the whole file runs in
//! seconds.

mod common;

use engine::Device;
use models::{builtin, checkpoint, Network};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The official MNIST files, as `.gz`.
fn shared_mnist_dir() -> PathBuf {
    common::mnist_dir()
}

/// Every case here must fail (or succeed) long before the first training step; a run
/// still going after this long has started training, which is a bug in itself.
const DEADLINE: Duration = Duration::from_secs(60);

/// A fresh directory under the system temp dir, removed on drop. The program runs with
/// it as its working directory, so `./data/mnist` and `runs/` never touch the checkout.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("distill-cli-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// `path(name)` as a command-line argument.
    fn arg(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    /// A subdirectory holding copies of the four official `.gz` files.
    fn mnist_copy(&self) -> PathBuf {
        let dir = self.path("mnist");
        fs::create_dir_all(&dir).unwrap();
        for file in distill::data::FILES {
            let name = format!("{}.gz", file.name);
            fs::copy(shared_mnist_dir().join(&name), dir.join(&name)).unwrap();
        }
        dir
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// What one run of the program left behind.
struct Output {
    args: String,
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Output {
    /// Exit status non-zero, and one `error:` line holding every needle.
    #[track_caller]
    fn fails_with(&self, needles: &[&str]) -> &Self {
        assert!(
            !self.status.success(),
            "`distill {}` succeeded; stdout:\n{}\nstderr:\n{}",
            self.args,
            self.stdout,
            self.stderr
        );
        let error = self
            .stderr
            .lines()
            .rfind(|line| line.starts_with("error:"))
            .unwrap_or_else(|| {
                panic!(
                    "`distill {}` printed no `error:` line; stderr:\n{}",
                    self.args, self.stderr
                )
            });
        for needle in needles {
            assert!(
                error.contains(needle),
                "`distill {}`: the error does not mention `{needle}`:\n{error}",
                self.args
            );
        }
        self
    }

    #[track_caller]
    fn succeeds(&self) -> &Self {
        assert!(
            self.status.success(),
            "`distill {}` failed ({}); stderr:\n{}",
            self.args,
            self.status,
            self.stderr
        );
        self
    }
}

/// Runs `distill ARGS` in `dir` without `$MNIST_DIR`, its output captured in files there
/// (no pipe to fill), killed if it outlives `DEADLINE`.
fn distill_in(dir: &TempDir, args: &[&str], env: &[(&str, &str)]) -> Output {
    let (out_path, err_path) = (dir.path(".stdout"), dir.path(".stderr"));
    let mut command = Command::new(env!("CARGO_BIN_EXE_distill"));
    command
        .args(args)
        .current_dir(&dir.0)
        .env_remove("MNIST_DIR")
        .stdin(Stdio::null())
        .stdout(File::create(&out_path).unwrap())
        .stderr(File::create(&err_path).unwrap());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().expect("starting the distill binary");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "`distill {}` still running after {DEADLINE:?}: it should have stopped \
                 before training; stderr:\n{}",
                args.join(" "),
                fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        args: args.join(" "),
        status,
        stdout: fs::read_to_string(&out_path).unwrap(),
        stderr: fs::read_to_string(&err_path).unwrap(),
    }
}

fn distill(dir: &TempDir, args: &[&str]) -> Output {
    distill_in(dir, args, &[])
}

/// A checkpoint of a freshly initialised built-in `arch`, as `train` would write after
/// epoch 1.
fn write_checkpoint(path: &Path, arch: &str) {
    let spec = builtin::builtin(arch).unwrap();
    let network = Network::new(&spec, 0, &Device::Cpu).unwrap();
    let mut meta = BTreeMap::new();
    meta.insert("epoch".to_string(), "1".to_string());
    meta.insert("seed".to_string(), "0".to_string());
    meta.insert("metrics".to_string(), "{}".to_string());
    meta.insert("optimizer".to_string(), "adam".to_string());
    meta.insert("optimizer_steps".to_string(), "0".to_string());
    checkpoint::save(path, &network, &meta, &[]).unwrap();
}

/// `len` bytes from a fixed xorshift stream: "random", but the same every run.
fn noise(len: usize) -> Vec<u8> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn gunzip(path: &Path) -> Vec<u8> {
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(File::open(path).unwrap())
        .read_to_end(&mut raw)
        .unwrap();
    raw
}

/// `--data=DIR`, one argument.
fn data_flag(dir: &Path) -> String {
    format!("--data={}", dir.display())
}

/// `--data=` the official files.
fn official_data() -> String {
    data_flag(&shared_mnist_dir())
}

/// `distill train --model student-cnn --out DIR/x.safetensors EXTRA..`.
fn train(dir: &TempDir, extra: &[&str]) -> Output {
    train_in(dir, extra, &[])
}

/// [`train`] with the environment variables `env` set.
fn train_in(dir: &TempDir, extra: &[&str], env: &[(&str, &str)]) -> Output {
    let out = dir.arg("x.safetensors");
    let mut args = vec!["train", "--model", "student-cnn", "--out", &out];
    args.extend_from_slice(extra);
    distill_in(dir, &args, env)
}

/// `distill distill --teacher TEACHER --student student-cnn --out DIR/student.safetensors
/// EXTRA..`.
fn distill_student(dir: &TempDir, teacher: &str, extra: &[&str]) -> Output {
    let out = dir.arg("student.safetensors");
    let mut args = vec![
        "distill",
        "--teacher",
        teacher,
        "--student",
        "student-cnn",
        "--out",
        &out,
    ];
    args.extend_from_slice(extra);
    distill(dir, &args)
}

/// The files `dir` holds, sorted, without the captured `.stdout` and `.stderr`.
fn listing(dir: &TempDir) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| !name.starts_with('.'))
        .collect();
    names.sort();
    names
}

// ---------------------------------------------------------------------------------
// Flags

#[test]
fn unknown_flag() {
    let dir = TempDir::new("unknown-flag");
    let out = distill(&dir, &["train", "--bogus"]);
    out.fails_with(&["--bogus"]);
    assert_eq!(out.status.code(), Some(2), "clap's usage-error status");
}

#[test]
fn unknown_subcommand() {
    let dir = TempDir::new("unknown-subcommand");
    distill(&dir, &["frobnicate"]).fails_with(&["subcommand", "frobnicate"]);
}

#[test]
fn unknown_model_lists_the_valid_names() {
    let dir = TempDir::new("unknown-model");
    let out = dir.arg("x.safetensors");
    let mut needles = vec!["resnet"];
    needles.extend(builtin::NAMES);
    needles.push("description file");
    distill(&dir, &["train", "--model", "resnet", "--out", &out]).fails_with(&needles);
    let args = [
        "distill",
        "--teacher",
        &out,
        "--student",
        "resnet",
        "--out",
        &out,
    ];
    distill(&dir, &args).fails_with(&needles);
}

#[test]
fn unknown_optimizer() {
    let dir = TempDir::new("unknown-optimizer");
    train(&dir, &["--optimizer", "rmsprop"]).fails_with(&["rmsprop", "sgd", "adam", "adamw"]);
}

#[test]
fn unknown_device() {
    let dir = TempDir::new("unknown-device");
    let data = official_data();
    train(&dir, &["--device", "quantum", &data]).fails_with(&["quantum", "auto", "gpu", "cpu"]);
    let missing = dir.arg("missing.safetensors");
    distill(
        &dir,
        &["eval", "--checkpoint", &missing, "--device=quantum", &data],
    )
    .fails_with(&["quantum"]);
    assert!(listing(&dir).is_empty(), "{:?}", listing(&dir));
}

#[test]
fn an_isa_the_kernels_cannot_honour_is_refused() {
    let dir = TempDir::new("bad-isa");
    let data = official_data();
    let args = ["--device=cpu", data.as_str()];
    train_in(&dir, &args, &[("KD_ISA", "sse9")]).fails_with(&["KD_ISA", "sse9", "portable"]);
    for isa in engine::kernels::cpu::Isa::ALL {
        if !isa.supported() {
            train_in(&dir, &args, &[("KD_ISA", isa.name())]).fails_with(&[
                "KD_ISA",
                isa.name(),
                "this CPU does not have it",
            ]);
        }
    }
    assert!(listing(&dir).is_empty(), "{:?}", listing(&dir));
}

#[test]
fn zero_epochs() {
    let dir = TempDir::new("zero-epochs");
    let data = official_data();
    train(&dir, &["--epochs", "0", "--device=cpu", &data]).fails_with(&["--epochs"]);
    distill(&dir, &["run", "--epochs", "0", &data]).fails_with(&["--epochs"]);
    assert!(listing(&dir).is_empty(), "{:?}", listing(&dir));
}

#[test]
fn zero_batch() {
    let dir = TempDir::new("zero-batch");
    train(&dir, &["--batch", "0", "--device=cpu", &official_data()]).fails_with(&["--batch"]);
    assert!(listing(&dir).is_empty(), "{:?}", listing(&dir));
}

#[test]
fn zero_or_negative_learning_rate() {
    let dir = TempDir::new("bad-lr");
    let data = official_data();
    for (lr, shown) in [("--lr=0", "0"), ("--lr=-1", "-1"), ("--lr=NaN", "NaN")] {
        train(&dir, &[lr, "--device=cpu", &data]).fails_with(&["--lr", shown]);
        // The same value as its own argument.
        train(&dir, &["--lr", shown, "--device=cpu", &data]).fails_with(&["--lr", shown]);
    }
    assert!(listing(&dir).is_empty(), "{:?}", listing(&dir));
}

/// A bad value of a training flag costs nothing to check, so it is reported before the
/// data is read: with a missing data dir the flag (and the value) is named. A negative
/// number after a flag is its value (clap alone would take `-1` for an unknown flag).
#[test]
fn training_flags_are_checked_before_the_data_is_loaded() {
    let dir = TempDir::new("flags-first");
    let missing = data_flag(&dir.path("no-such-dir"));
    let cases: [(&[&str], &[&str]); 17] = [
        (&["--epochs=0"], &["--epochs"]),
        (&["--batch=0"], &["--batch"]),
        (&["--lr=0"], &["--lr"]),
        (&["--max-norm=0"], &["--max-norm"]),
        (&["--max-norm=-1"], &["--max-norm"]),
        (&["--device=quantum"], &["quantum"]),
        (&["--lr", "-1"], &["--lr", "-1"]),
        (&["--epochs", "-1"], &["--epochs", "-1"]),
        (&["--batch", "-2"], &["--batch", "-2"]),
        (&["--warmup", "-0.5"], &["--warmup", "-0.5"]),
        (&["--warmup", "inf"], &["--warmup", "inf"]),
        (&["--weight-decay", "-0.1"], &["--weight-decay", "-0.1"]),
        (&["--weight-decay", "NaN"], &["--weight-decay", "NaN"]),
        (&["--weight-decay", "inf"], &["--weight-decay", "inf"]),
        (&["--max-norm", "-1"], &["--max-norm", "-1"]),
        (&["--val", "-5"], &["--val", "-5"]),
        (&["--seed", "-1"], &["--seed", "-1"]),
    ];
    for (flags, needles) in cases {
        let mut args = flags.to_vec();
        args.push(&missing);
        train(&dir, &args).fails_with(needles);
    }
    // Likewise the distillation's and the study's numbers.
    let teacher = dir.arg("teacher.safetensors");
    for args in [
        &["--alpha", "-0.1"][..],
        &["--T", "-2"],
        &["--beta", "-1", "--loss", "dkd"],
    ] {
        let mut all = args.to_vec();
        all.push(&missing);
        distill_student(&dir, &teacher, &all).fails_with(&args[..2]);
    }
    for args in [["--T", "-1"], ["--alpha", "-0.5"], ["--seeds", "-3"]] {
        let mut all = vec!["run"];
        all.extend_from_slice(&args);
        all.push(&missing);
        distill(&dir, &all).fails_with(&args);
    }
    assert!(listing(&dir).is_empty(), "{:?}", listing(&dir));
}

// ---------------------------------------------------------------------------------
// Data

/// With `--no-download` (without it the files are fetched: `tests/download.rs`).
#[test]
fn missing_data_dir_names_it_and_suggests_download() {
    let dir = TempDir::new("missing-data");
    let missing = dir.arg("no-such-dir");
    let flag = data_flag(Path::new(&missing));
    train(&dir, &["--device=cpu", &flag, "--no-download"])
        .fails_with(&[&missing, "distill download"]);
    let checkpoint = dir.arg("x.safetensors");
    distill(
        &dir,
        &["eval", "--checkpoint", &checkpoint, &flag, "--no-download"],
    )
    .fails_with(&[&missing, "distill download"]);
    assert!(listing(&dir).is_empty(), "{:?}", listing(&dir));
}

#[test]
fn missing_data_dir_from_mnist_dir_env() {
    let dir = TempDir::new("missing-data-env");
    let out = dir.arg("x.safetensors");
    let missing = dir.arg("from-env");
    let args = [
        "train",
        "--model",
        "student-cnn",
        "--out",
        &out,
        "--device=cpu",
        "--no-download",
    ];
    distill_in(&dir, &args, &[("MNIST_DIR", &missing)]).fails_with(&[&missing, "distill download"]);
    // Neither flag nor variable: ./data/mnist, in the working directory.
    distill(&dir, &args).fails_with(&["data/mnist", "distill download"]);
}

#[test]
fn truncated_data_file() {
    let dir = TempDir::new("truncated-data");
    let data = dir.mnist_copy();
    let gz = data.join("t10k-labels-idx1-ubyte.gz");
    let bytes = fs::read(&gz).unwrap();
    fs::write(&gz, &bytes[..bytes.len() / 2]).unwrap();
    // 10008 = the 8-byte header + 10 000 labels.
    train(&dir, &["--device=cpu", &data_flag(&data)]).fails_with(&[
        &gz.display().to_string(),
        "truncated",
        "10008",
    ]);
    assert_eq!(listing(&dir), ["mnist"]);
}

#[test]
fn wrong_magic() {
    let dir = TempDir::new("wrong-magic");
    let data = dir.mnist_copy();
    // A raw file takes precedence over its .gz: labels under the magic 0x802.
    let raw_path = data.join("t10k-labels-idx1-ubyte");
    let mut raw = gunzip(&data.join("t10k-labels-idx1-ubyte.gz"));
    raw[3] = 0x02;
    fs::write(&raw_path, &raw).unwrap();
    train(&dir, &["--device=cpu", &data_flag(&data)]).fails_with(&[
        &raw_path.display().to_string(),
        "magic",
        "0x00000802",
        "0x00000801",
    ]);
}

#[test]
fn corrupted_byte_fails_the_hash() {
    let dir = TempDir::new("corrupted-byte");
    let data = dir.mnist_copy();
    // One label turned into another digit (x ^ 1 maps 0..=9 onto 0..=9): still a
    // well-formed IDX file, but not the official one.
    let raw_path = data.join("t10k-labels-idx1-ubyte");
    let mut raw = gunzip(&data.join("t10k-labels-idx1-ubyte.gz"));
    raw[8 + 1234] ^= 1;
    fs::write(&raw_path, &raw).unwrap();
    train(&dir, &["--device=cpu", &data_flag(&data)]).fails_with(&[
        &raw_path.display().to_string(),
        "SHA-256",
        distill::data::TEST_LABELS.sha256,
    ]);
}

// ---------------------------------------------------------------------------------
// Checkpoints

#[test]
fn eval_missing_checkpoint_names_it() {
    let dir = TempDir::new("eval-missing");
    let missing = dir.arg("missing.safetensors");
    distill(
        &dir,
        &[
            "eval",
            "--checkpoint",
            &missing,
            "--device=cpu",
            &official_data(),
        ],
    )
    .fails_with(&[&missing, "No such file"]);
}

#[test]
fn eval_corrupt_checkpoint() {
    let dir = TempDir::new("eval-corrupt");
    let path = dir.arg("noise.safetensors");
    fs::write(&path, noise(4096)).unwrap();
    distill(
        &dir,
        &[
            "eval",
            "--checkpoint",
            &path,
            "--device=cpu",
            &official_data(),
        ],
    )
    .fails_with(&[&path, "not a valid safetensors file"]);
}

#[test]
fn eval_truncated_checkpoint() {
    let dir = TempDir::new("eval-truncated");
    let path = dir.arg("student.safetensors");
    write_checkpoint(Path::new(&path), "student-cnn");
    let bytes = fs::read(&path).unwrap();
    fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    distill(
        &dir,
        &[
            "eval",
            "--checkpoint",
            &path,
            "--device=cpu",
            &official_data(),
        ],
    )
    .fails_with(&[&path, "not a valid safetensors file"]);
}

#[test]
fn distill_missing_teacher() {
    let dir = TempDir::new("teacher-missing");
    let teacher = dir.arg("teacher.safetensors");
    distill_student(&dir, &teacher, &["--device=cpu", &official_data()])
        .fails_with(&[&teacher, "No such file"]);
    assert!(listing(&dir).is_empty(), "{:?}", listing(&dir));
}

#[test]
fn distill_corrupt_teacher() {
    let dir = TempDir::new("teacher-corrupt");
    let teacher = dir.arg("teacher.safetensors");
    fs::write(&teacher, noise(4096)).unwrap();
    distill_student(&dir, &teacher, &["--device=cpu", &official_data()])
        .fails_with(&[&teacher, "not a valid safetensors file"]);
    assert_eq!(listing(&dir), ["teacher.safetensors"]);
}

/// `--T` and `--alpha` are checked before anything is loaded: with neither data nor
/// teacher there, the error is still about the flag.
#[test]
fn distill_bad_temperature_or_alpha_fails_before_loading() {
    let dir = TempDir::new("bad-t-alpha");
    let teacher = dir.arg("teacher.safetensors");
    let missing = data_flag(&dir.path("no-such-dir"));
    for (flag, needles) in [
        ("--T=0", ["--T", "0"]),
        ("--T=-1", ["--T", "-1"]),
        ("--T=inf", ["--T", "inf"]),
        ("--alpha=1.5", ["--alpha", "1.5"]),
        ("--alpha=-0.1", ["--alpha", "-0.1"]),
    ] {
        distill_student(&dir, &teacher, &[flag, &missing]).fails_with(&needles);
    }
    for (flags, needles) in [
        (&["--loss", "hkd"][..], &["--loss", "hkd"]),
        (&["--loss", "dkd", "--beta=-2"], &["--beta", "-2"]),
        (&["--loss", "kd", "--beta=2"], &["--beta", "dkd"]),
    ] {
        let mut all = flags.to_vec();
        all.push(&missing);
        distill_student(&dir, &teacher, &all).fails_with(needles);
    }
}

#[test]
fn run_bad_temperature_or_alpha() {
    let dir = TempDir::new("run-bad-t");
    let missing = data_flag(&dir.path("no-such-dir"));
    let out_dir = dir.arg("study");
    distill(&dir, &["run", "--T", "0", &missing, "--out-dir", &out_dir]).fails_with(&["--T", "0"]);
    distill(
        &dir,
        &["run", "--alpha", "2", &missing, "--out-dir", &out_dir],
    )
    .fails_with(&["--alpha", "2"]);
    assert!(listing(&dir).is_empty(), "{:?}", listing(&dir));
}

#[test]
fn run_unknown_preset_lists_the_presets() {
    let dir = TempDir::new("run-preset");
    distill(&dir, &["run", "--preset", "nope"]).fails_with(&["nope", "default", "hinton-mnist"]);
}

/// A resume that cannot continue the checkpoint names why and changes nothing: one of
/// another architecture, and a weights file without its training state beside it
/// (copied alone, say), which names the missing file and the way out.
#[test]
fn resume_refusals_leave_the_checkpoint_as_it_was() {
    let dir = TempDir::new("resume-refused");
    let out = dir.arg("student.safetensors");
    write_checkpoint(Path::new(&out), "student-cnn");
    let before = fs::read(&out).unwrap();
    let state = dir.arg("student.optim.safetensors");
    let cases: [(&str, &[&str]); 2] = [
        ("teacher-cnn", &[&out, "student-cnn", "teacher-cnn"]),
        ("student-cnn", &[&state, "is missing", "--force"]),
    ];
    for (model, message) in cases {
        let args = [
            "train",
            "--model",
            model,
            "--out",
            &out,
            "--resume",
            "--device=cpu",
            &official_data(),
        ];
        distill(&dir, &args).fails_with(message);
        assert_eq!(fs::read(&out).unwrap(), before, "{out} changed");
        assert_eq!(listing(&dir), ["student.safetensors"]);
    }
}

/// The metrics file beside `--out` is written before the first step, so a run whose
/// `--out` cannot be written stops before training, not after its first epoch.
#[test]
fn out_in_a_missing_directory() {
    let dir = TempDir::new("out-missing-dir");
    let out = dir.arg("no-such-dir/x.safetensors");
    let data = official_data();
    let args = [
        "train",
        "--model",
        "student-cnn",
        "--out",
        &out,
        "--device=cpu",
        &data,
    ];
    distill(&dir, &args).fails_with(&["no-such-dir", "No such file"]);
    assert!(listing(&dir).is_empty(), "{:?}", listing(&dir));
}

// ---------------------------------------------------------------------------------
// Atomicity

#[test]
fn failed_run_leaves_an_existing_checkpoint_intact() {
    let dir = TempDir::new("atomic");
    let out = dir.arg("teacher.safetensors");
    write_checkpoint(Path::new(&out), "teacher-cnn");
    let metrics = dir.path("teacher.metrics.jsonl");
    fs::write(&metrics, "{\"epoch\":1}\n").unwrap();
    let (before, metrics_before) = (fs::read(&out).unwrap(), fs::read(&metrics).unwrap());
    let data = official_data();
    for (flag, device) in [
        ("--lr=0", "--device=cpu"),
        ("--batch=0", "--device=cpu"),
        ("--epochs=3", "--device=quantum"),
    ] {
        let args = [
            "train",
            "--model",
            "teacher-cnn",
            "--out",
            &out,
            flag,
            device,
            &data,
        ];
        distill(&dir, &args).fails_with(&[]);
        assert_eq!(
            fs::read(&out).unwrap(),
            before,
            "{flag} {device}: {out} changed"
        );
        assert_eq!(
            fs::read(&metrics).unwrap(),
            metrics_before,
            "{flag} {device}: the metrics file changed"
        );
    }
    // Nothing left beside them, no `<out>.tmp-<pid>` in particular.
    assert_eq!(
        listing(&dir),
        ["teacher.metrics.jsonl", "teacher.safetensors"]
    );
}

// ---------------------------------------------------------------------------------
// Good cases

#[test]
fn models_lists_the_built_in_networks_with_parameter_counts() {
    let dir = TempDir::new("models");
    let out = distill(&dir, &["models"]);
    out.succeeds();
    // Weights + biases of each layer (3x3 convolutions):
    //   teacher-cnn: 1·32·9+32 + 32·64·9+64 + 1600·128+128 + 128·10+10 = 225034
    //   teacher-cnn-large: 320 + 18496 + 3136·256+256 + 256·10+10       = 824458
    //   student-cnn: 1·16·9+16 + 2704·64+64 + 64·10+10                  = 173930
    //   teacher-mlp: 784·1200+1200 + 1200·1200+1200 + 1200·10+10        = 2395210
    //   student-mlp: 784·800+800 + 800·800+800 + 800·10+10              = 1276810
    for (name, count) in [
        ("teacher-cnn", "225034"),
        ("teacher-cnn-large", "824458"),
        ("student-cnn", "173930"),
        ("teacher-mlp", "2395210"),
        ("student-mlp", "1276810"),
    ] {
        assert!(
            out.stdout
                .lines()
                .any(|l| l.split_whitespace().take(2).eq([name, count])),
            "no `{name} {count}` line:\n{}",
            out.stdout
        );
    }
}

/// One real epoch (about 3 s in release): `--profile` ends the output with the kernel
/// table, whose rows count the calls one epoch makes.
#[test]
fn train_with_profile_prints_the_kernel_table() {
    let dir = TempDir::new("profile");
    let data = official_data();
    let out = train(
        &dir,
        &[
            "--epochs",
            "1",
            "--device=cpu",
            "--quiet",
            "--profile",
            &data,
        ],
    );
    out.succeeds();
    let text = &out.stdout;
    let summary = text
        .find("student-cnn: test accuracy")
        .expect("the summary");
    let table = text.find("Kernel profile").expect("the profile table");
    assert!(
        summary < table,
        "the table comes after the summary:\n{text}"
    );
    // 55,000 images (5,000 held out) at batch 64 is 860 steps: conv1's block (fused
    // with its bias, ReLU and pool) runs once per step, plus once for each of the
    // validation's five batches of 1000 and the final test evaluation's ten; Adam once
    // per step for each of student-cnn's six tensors.
    let calls = |kernel: &str| -> u64 {
        let line = text
            .lines()
            .find(|l| l.split_whitespace().next() == Some(kernel))
            .unwrap_or_else(|| panic!("no `{kernel}` row:\n{text}"));
        line.split_whitespace().nth(2).unwrap().parse().unwrap()
    };
    assert_eq!(calls("conv2d_relu_pool_forward"), 860 + 5 + 10, "{text}");
    assert_eq!(calls("adam_step"), 6 * 860, "{text}");
    assert!(!text.contains("GPU queue"), "no queue on the CPU:\n{text}");
    assert!(text.contains("all kernels"), "{text}");
}

/// A network no library code knows: 4 filters, a leaky ReLU, one linear layer.
const TINY: &str = r#"{
  "name": "tiny",
  "layers": [
    {"type": "conv2d", "name": "conv1", "in_channels": 1, "out_channels": 4, "kernel": 3},
    {"type": "leaky_relu", "negative_slope": 0.1},
    {"type": "max_pool2d", "kernel": 2},
    {"type": "flatten"},
    {"type": "linear", "name": "fc1", "in_features": 676, "out_features": 10}
  ]
}"#;

/// `--model FILE` trains a described network, `models FILE` lists it, and `eval`
/// rebuilds it from the checkpoint alone.
#[test]
fn train_and_eval_a_network_from_a_description_file() {
    let dir = TempDir::new("description");
    let spec = dir.path("tiny.json");
    fs::write(&spec, TINY).unwrap();
    let (spec_arg, out, data) = (
        dir.arg("tiny.json"),
        dir.arg("tiny.safetensors"),
        official_data(),
    );
    let models = distill(&dir, &["models", &spec_arg]);
    models.succeeds();
    // 4·9 + 4 + 676·10 + 10 = 6810 parameters.
    assert!(
        models
            .stdout
            .lines()
            .any(|l| l.split_whitespace().take(2).eq(["tiny", "6810"])),
        "{}",
        models.stdout
    );
    let args = [
        "train",
        "--model",
        &spec_arg,
        "--out",
        &out,
        "--epochs=1",
        "--device=cpu",
        "--quiet",
        &data,
    ];
    let trained = distill(&dir, &args);
    trained.succeeds();
    assert!(
        trained.stdout.contains("tiny: test accuracy"),
        "{}",
        trained.stdout
    );
    let ckpt = checkpoint::read(Path::new(&out)).unwrap();
    assert_eq!(ckpt.spec.as_ref().map(|s| s.name.as_str()), Some("tiny"));
    let eval = distill(&dir, &["eval", "--checkpoint", &out, "--device=cpu", &data]);
    eval.succeeds();
    assert!(
        eval.stdout.starts_with("tiny (epoch 1): test accuracy"),
        "{}",
        eval.stdout
    );
}

/// A description that does not fit names the file and the layer, and nothing is written.
#[test]
fn a_bad_description_file_is_named_with_its_layer() {
    let dir = TempDir::new("bad-description");
    fs::write(dir.path("bad.json"), TINY.replace("676", "600")).unwrap();
    fs::write(dir.path("garbled.json"), "{\"name\": ").unwrap();
    let out = dir.arg("x.safetensors");
    let data = official_data();
    for (file, needles) in [
        (
            "bad.json",
            vec![
                "tiny",
                "layer 5 (linear `fc1`)",
                "in_features is 600",
                "676 values",
            ],
        ),
        (
            "garbled.json",
            vec!["garbled.json", "not a network description"],
        ),
    ] {
        let model = dir.arg(file);
        let args = [
            "train",
            "--model",
            &model,
            "--out",
            &out,
            "--device=cpu",
            &data,
        ];
        distill(&dir, &args).fails_with(&needles);
        let args = [
            "run",
            "--student",
            &model,
            "--out-dir",
            &out,
            "--device=cpu",
            &data,
        ];
        distill(&dir, &args).fails_with(&needles);
    }
    // Too large to build: `models` says so instead of running out of memory.
    let huge = TINY.replace(r#""out_features": 10"#, r#""out_features": 100000000000"#);
    fs::write(dir.path("huge.json"), huge).unwrap();
    distill(&dir, &["models", &dir.arg("huge.json")])
        .fails_with(&["huge.json", "past 4294967295 values"]);
    assert_eq!(listing(&dir), ["bad.json", "garbled.json", "huge.json"]);
}

#[test]
fn run_list_presets() {
    let dir = TempDir::new("list-presets");
    let out = distill(&dir, &["run", "--list-presets"]);
    out.succeeds();
    for name in ["default", "fashion", "seed-example", "hinton-mnist"] {
        assert!(
            out.stdout.lines().any(|l| l.starts_with(name)),
            "no `{name}` line:\n{}",
            out.stdout
        );
    }
    assert!(listing(&dir).is_empty(), "{:?}", listing(&dir));
}

#[test]
fn help_exits_zero() {
    let dir = TempDir::new("help");
    let out = distill(&dir, &["--help"]);
    out.succeeds();
    for command in ["train", "distill", "run", "eval", "models", "download"] {
        assert!(out.stdout.contains(command), "--help lacks `{command}`");
    }
    let out = distill(&dir, &["train", "--help"]);
    out.succeeds();
    assert!(out.stdout.contains("--model") && out.stdout.contains("--resume"));
}

/// The study's and the sweep's new flags: every bad value is refused, naming the flag,
/// before any data is read (the data folder given does not exist).
#[test]
fn study_and_sweep_flags_are_checked_before_any_data_is_loaded() {
    let dir = TempDir::new("study-flags");
    let missing = data_flag(&dir.path("no-such-dir"));
    let out_dir = dir.arg("out");
    let cases: [(&[&str], &[&str]); 20] = [
        (&["run", "--seeds", "0"], &["--seeds"]),
        (&["run", "--val", "60000"], &["--val", "60000"]),
        (
            &["run", "--dataset", "cifar10"],
            &["--dataset", "cifar10", "fashion-mnist"],
        ),
        (&["sweep", "--seeds", "0"], &["--seeds"]),
        (&["sweep", "--val", "0"], &["--val"]),
        (&["sweep", "--val", "70000"], &["--val", "70000"]),
        (&["sweep", "--T", ""], &["--T"]),
        (&["sweep", "--T", "2,0"], &["--T", "0"]),
        (&["sweep", "--alpha", "0.5,1.5"], &["--alpha", "1.5"]),
        (&["sweep", "--widths", "8,0"], &["--widths"]),
        (
            &["sweep", "--widths", "8", "--T", "2,4"],
            &["--widths", "one --T"],
        ),
        (&["sweep", "--dataset", "svhn"], &["--dataset", "svhn"]),
        (
            &["run", "--preset", "fashion"],
            &["fashion", "--dataset fashion-mnist"],
        ),
        (&["run", "--loss", "kl"], &["--loss", "kl", "dkd"]),
        (&["run", "--beta", "2"], &["--beta", "--loss dkd"]),
        (&["run", "--loss", "dkd", "--beta", "-1"], &["--beta", "-1"]),
        (&["run", "--loss", "dkd", "--alpha=-1"], &["--alpha", "-1"]),
        (
            &["sweep", "--loss", "dkd", "--beta", "nan"],
            &["--beta", "NaN"],
        ),
        (
            &["train", "--model", "student-cnn", "--schedule", "linear"],
            &["--schedule", "linear", "cosine"],
        ),
        (
            &["train", "--model", "student-cnn", "--warmup=-1"],
            &["--warmup", "-1"],
        ),
    ];
    for (args, needles) in cases {
        let mut all: Vec<&str> = args.to_vec();
        all.extend([missing.as_str(), "--out-dir", &out_dir]);
        if args[0] == "train" {
            // `train` takes --out, not --out-dir.
            all.truncate(all.len() - 2);
            all.extend(["--out", &out_dir]);
        }
        distill(&dir, &all).fails_with(needles);
    }
    assert!(listing(&dir).is_empty(), "{:?}", listing(&dir));
}

/// A checkpoint records its data set; evaluating it on the other one is refused.
#[test]
fn a_checkpoint_is_not_evaluated_on_another_data_set() {
    let dir = TempDir::new("dataset-mismatch");
    let out = dir.arg("s.safetensors");
    let data = official_data();
    distill(
        &dir,
        &[
            "train",
            "--model",
            "student-cnn",
            "--epochs",
            "1",
            "--val",
            "59000",
            "--device=cpu",
            "--quiet",
            "--out",
            &out,
            &data,
        ],
    )
    .succeeds();
    let fashion = data_flag(&common::data_dir(distill::data::DatasetKind::FashionMnist));
    distill(
        &dir,
        &[
            "eval",
            "--checkpoint",
            &out,
            "--dataset",
            "fashion-mnist",
            &fashion,
        ],
    )
    .fails_with(&["trained on mnist", "--dataset mnist"]);
    distill(&dir, &["eval", "--checkpoint", &out, "--device=cpu", &data]).succeeds();
}

/// Without `--out`, `train` writes `runs/MODEL.safetensors` and `distill`
/// `runs/STUDENT-from-TEACHER.safetensors`; a second run onto an existing checkpoint
/// is refused before anything is loaded unless it says `--resume` or `--force`, and the
/// refusal leaves the checkpoint and its metrics file as they were.
#[test]
fn out_defaults_under_runs_and_an_existing_checkpoint_needs_resume_or_force() {
    let dir = TempDir::new("default-out");
    let data = official_data();
    // 1,000 training images: the rest held out.
    let quick = [
        "--epochs=1",
        "--val=59000",
        "--device=cpu",
        "--quiet",
        &data,
    ];
    let train_args = |extra: &[&'static str]| -> Vec<String> {
        let mut args = vec!["train", "--model", "student-cnn"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&quick);
        args.into_iter().map(String::from).collect()
    };
    let run = |args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        distill(&dir, &args)
    };
    assert!(!dir.path("runs").exists());
    run(train_args(&[])).succeeds();
    let ckpt = dir.path("runs/student-cnn.safetensors");
    let metrics = dir.path("runs/student-cnn.metrics.jsonl");
    let (before, metrics_before) = (fs::read(&ckpt).unwrap(), fs::read(&metrics).unwrap());

    let again = run(train_args(&[]));
    again.fails_with(&["runs/student-cnn.safetensors", "--resume", "--force"]);
    assert!(
        !again.stdout.contains("MNIST from"),
        "it loaded the data first"
    );
    assert_eq!(fs::read(&ckpt).unwrap(), before);
    assert_eq!(fs::read(&metrics).unwrap(), metrics_before);
    run(train_args(&["--resume", "--force"])).fails_with(&["--resume", "--force"]);

    run(train_args(&["--force", "--seed=1"])).succeeds();
    assert_ne!(
        fs::read(&ckpt).unwrap(),
        before,
        "--force did not overwrite"
    );
    let resumed = run(train_args(&["--resume", "--seed=1"]));
    resumed.succeeds();

    let teacher = ckpt.to_string_lossy().into_owned();
    let mut args = vec!["distill", "--teacher", &teacher, "--student", "student-cnn"];
    args.extend_from_slice(&quick);
    distill(&dir, &args).succeeds();
    assert!(dir
        .path("runs/student-cnn-from-student-cnn.safetensors")
        .exists());
    distill(&dir, &args).fails_with(&["student-cnn-from-student-cnn.safetensors", "--force"]);
}
