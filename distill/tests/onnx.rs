//! `distill export --format onnx`: every network the project builds (the built-in ones,
//! two of them trained, and a description with a strided, padded conv, a leaky ReLU, an
//! overlapping pool and dropout) exported, checked by `onnx.checker` (full check) and
//! run by onnxruntime on 1,000 test images, whose logits must match ours on the CPU
//! within 1e-4; and the export's bad input.
//!
//! Python with `onnx`, `onnxruntime` and `numpy` (`tests/onnx/requirements.txt`) comes
//! from `$KD_PYTHON`, else `python3`; without it the check skips loudly, and with
//! `KD_REQUIRE_ONNX=1` (as `.ci/run` sets) it fails instead.

mod common;

use distill::data::Mnist;
use engine::{no_grad, Device, Tensor};
use models::{builtin, checkpoint, Mode, Module, Network, NetworkSpec};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const IMAGES: usize = 1000;
const TOL: f32 = 1e-4;

fn python() -> Option<String> {
    let python = std::env::var("KD_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = Command::new(&python)
        .args(["-c", "import onnx, onnxruntime, numpy"])
        .output()
        .is_ok_and(|o| o.status.success());
    match ok {
        true => Some(python),
        false if std::env::var("KD_REQUIRE_ONNX").is_ok_and(|v| v == "1") => {
            panic!("KD_REQUIRE_ONNX=1 but `{python}` cannot import onnx, onnxruntime and numpy")
        }
        false => {
            eprintln!(
                "\n*** SKIPPED: `{python}` cannot import onnx, onnxruntime and numpy; install \
                 distill/tests/onnx/requirements.txt and set KD_PYTHON, or KD_REQUIRE_ONNX=1 \
                 to fail instead ***\n"
            );
            None
        }
    }
}

fn scratch(test: &str) -> PathBuf {
    common::scratch(&format!("onnx-{test}"))
}

use common::distill;

/// A checkpoint of `spec` freshly initialised from `seed`.
fn initialised(path: &Path, spec: &NetworkSpec, seed: u64) {
    let network = Network::new(spec, seed, &Device::Cpu).unwrap();
    let meta: BTreeMap<String, String> = [("epoch", "0"), ("seed", "0"), ("metrics", "{}")]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .into();
    checkpoint::save(path, &network, &meta, &[]).unwrap();
}

/// A checkpoint of the built-in `model` trained one epoch on 1,000 images.
fn trained(path: &Path, model: &str) {
    common::trained(model, &common::mnist_dir(), path);
}

fn write_f32(path: &Path, values: &[f32]) {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    fs::write(path, bytes).unwrap();
}

#[test]
fn every_network_exports_to_onnx_that_onnxruntime_runs_as_we_do() {
    let Some(python) = python() else { return };
    let dir = scratch("match");
    let odd = NetworkSpec::from_json(
        r#"{"name": "odd", "layers": [
            {"type": "conv2d", "name": "c1", "in_channels": 1, "out_channels": 4, "kernel": 5,
             "stride": 2, "padding": 2},
            {"type": "leaky_relu", "negative_slope": 0.2},
            {"type": "max_pool2d", "kernel": 3, "stride": 2},
            {"type": "flatten"},
            {"type": "dropout", "p": 0.3},
            {"type": "linear", "name": "fc", "in_features": 144, "out_features": 10}]}"#,
    )
    .unwrap();
    let mut checkpoints = Vec::new();
    for model in ["teacher-cnn", "student-cnn"] {
        let path = dir.join(format!("{model}.safetensors"));
        trained(&path, model);
        checkpoints.push(path);
    }
    for (i, spec) in ["teacher-cnn-large", "teacher-mlp", "student-mlp"]
        .map(|m| builtin::builtin(m).unwrap())
        .into_iter()
        .chain([odd])
        .enumerate()
    {
        let path = dir.join(format!("{}.safetensors", spec.name));
        initialised(&path, &spec, i as u64);
        checkpoints.push(path);
    }

    let data = Mnist::load(&common::mnist_dir()).unwrap();
    let test = data.test.subset(..IMAGES);
    let images = dir.join("images.f32");
    write_f32(&images, &test.images());
    let x = Tensor::from_vec(test.images(), &[IMAGES, 1, 28, 28], &Device::Cpu).unwrap();
    for path in checkpoints {
        let onnx = path.with_extension("onnx");
        let out = distill(&[
            "export",
            "--checkpoint",
            &path.display().to_string(),
            "--format",
            "onnx",
            "--out",
            &onnx.display().to_string(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (network, _) = checkpoint::load_network(&path, &Device::Cpu).unwrap();
        let logits = {
            let _frozen = no_grad();
            network.forward(&x, Mode::Eval).unwrap().to_vec().unwrap()
        };
        let ours = path.with_extension("logits.f32");
        write_f32(&ours, &logits);
        let check = Command::new(&python)
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/onnx/check.py"))
            .args([&onnx, &images, &ours].map(|p| p.display().to_string()))
            .args([IMAGES.to_string(), TOL.to_string()])
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&check.stdout).into_owned()
            + &String::from_utf8_lossy(&check.stderr);
        println!("{said}");
        assert!(check.status.success(), "{}: {said}", network.name());
    }
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn bad_exports_name_the_problem_and_leave_nothing() {
    let dir = scratch("bad");
    let arg = |name: &str| dir.join(name).display().to_string();
    let not_a_checkpoint = arg("notes.safetensors");
    fs::write(&not_a_checkpoint, "not a checkpoint").unwrap();
    let good = arg("student.safetensors");
    initialised(
        Path::new(&good),
        &builtin::builtin("student-cnn").unwrap(),
        0,
    );
    let existing = arg("existing.onnx");
    fs::write(&existing, "keep me").unwrap();
    let out = arg("out.onnx");
    let cases: [(&[&str], &[&str]); 4] = [
        (
            &[
                "--checkpoint",
                &not_a_checkpoint,
                "--format",
                "onnx",
                "--out",
                &out,
            ],
            &[&not_a_checkpoint, "safetensors"],
        ),
        (
            &[
                "--checkpoint",
                &arg("missing.safetensors"),
                "--format",
                "onnx",
                "--out",
                &out,
            ],
            &["missing.safetensors"],
        ),
        (
            &["--checkpoint", &good, "--format", "tflite", "--out", &out],
            &["tflite", "onnx"],
        ),
        (
            &[
                "--checkpoint",
                &good,
                "--format",
                "onnx",
                "--out",
                &existing,
            ],
            &[&existing, "--force"],
        ),
    ];
    for (args, parts) in cases {
        let result = distill(&[&["export"], args].concat());
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert!(!result.status.success(), "{args:?} succeeded");
        for part in parts {
            assert!(stderr.contains(part), "{args:?}: `{part}` not in {stderr}");
        }
    }
    assert!(!Path::new(&out).exists(), "a file was written");
    assert_eq!(fs::read_to_string(&existing).unwrap(), "keep me");
    // --force replaces it, whole.
    let replaced = distill(&[
        "export",
        "--checkpoint",
        &good,
        "--format",
        "onnx",
        "--out",
        &existing,
        "--force",
    ]);
    assert!(replaced.status.success());
    assert!(fs::metadata(&existing).unwrap().len() > 100_000);
    let left: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("tmp"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    let _ = fs::remove_dir_all(&dir);
}
