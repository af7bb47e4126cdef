//! Checkpoint files: round trips, atomic writes, and every kind of bad file.

use engine::{Device, Tensor};
use models::checkpoint::{self, CheckpointError, FORMAT, FORMAT_1};
use models::{builtin, Linear, Mode, Module, Network, NetworkSpec};
use safetensors::tensor::TensorView;
use safetensors::Dtype;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// A fresh, empty directory of its own for each test.
fn temp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("models-{test}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn metadata() -> BTreeMap<String, String> {
    [
        ("epoch", "3"),
        ("seed", "17"),
        ("metrics", r#"{"test_accuracy": 0.9912, "loss": 0.031}"#),
        ("note", "free-form"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn images(n: usize) -> Tensor {
    let data = (0..n * 784)
        .map(|i| ((i * 37) % 101) as f32 / 101.0)
        .collect();
    Tensor::from_vec(data, &[n, 1, 28, 28], &Device::Cpu).unwrap()
}

fn logits(network: &Network) -> Vec<f32> {
    network
        .forward(&images(3), Mode::Eval)
        .unwrap()
        .to_vec()
        .unwrap()
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn spec(name: &str) -> NetworkSpec {
    builtin::builtin(name).unwrap()
}

fn net(name: &str, seed: u64) -> Network {
    Network::new(&spec(name), seed, &Device::Cpu).unwrap()
}

/// A checkpoint describing the built-in network `name` holding zero-filled `tensors`,
/// written without `save`'s checks.
fn write_raw(path: &Path, name: &str, tensors: &[(String, Vec<usize>)], dtype: Dtype) {
    write_raw_with(path, &[("network", &spec(name).to_json())], tensors, dtype)
}

/// As [`write_raw`], with `meta` beside the required keys (FORMAT unless given).
fn write_raw_with(
    path: &Path,
    meta: &[(&str, &str)],
    tensors: &[(String, Vec<usize>)],
    dtype: Dtype,
) {
    let data: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, shape)| vec![0u8; shape.iter().product::<usize>() * dtype.bitsize() / 8])
        .collect();
    let views: Vec<(&str, TensorView)> = tensors
        .iter()
        .zip(&data)
        .map(|((name, shape), bytes)| {
            (
                name.as_str(),
                TensorView::new(dtype, shape.clone(), bytes).unwrap(),
            )
        })
        .collect();
    let mut all: std::collections::HashMap<String, String> = metadata().into_iter().collect();
    all.insert("format".into(), FORMAT.into());
    for (key, value) in meta {
        all.insert(key.to_string(), value.to_string());
    }
    fs::write(path, safetensors::serialize(views, Some(all)).unwrap()).unwrap();
}

fn assert_names(err: &CheckpointError, path: &Path, parts: &[&str]) {
    let message = err.to_string();
    assert!(
        message.contains(&path.display().to_string()),
        "no path in: {message}"
    );
    for part in parts {
        assert!(message.contains(part), "no `{part}` in: {message}");
    }
}

/// A network that is not built in, with every layer type, to round-trip its description.
fn custom() -> NetworkSpec {
    NetworkSpec::new("custom")
        .layer(models::LayerSpec::Conv2d {
            name: "c".into(),
            in_channels: 1,
            out_channels: 2,
            kernel: 5,
            stride: 2,
            padding: 1,
        })
        .leaky_relu(0.2)
        .layer(models::LayerSpec::MaxPool2d {
            kernel: 3,
            stride: Some(1),
        })
        .flatten()
        .dropout(0.25)
        .linear("out", 2 * 11 * 11, 10)
}

#[test]
fn round_trip_keeps_parameters_logits_and_metadata() {
    let dir = temp_dir("round-trip");
    for spec in builtin::all().into_iter().chain([custom()]) {
        let arch = spec.name.clone();
        let path = dir.join(format!("{arch}.safetensors"));
        let network = Network::new(&spec, 11, &Device::Cpu).unwrap();
        checkpoint::save(&path, &network, &metadata(), &[]).unwrap();

        let (loaded, ckpt) = checkpoint::load_network(&path, &Device::Cpu).unwrap();
        assert_eq!(loaded.spec(), &spec);
        for ((name, a), (loaded_name, b)) in network.parameters().iter().zip(loaded.parameters()) {
            assert_eq!(name, &loaded_name);
            let bits = |t: &Tensor| {
                t.to_vec()
                    .unwrap()
                    .iter()
                    .map(|v| v.to_bits())
                    .collect::<Vec<_>>()
            };
            assert_eq!(bits(a), bits(&b), "{arch} {name}");
            assert!(b.requires_grad());
        }
        assert_eq!(logits(&loaded), logits(&network), "{arch}");

        assert_eq!(ckpt.spec.as_ref(), Some(&spec));
        assert_eq!(ckpt.name(), arch);
        assert_eq!(ckpt.path, path);
        assert_eq!((ckpt.epoch(), ckpt.seed()), (Some(3), Some(17)));
        assert_eq!(
            ckpt.metrics(),
            metadata().get("metrics").map(String::as_str)
        );
        assert_eq!(ckpt.metadata["format"], "kd-stack/2");
        assert_eq!(
            NetworkSpec::from_json(&ckpt.metadata["network"]),
            Ok(spec.clone())
        );
        assert_eq!(ckpt.metadata["note"], "free-form");
        let names: Vec<&str> = ckpt.tensors.iter().map(|(n, _, _)| n.as_str()).collect();
        let want: Vec<String> = spec
            .parameter_shapes()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, want, "{arch}: tensors in state_dict order");
    }
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn load_into_overwrites_an_existing_network() {
    let dir = temp_dir("load-into");
    let path = dir.join("student.safetensors");
    let saved = net("student-cnn", 1);
    checkpoint::save(&path, &saved, &metadata(), &[]).unwrap();
    let other = net("student-cnn", 2);
    assert_ne!(logits(&other), logits(&saved));
    checkpoint::load_into(&other, &checkpoint::read(&path).unwrap()).unwrap();
    assert_eq!(logits(&other), logits(&saved));
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn extra_tensors_round_trip() {
    let dir = temp_dir("extra");
    let path = dir.join("with-optim.safetensors");
    let network = net("student-mlp", 0);
    let extra: Vec<(String, Tensor)> = network
        .parameters()
        .iter()
        .map(|(name, t)| {
            let m: Vec<f32> = (0..t.numel()).map(|i| i as f32 * 1e-3).collect();
            (
                format!("optim.{name}.m"),
                Tensor::from_vec(m, t.shape(), &Device::Cpu).unwrap(),
            )
        })
        .collect();
    checkpoint::save(&path, &network, &metadata(), &extra).unwrap();
    let (loaded, ckpt) = checkpoint::load_network(&path, &Device::Cpu).unwrap();
    assert_eq!(logits(&loaded), logits(&network));
    assert_eq!(ckpt.extra().count(), extra.len());
    for (name, t) in &extra {
        let (shape, values) = ckpt.tensor(name).unwrap();
        assert_eq!(shape, t.shape());
        assert_eq!(values, t.to_vec().unwrap());
    }
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn save_checks_names_and_metadata_before_writing() {
    let dir = temp_dir("save-checks");
    let path = dir.join("ckpt.safetensors");
    let network = net("student-cnn", 0);
    let t = Tensor::zeros(&[2], &Device::Cpu).unwrap();

    let err = checkpoint::save(&path, &network, &metadata(), &[("foo".into(), t.clone())]);
    let err = err.unwrap_err();
    assert!(
        matches!(err, CheckpointError::UnexpectedTensor { .. }),
        "{err}"
    );
    assert_names(&err, &path, &["`foo`"]);

    let twice = [("optim.a".into(), t.clone()), ("optim.a".into(), t.clone())];
    let err = checkpoint::save(&path, &network, &metadata(), &twice).unwrap_err();
    assert_names(&err, &path, &["`optim.a`", "twice"]);

    for (key, value, expect) in [
        ("epoch", None, "`epoch` is missing"),
        ("seed", Some("-1"), "`seed`"),
        ("metrics", Some("{not json"), "`metrics`"),
        ("metrics", None, "`metrics` is missing"),
        ("network", Some("{}"), "`network`"),
        ("format", Some("kd-stack/0"), "`format`"),
    ] {
        let mut meta = metadata();
        match value {
            Some(v) => meta.insert(key.to_string(), v.to_string()),
            None => meta.remove(key),
        };
        let err = checkpoint::save(&path, &network, &meta, &[]).unwrap_err();
        assert_names(&err, &path, &[expect]);
    }
    assert!(entries(&dir).is_empty(), "{:?}", entries(&dir));
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn save_leaves_no_temp_file_and_replaces_the_old_one() {
    let dir = temp_dir("atomic");
    let path = dir.join("ckpt.safetensors");
    let first = net("student-cnn", 1);
    checkpoint::save(&path, &first, &metadata(), &[]).unwrap();
    assert_eq!(entries(&dir), ["ckpt.safetensors"]);
    let second = net("student-cnn", 2);
    checkpoint::save(&path, &second, &metadata(), &[]).unwrap();
    assert_eq!(entries(&dir), ["ckpt.safetensors"]);
    let (loaded, _) = checkpoint::load_network(&path, &Device::Cpu).unwrap();
    assert_eq!(logits(&loaded), logits(&second));
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn failed_save_keeps_the_existing_file() {
    let dir = temp_dir("failed-save");
    let path = dir.join("ckpt.safetensors");
    let network = net("student-cnn", 1);
    checkpoint::save(&path, &network, &metadata(), &[]).unwrap();
    let before = fs::read(&path).unwrap();
    // Block the temporary file's name with a directory: the write itself fails.
    let tmp = dir.join(format!("ckpt.safetensors.tmp-{}", std::process::id()));
    fs::create_dir(&tmp).unwrap();
    let other = net("student-cnn", 2);
    let err = checkpoint::save(&path, &other, &metadata(), &[]).unwrap_err();
    assert!(matches!(err, CheckpointError::Io { .. }), "{err}");
    assert_names(&err, &path, &[]);
    assert_eq!(fs::read(&path).unwrap(), before);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn save_onto_a_directory_fails_and_cleans_up() {
    let dir = temp_dir("onto-dir");
    let path = dir.join("taken");
    fs::create_dir(&path).unwrap();
    fs::write(path.join("inside"), b"keep").unwrap();
    let network = net("student-cnn", 1);
    let err = checkpoint::save(&path, &network, &metadata(), &[]).unwrap_err();
    assert!(matches!(err, CheckpointError::Io { .. }), "{err}");
    assert_names(&err, &path, &[]);
    assert_eq!(
        entries(&dir),
        ["taken"],
        "the temporary file was left behind"
    );
    assert_eq!(fs::read(path.join("inside")).unwrap(), b"keep");
    fs::remove_dir_all(&dir).unwrap();
}

/// A directory that refuses the write. Root ignores directory permissions, so as root
/// the test runs itself again as `nobody` (through util-linux's `setpriv`) rather than
/// pass without checking anything.
#[cfg(unix)]
#[test]
fn save_into_a_read_only_directory_fails_and_keeps_the_file() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = temp_dir("read-only");
    let probe = dir.join("probe");
    fs::write(&probe, b"").unwrap();
    if fs::metadata(&probe).unwrap().uid() == 0 {
        fs::remove_dir_all(&dir).unwrap();
        let this = std::env::current_exe().unwrap();
        let status = std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&this)
            .args([
                "--exact",
                "save_into_a_read_only_directory_fails_and_keeps_the_file",
            ])
            .status()
            .expect("running as root: setpriv (util-linux) re-runs this test as nobody");
        assert!(status.success(), "the test as nobody: {status}");
        return;
    }
    fs::remove_file(&probe).unwrap();
    let path = dir.join("ckpt.safetensors");
    let network = net("student-cnn", 1);
    checkpoint::save(&path, &network, &metadata(), &[]).unwrap();
    let before = fs::read(&path).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o555)).unwrap();
    assert!(
        fs::write(dir.join("probe"), b"").is_err(),
        "permissions are not enforced here"
    );
    let other = net("student-cnn", 2);
    let err = checkpoint::save(&path, &other, &metadata(), &[]);
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    let err = err.unwrap_err();
    assert_names(&err, &path, &[]);
    assert_eq!(fs::read(&path).unwrap(), before);
    assert_eq!(entries(&dir), ["ckpt.safetensors"]);
    fs::remove_dir_all(&dir).unwrap();
}

/// A full disk (the temporary file is a link to `/dev/full`) fails the save and keeps
/// the existing file, whoever runs the test.
#[cfg(unix)]
#[test]
fn save_onto_a_full_disk_fails_and_keeps_the_file() {
    let dir = temp_dir("full-disk");
    let path = dir.join("ckpt.safetensors");
    checkpoint::save(&path, &net("student-cnn", 1), &metadata(), &[]).unwrap();
    let before = fs::read(&path).unwrap();
    let tmp = dir.join(format!("ckpt.safetensors.tmp-{}", std::process::id()));
    std::os::unix::fs::symlink("/dev/full", &tmp).unwrap();
    let err = checkpoint::save(&path, &net("student-cnn", 2), &metadata(), &[]).unwrap_err();
    assert!(matches!(err, CheckpointError::Io { .. }), "{err}");
    assert_names(&err, &path, &["No space left"]);
    assert_eq!(fs::read(&path).unwrap(), before);
    assert_eq!(entries(&dir), ["ckpt.safetensors"], "the link was removed");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn missing_file() {
    let path = temp_dir("missing").join("nope.safetensors");
    let err = checkpoint::read(&path).unwrap_err();
    assert!(matches!(err, CheckpointError::Io { .. }), "{err}");
    assert_names(&err, &path, &["No such file"]);
    let err = checkpoint::load_network(&path, &Device::Cpu).unwrap_err();
    assert_names(&err, &path, &[]);
}

#[test]
fn truncated_and_corrupt_files() {
    let dir = temp_dir("corrupt");
    let good = dir.join("good.safetensors");
    let network = net("student-cnn", 1);
    checkpoint::save(&good, &network, &metadata(), &[]).unwrap();
    let bytes = fs::read(&good).unwrap();
    let mut flipped_header = bytes.clone();
    flipped_header[10] = b'}';
    let cases: [(&str, Vec<u8>); 5] = [
        ("empty", Vec::new()),
        ("truncated-data", bytes[..bytes.len() - 100].to_vec()),
        ("truncated-header", bytes[..40].to_vec()),
        ("bad-header", flipped_header),
        ("text", b"this is not a checkpoint at all".to_vec()),
    ];
    for (name, contents) in cases {
        let path = dir.join(format!("{name}.safetensors"));
        fs::write(&path, contents).unwrap();
        let err = checkpoint::read(&path).unwrap_err();
        assert!(
            matches!(err, CheckpointError::NotSafetensors { .. }),
            "{name}: {err}"
        );
        assert_names(&err, &path, &["not a valid safetensors file"]);
    }
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn checkpoint_of_another_network() {
    let dir = temp_dir("wrong-arch");
    let path = dir.join("student.safetensors");
    let student = net("student-cnn", 1);
    checkpoint::save(&path, &student, &metadata(), &[]).unwrap();

    let teacher = net("teacher-cnn", 1);
    let before = logits(&teacher);
    let err = checkpoint::load_into(&teacher, &checkpoint::read(&path).unwrap()).unwrap_err();
    assert!(
        matches!(&err, CheckpointError::WrongNetwork { expected, found, .. }
            if expected == "teacher-cnn" && found == "student-cnn"),
        "{err}"
    );
    assert_names(&err, &path, &["student-cnn", "expected teacher-cnn"]);
    assert_eq!(
        logits(&teacher),
        before,
        "a failed load changed the network"
    );

    // The same name with other layers is another network too.
    let mut wider = spec("student-cnn");
    wider.layers[4] = models::LayerSpec::Linear {
        name: "fc1".into(),
        in_features: 2704,
        out_features: 65,
    };
    wider.layers[6] = models::LayerSpec::Linear {
        name: "fc2".into(),
        in_features: 65,
        out_features: 10,
    };
    let wider = Network::new(&wider, 0, &Device::Cpu).unwrap();
    let err = checkpoint::load_into(&wider, &checkpoint::read(&path).unwrap()).unwrap_err();
    assert_names(&err, &path, &["another student-cnn", "as described now"]);
    fs::remove_dir_all(&dir).unwrap();
}

/// A module of the caller's own has no description: its checkpoint holds none, cannot
/// be rebuilt from the file alone, and loads back into the module.
#[test]
fn a_custom_module_round_trips_through_load_into() {
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
    let make = |seed| {
        use rand::SeedableRng;
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        Affine(Linear::new(784, 10, &mut rng, &Device::Cpu).unwrap())
    };
    let dir = temp_dir("custom-module");
    let path = dir.join("affine.safetensors");
    let (saved, other) = (make(1), make(2));
    checkpoint::save(&path, &saved, &metadata(), &[]).unwrap();
    let ckpt = checkpoint::read(&path).unwrap();
    assert!(ckpt.spec.is_none() && !ckpt.metadata.contains_key("network"));
    let err = checkpoint::load_network(&path, &Device::Cpu).unwrap_err();
    assert!(
        matches!(err, CheckpointError::NoDescription { .. }),
        "{err}"
    );
    assert_names(&err, &path, &["no network description", "load_into"]);
    checkpoint::load_into(&other, &ckpt).unwrap();
    let out = |m: &Affine| m.forward(&images(2), Mode::Eval).unwrap().to_vec().unwrap();
    assert_eq!(out(&other), out(&saved));
    // Into a network whose parameters have other names: named as missing.
    let err = checkpoint::load_into(&net("student-mlp", 0), &ckpt).unwrap_err();
    assert_names(&err, &path, &["missing tensor `fc1.weight`"]);
    fs::remove_dir_all(&dir).unwrap();
}

/// A `kd-stack/1` file names a built-in network under `arch`: it still loads.
#[test]
fn previous_format_files_still_load() {
    let dir = temp_dir("format-1");
    let path = dir.join("old.safetensors");
    let shapes = spec("student-cnn").parameter_shapes();
    let meta = [("format", FORMAT_1), ("arch", "student-cnn")];
    write_raw_with(&path, &meta, &shapes, Dtype::F32);
    let (loaded, ckpt) = checkpoint::load_network(&path, &Device::Cpu).unwrap();
    assert_eq!(loaded.spec(), &spec("student-cnn"));
    assert_eq!(ckpt.name(), "student-cnn");
    write_raw_with(
        &path,
        &[("format", FORMAT_1), ("arch", "resnet-50")],
        &shapes,
        Dtype::F32,
    );
    let err = checkpoint::read(&path).unwrap_err();
    assert!(matches!(err, CheckpointError::BadNetwork { .. }), "{err}");
    assert_names(&err, &path, &["`resnet-50`", "teacher-cnn", "student-mlp"]);
    write_raw_with(&path, &[("format", FORMAT_1)], &shapes, Dtype::F32);
    assert_names(
        &checkpoint::read(&path).unwrap_err(),
        &path,
        &["`arch` is missing"],
    );
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn missing_extra_and_misshapen_tensors() {
    let dir = temp_dir("tensors");
    let shapes = spec("student-cnn").parameter_shapes();
    let path = dir.join("bad.safetensors");

    let mut missing = shapes.clone();
    missing.retain(|(name, _)| name != "fc1.weight");
    write_raw(&path, "student-cnn", &missing, Dtype::F32);
    let err = checkpoint::read(&path).unwrap_err();
    assert!(
        matches!(err, CheckpointError::MissingTensor { .. }),
        "{err}"
    );
    assert_names(&err, &path, &["missing tensor `fc1.weight`"]);

    let mut extra = shapes.clone();
    extra.push(("foo".into(), vec![3]));
    write_raw(&path, "student-cnn", &extra, Dtype::F32);
    let err = checkpoint::read(&path).unwrap_err();
    assert!(
        matches!(err, CheckpointError::UnexpectedTensor { .. }),
        "{err}"
    );
    assert_names(&err, &path, &["unexpected tensor `foo`"]);

    let mut misshapen = shapes.clone();
    misshapen[0].1 = vec![16, 1, 5, 5];
    write_raw(&path, "student-cnn", &misshapen, Dtype::F32);
    let err = checkpoint::read(&path).unwrap_err();
    assert!(
        matches!(err, CheckpointError::ShapeMismatch { .. }),
        "{err}"
    );
    assert_names(
        &err,
        &path,
        &["`conv1.weight` has shape [16, 1, 5, 5], expected [16, 1, 3, 3]"],
    );

    // A student-cnn's tensors under a teacher-cnn description: the first parameter in
    // state_dict order that does not fit is named.
    write_raw(&path, "teacher-cnn", &shapes, Dtype::F32);
    let err = checkpoint::read(&path).unwrap_err();
    assert_names(
        &err,
        &path,
        &["`conv1.weight` has shape [16, 1, 3, 3], expected [32, 1, 3, 3]"],
    );

    write_raw(&path, "student-cnn", &shapes, Dtype::F64);
    let err = checkpoint::read(&path).unwrap_err();
    assert_names(&err, &path, &["`conv1.weight` has dtype F64, expected F32"]);

    write_raw(&path, "student-cnn", &shapes, Dtype::F32);
    assert!(
        checkpoint::read(&path).is_ok(),
        "the unedited list is valid"
    );
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_metadata() {
    let dir = temp_dir("metadata");
    let path = dir.join("bad.safetensors");
    let edit = |key: &str, value: Option<&str>| {
        let shapes = spec("student-mlp").parameter_shapes();
        write_raw(&path, "student-mlp", &shapes, Dtype::F32);
        // Rewrite the header with one key changed.
        let bytes = fs::read(&path).unwrap();
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        let mut meta = header.metadata().clone().unwrap();
        match value {
            Some(v) => meta.insert(key.to_string(), v.to_string()),
            None => meta.remove(key),
        };
        let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let out = safetensors::serialize(file.tensors(), Some(meta)).unwrap();
        fs::write(&path, out).unwrap();
        checkpoint::read(&path).unwrap_err()
    };
    let err = edit("network", Some("{\"name\": 3}"));
    assert!(matches!(err, CheckpointError::BadNetwork { .. }), "{err}");
    assert_names(&err, &path, &["not a network description"]);
    // A description whose layers do not fit: the layer is named.
    let mut broken = spec("student-mlp");
    broken.layers[1] = models::LayerSpec::Linear {
        name: "fc1".into(),
        in_features: 700,
        out_features: 800,
    };
    let err = edit("network", Some(&broken.to_json()));
    assert_names(
        &err,
        &path,
        &["layer 2 (linear `fc1`)", "in_features is 700", "784"],
    );
    // Without a description the tensors cannot be checked yet: read accepts them.
    let bytes_ok = {
        write_raw(
            &path,
            "student-mlp",
            &spec("student-mlp").parameter_shapes(),
            Dtype::F32,
        );
        checkpoint::read(&path).is_ok()
    };
    assert!(bytes_ok);
    assert_names(&edit("format", None), &path, &["`format` is missing"]);
    assert_names(
        &edit("format", Some("kd-stack/3")),
        &path,
        &["kd-stack/3", "kd-stack/2", "kd-stack/1"],
    );
    assert_names(&edit("epoch", Some("three")), &path, &["`epoch`", "three"]);
    assert_names(
        &edit("metrics", Some("{")),
        &path,
        &["`metrics`", "not JSON"],
    );

    // A plain safetensors file without any metadata.
    let plain = safetensors::serialize(Vec::<(&str, TensorView)>::new(), None).unwrap();
    fs::write(&path, plain).unwrap();
    let err = checkpoint::read(&path).unwrap_err();
    assert_names(&err, &path, &["`format` is missing"]);
    fs::remove_dir_all(&dir).unwrap();
}
