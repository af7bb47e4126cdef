//! Network descriptions: the JSON form, its defaults, and a clear message for every
//! description that does not fit.

use engine::{Device, Tensor};
use models::{builtin, LayerSpec, Mode, Module, Network, NetworkSpec, Normalize};

/// The description of the module docs, every field written out.
const TINY: &str = r#"{
  "name": "tiny-cnn",
  "input": [1, 28, 28],
  "normalize": {"mean": 0.1307, "std": 0.3081},
  "layers": [
    {"type": "conv2d", "name": "conv1", "in_channels": 1, "out_channels": 8,
     "kernel": 3, "stride": 1, "padding": 0},
    {"type": "leaky_relu", "negative_slope": 0.2},
    {"type": "max_pool2d", "kernel": 2},
    {"type": "flatten"},
    {"type": "dropout", "p": 0.5},
    {"type": "linear", "name": "fc1", "in_features": 1352, "out_features": 10}
  ]
}"#;

/// `TINY` with `from` replaced by `to`, parsed: the error's message.
fn error_of(from: &str, to: &str) -> String {
    assert!(TINY.contains(from), "{from}");
    NetworkSpec::from_json(&TINY.replace(from, to))
        .unwrap_err()
        .to_string()
}

fn assert_mentions(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(message.contains(part), "no `{part}` in: {message}");
    }
}

#[test]
fn the_documented_description_parses_and_builds() {
    let spec = NetworkSpec::from_json(TINY).unwrap();
    assert_eq!(spec.name, "tiny-cnn");
    assert_eq!(spec.layers.len(), 6);
    // 26x26x8 after the conv, 13x13x8 after the pool: 1352 values into fc1.
    let shapes = spec.check().unwrap();
    assert_eq!(shapes[0], [8, 26, 26]);
    assert_eq!(shapes[2], [8, 13, 13]);
    assert_eq!(shapes[3], [1352]);
    assert_eq!(shapes[5], [10]);
    assert_eq!(spec.parameter_count(), 8 * 9 + 8 + 1352 * 10 + 10);
    let net = Network::new(&spec, 0, &Device::Cpu).unwrap();
    let x = Tensor::from_vec(vec![0.5; 2 * 784], &[2, 1, 28, 28], &Device::Cpu).unwrap();
    assert_eq!(
        net.forward(&x, Mode::Train { seed: 3 }).unwrap().shape(),
        [2, 10]
    );
}

#[test]
fn defaults_fill_what_is_left_out() {
    let json = r#"{"name": "short", "layers": [
        {"type": "conv2d", "name": "c", "in_channels": 1, "out_channels": 2, "kernel": 3},
        {"type": "max_pool2d", "kernel": 2},
        {"type": "leaky_relu"},
        {"type": "flatten"},
        {"type": "linear", "name": "fc", "in_features": 338, "out_features": 10}
    ]}"#;
    let spec = NetworkSpec::from_json(json).unwrap();
    assert_eq!(spec.input, [1, 28, 28]);
    assert_eq!(spec.normalize, Normalize::default());
    assert_eq!(
        spec.layers[0],
        LayerSpec::Conv2d {
            name: "c".into(),
            in_channels: 1,
            out_channels: 2,
            kernel: 3,
            stride: 1,
            padding: 0
        }
    );
    // The pool's stride is its kernel; the slope PyTorch's 0.01.
    assert_eq!(spec.check().unwrap()[1], [2, 13, 13]);
    assert_eq!(
        spec.layers[2],
        LayerSpec::LeakyRelu {
            negative_slope: 0.01
        }
    );
}

#[test]
fn every_builtin_round_trips_through_json() {
    for spec in builtin::all() {
        let json = spec.to_json();
        assert_eq!(NetworkSpec::from_json(&json).unwrap(), spec, "{json}");
    }
}

#[test]
fn json_that_is_no_description_is_named() {
    let cases = [
        (r#"{"name": "x"}"#, vec!["missing field `layers`"]),
        ("[1, 2]", vec!["not a network description"]),
        (
            r#"{"name": "x", "layers": [{"type": "gelu"}]}"#,
            vec!["unknown variant `gelu`", "leaky_relu"],
        ),
        (
            r#"{"name": "x", "layers": [{"type": "relu"}], "colour": 3}"#,
            vec!["unknown field `colour`"],
        ),
        (
            r#"{"name": "x", "layers": [{"type": "dropout", "p": 0.5, "q": 1}]}"#,
            vec!["unknown field `q`"],
        ),
        // A typo for leaky_relu is refused, not read as a plain ReLU.
        (
            r#"{"name": "x", "layers": [{"type": "relu", "negative_slope": 0.2}]}"#,
            vec!["unknown field `negative_slope`"],
        ),
        (
            r#"{"name": "x", "layers": [{"type": "flatten", "start_dim": 1}]}"#,
            vec!["unknown field `start_dim`"],
        ),
    ];
    for (json, parts) in cases {
        let message = NetworkSpec::from_json(json).unwrap_err().to_string();
        assert_mentions(&message, &parts);
    }
}

#[test]
fn a_layer_that_does_not_fit_is_named_with_what_would() {
    let cases: [(&str, &str, &[&str]); 9] = [
        (
            r#""in_channels": 1"#,
            r#""in_channels": 3"#,
            &["layer 1 (conv2d `conv1`)", "in_channels is 3", "1 channels"],
        ),
        (
            r#""in_features": 1352"#,
            r#""in_features": 1000"#,
            &[
                "layer 6 (linear `fc1`)",
                "in_features is 1000",
                "1352 values",
            ],
        ),
        (
            r#"{"type": "flatten"},"#,
            "",
            &[
                "layer 5 (linear `fc1`)",
                "add {\"type\": \"flatten\"}",
                "1352 values",
            ],
        ),
        (
            r#""kernel": 3, "stride": 1"#,
            r#""kernel": 31, "stride": 1"#,
            &["conv2d `conv1`", "31x31 kernel does not fit a 28x28 input"],
        ),
        (
            r#""p": 0.5"#,
            r#""p": 1.0"#,
            &["layer 5 (dropout)", "[0, 1)"],
        ),
        (
            r#""name": "fc1""#,
            r#""name": "conv1""#,
            &["layer 6 (linear `conv1`)", "another layer has this name"],
        ),
        (
            r#""name": "fc1""#,
            r#""name": "fc.1""#,
            &["`fc.1`", "identifier"],
        ),
        (
            r#""std": 0.3081"#,
            r#""std": 0"#,
            &["network `tiny-cnn`", "std > 0"],
        ),
        (
            r#""input": [1, 28, 28]"#,
            r#""input": [1, 0, 28]"#,
            &["input [1, 0, 28] has an empty axis"],
        ),
    ];
    for (from, to, parts) in cases {
        assert_mentions(&error_of(from, to), parts);
    }
    assert_mentions(
        &error_of(r#""name": "tiny-cnn""#, r#""name": "no spaces""#),
        &["`no spaces`", "letters, digits"],
    );
    let no_layers = NetworkSpec::new("empty").check().unwrap_err().to_string();
    assert_mentions(&no_layers, &["network `empty`", "no layers"]);
    let not_flat = NetworkSpec::new("conv-only").conv2d("c", 1, 2, 3).check();
    assert_mentions(
        &not_flat.unwrap_err().to_string(),
        &["one value per class", "[2, 26, 26]"],
    );
    let optim = NetworkSpec::new("n")
        .flatten()
        .linear("optim", 784, 10)
        .check();
    assert_mentions(&optim.unwrap_err().to_string(), &["not `optim`"]);
}

#[test]
fn files_load_and_their_errors_name_them() {
    let dir = std::env::temp_dir().join(format!("models-spec-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("tiny.json");
    std::fs::write(&good, TINY).unwrap();
    let path = good.to_str().unwrap();
    assert_eq!(NetworkSpec::resolve(path).unwrap().name, "tiny-cnn");
    assert_eq!(
        NetworkSpec::load(&good).unwrap(),
        NetworkSpec::from_json(TINY).unwrap()
    );

    let bad = dir.join("bad.json");
    std::fs::write(&bad, "{ not json").unwrap();
    let message = NetworkSpec::resolve(bad.to_str().unwrap())
        .unwrap_err()
        .to_string();
    assert_mentions(&message, &["bad.json", "not a network description"]);
    // A description that parses but does not fit: the file, the network and the layer.
    let misfit = dir.join("misfit.json");
    std::fs::write(&misfit, TINY.replace("1352", "1000")).unwrap();
    let message = NetworkSpec::load(&misfit).unwrap_err().to_string();
    assert_mentions(
        &message,
        &["misfit.json: network `tiny-cnn`: layer 6 (linear `fc1`)"],
    );
    let missing = dir.join("missing.json");
    let message = NetworkSpec::load(&missing).unwrap_err().to_string();
    assert_mentions(&message, &["missing.json", "cannot read"]);
    let message = NetworkSpec::resolve(missing.to_str().unwrap())
        .unwrap_err()
        .to_string();
    assert_mentions(&message, &["missing.json", "no such description file"]);
    let message = NetworkSpec::resolve("resnet-50").unwrap_err().to_string();
    assert_mentions(
        &message,
        &["`resnet-50`", "neither a built-in network", "student-mlp"],
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Another input shape and standardisation: `(x - 0.5) / 2` on 2×2 images, flattened,
/// then `W x + b` with `W` and `b` set by hand.
#[test]
fn input_and_normalize_are_the_descriptions() {
    let spec = NetworkSpec {
        name: "small".into(),
        input: [1, 2, 2],
        normalize: Normalize {
            mean: 0.5,
            std: 2.0,
        },
        layers: vec![],
    }
    .flatten()
    .linear("fc", 4, 1);
    let net = Network::new(&spec, 0, &Device::Cpu).unwrap();
    let params = net.parameters();
    params[0].1.assign(vec![1.0, 2.0, 3.0, 4.0]).unwrap();
    params[1].1.assign(vec![0.25]).unwrap();
    // x = [0.5, 1.5, 2.5, 4.5] -> [0, 0.5, 1, 2] -> 0·1 + 0.5·2 + 1·3 + 2·4 + 0.25 = 12.25
    let x = Tensor::from_vec(vec![0.5, 1.5, 2.5, 4.5], &[1, 1, 2, 2], &Device::Cpu).unwrap();
    let out = net.forward(&x, Mode::Eval).unwrap().to_vec().unwrap();
    assert_eq!(out, [12.25]);
    let mnist = Tensor::zeros(&[1, 1, 28, 28], &Device::Cpu).unwrap();
    let message = net.forward(&mnist, Mode::Eval).unwrap_err().to_string();
    assert_mentions(&message, &["small takes (n, 1, 2, 2)", "[1, 1, 28, 28]"]);
}
