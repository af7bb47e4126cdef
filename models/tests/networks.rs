//! The four built-in networks: sizes, shapes, init, dropout, and a backward pass.

use engine::{Device, Labels, Tensor};
use models::{builtin, Conv2d, Dropout, LayerSpec, Linear, Mode, Module, Network, NetworkSpec};

fn spec(arch: &str) -> NetworkSpec {
    builtin::builtin(arch).unwrap()
}

fn net(arch: &str, seed: u64) -> Network {
    Network::new(&spec(arch), seed, &Device::Cpu).unwrap()
}

const TRAIN: Mode = Mode::Train { seed: 1 };

/// `n` images whose pixels are a fixed pattern in [0, 1).
fn images(n: usize) -> Tensor {
    let data = (0..n * 784)
        .map(|i| ((i * 37) % 101) as f32 / 101.0)
        .collect();
    Tensor::from_vec(data, &[n, 1, 28, 28], &Device::Cpu).unwrap()
}

fn values(network: &Network) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    network
        .parameters()
        .into_iter()
        .map(|(name, t)| (name, t.shape().to_vec(), t.to_vec().unwrap()))
        .collect()
}

#[test]
fn parameter_counts() {
    // teacher-cnn: conv1 1·32·9 + 32 = 320, conv2 32·64·9 + 64 = 18496,
    //   fc1 1600·128 + 128 = 204928, fc2 128·10 + 10 = 1290.
    // teacher-cnn-large: conv1 320, conv2 18496, fc1 3136·256 + 256 = 803072,
    //   fc2 256·10 + 10 = 2570.
    // student-cnn: conv1 16·9 + 16 = 160, fc1 2704·64 + 64 = 173120, fc2 64·10 + 10 = 650.
    // teacher-mlp: fc1 784·1200 + 1200 = 942000, fc2 1200·1200 + 1200 = 1441200,
    //   fc3 1200·10 + 10 = 12010.
    // student-mlp: fc1 784·800 + 800 = 628000, fc2 800·800 + 800 = 640800,
    //   fc3 800·10 + 10 = 8010.
    let expected = [
        ("teacher-cnn", 320 + 18496 + 204928 + 1290),
        ("teacher-cnn-large", 320 + 18496 + 803072 + 2570),
        ("student-cnn", 160 + 173120 + 650),
        ("teacher-mlp", 942000 + 1441200 + 12010),
        ("student-mlp", 628000 + 640800 + 8010),
    ];
    assert_eq!(
        expected.map(|(_, n)| n),
        [225034, 824458, 173930, 2395210, 1276810]
    );
    for (arch, count) in expected {
        assert_eq!(spec(arch).parameter_count(), count, "{arch}");
        let network = net(arch, 0);
        assert_eq!(network.parameter_count(), count, "{arch}");
    }
}

#[test]
fn forward_flops_per_image() {
    // 2 per multiply-add of conv and linear layers, 1 per bias add.
    // teacher-cnn: conv1 32·26·26 outputs · (2·9 + 1) = 411008,
    //   conv2 64·11·11 · (2·288 + 1) = 4468288, fc1 128 · (2·1600 + 1) = 409728,
    //   fc2 10 · (2·128 + 1) = 2570.
    // teacher-cnn-large: conv1 32·28·28 · 19 = 476672, conv2 64·14·14 · 577 = 7237888,
    //   fc1 256 · (2·3136 + 1) = 1605888, fc2 10 · (2·256 + 1) = 5130.
    // student-cnn: conv1 16·26·26 · 19 = 205504, fc1 64 · 5409 = 346176, fc2 10 · 129 = 1290.
    // teacher-mlp: 1200 · 1569 + 1200 · 2401 + 10 · 2401 = 1882800 + 2881200 + 24010.
    // student-mlp: 800 · 1569 + 800 · 1601 + 10 · 1601 = 1255200 + 1280800 + 16010.
    let expected = [
        ("teacher-cnn", 411008 + 4468288 + 409728 + 2570),
        ("teacher-cnn-large", 476672 + 7237888 + 1605888 + 5130),
        ("student-cnn", 205504 + 346176 + 1290),
        ("teacher-mlp", 1882800 + 2881200 + 24010),
        ("student-mlp", 1255200 + 1280800 + 16010),
    ];
    for (arch, flops) in expected {
        assert_eq!(spec(arch).forward_flops_per_image(), flops, "{arch}");
        let network = net(arch, 0);
        assert_eq!(network.forward_flops_per_image(), flops, "{arch}");
    }
}

#[test]
fn layer_specs_fit_together() {
    // Each linear layer's in_features is what the layer before it produces.
    for arch in builtin::NAMES {
        let spec = spec(arch);
        let mut shape = spec.input.to_vec();
        for layer in &spec.layers {
            if let LayerSpec::Linear {
                name, in_features, ..
            } = layer
            {
                assert_eq!(shape, [*in_features], "{arch} {name}");
            }
            shape = layer.output_shape(&shape).unwrap();
        }
        assert_eq!(shape, [10], "{arch}");
        assert_eq!(spec.check().unwrap().last().unwrap(), &[10]);
    }
}

#[test]
fn output_shapes_for_batch_1_and_3() {
    for arch in builtin::NAMES {
        let network = net(arch, 0);
        for n in [1, 3] {
            for mode in [Mode::Eval, TRAIN] {
                let logits = network.forward(&images(n), mode).unwrap();
                assert_eq!(logits.shape(), [n, 10], "{arch} {mode:?}");
                assert!(logits.to_vec().unwrap().iter().all(|v| v.is_finite()));
            }
        }
    }
}

#[test]
fn forward_rejects_other_input_shapes() {
    let network = net("student-mlp", 0);
    for shape in [
        vec![2, 784],
        vec![2, 1, 28, 27],
        vec![0, 1, 28, 28],
        vec![2, 3, 28, 28],
    ] {
        let x = Tensor::zeros(&shape, &Device::Cpu).unwrap();
        let err = network.forward(&x, Mode::Eval).unwrap_err().to_string();
        assert!(
            err.contains("student-mlp") && err.contains(&format!("{shape:?}")),
            "{err}"
        );
    }
}

#[test]
fn state_dict_names_and_shapes() {
    type StateDict = &'static [(&'static str, &'static [usize])];
    let expected: [(&str, StateDict); 4] = [
        (
            "teacher-cnn",
            &[
                ("conv1.weight", &[32, 1, 3, 3]),
                ("conv1.bias", &[32]),
                ("conv2.weight", &[64, 32, 3, 3]),
                ("conv2.bias", &[64]),
                ("fc1.weight", &[128, 1600]),
                ("fc1.bias", &[128]),
                ("fc2.weight", &[10, 128]),
                ("fc2.bias", &[10]),
            ],
        ),
        (
            "student-cnn",
            &[
                ("conv1.weight", &[16, 1, 3, 3]),
                ("conv1.bias", &[16]),
                ("fc1.weight", &[64, 2704]),
                ("fc1.bias", &[64]),
                ("fc2.weight", &[10, 64]),
                ("fc2.bias", &[10]),
            ],
        ),
        (
            "teacher-mlp",
            &[
                ("fc1.weight", &[1200, 784]),
                ("fc1.bias", &[1200]),
                ("fc2.weight", &[1200, 1200]),
                ("fc2.bias", &[1200]),
                ("fc3.weight", &[10, 1200]),
                ("fc3.bias", &[10]),
            ],
        ),
        (
            "student-mlp",
            &[
                ("fc1.weight", &[800, 784]),
                ("fc1.bias", &[800]),
                ("fc2.weight", &[800, 800]),
                ("fc2.bias", &[800]),
                ("fc3.weight", &[10, 800]),
                ("fc3.bias", &[10]),
            ],
        ),
    ];
    for (arch, expected) in expected {
        let network = net(arch, 0);
        let got: Vec<(String, Vec<usize>)> = network
            .parameters()
            .iter()
            .map(|(name, t)| (name.clone(), t.shape().to_vec()))
            .collect();
        let want: Vec<(String, Vec<usize>)> = expected
            .iter()
            .map(|(n, s)| (n.to_string(), s.to_vec()))
            .collect();
        assert_eq!(got, want, "{arch}");
        assert_eq!(spec(arch).parameter_shapes(), want, "{arch}");
        assert!(network.parameters().iter().all(|(_, t)| t.requires_grad()));
    }
}

#[test]
fn init_is_deterministic_by_seed() {
    for arch in builtin::NAMES {
        let a = values(&net(arch, 42));
        let b = values(&net(arch, 42));
        let bits = |v: &[(String, Vec<usize>, Vec<f32>)]| -> Vec<u32> {
            v.iter()
                .flat_map(|(_, _, x)| x.iter().map(|f| f.to_bits()))
                .collect()
        };
        assert_eq!(bits(&a), bits(&b), "{arch}");
        let c = values(&net(arch, 43));
        for ((name, _, x), (_, _, y)) in a.iter().zip(&c) {
            assert_ne!(x, y, "{arch} {name}: seeds 42 and 43 drew the same values");
        }
    }
}

#[test]
fn init_follows_pytorch_default() {
    // Weight and bias ~ U(-1/√fan_in, 1/√fan_in), fan_in = in_features or c_in·k·k.
    for arch in builtin::NAMES {
        let network = net(arch, 7);
        let parameters = network.parameters();
        for pair in parameters.chunks(2) {
            let [(w_name, w), (b_name, b)] = pair else {
                panic!("{arch}: odd parameter list")
            };
            let fan_in: usize = w.shape()[1..].iter().product();
            let bound = 1.0 / (fan_in as f32).sqrt();
            for (name, t) in [(w_name, w), (b_name, b)] {
                let v = t.to_vec().unwrap();
                let max = v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
                assert!(max < bound, "{arch} {name}: |value| {max} >= bound {bound}");
                if v.len() >= 10_000 {
                    // U(-b, b): mean 0, variance b²/3; and it uses the whole range.
                    let mean = v.iter().sum::<f32>() / v.len() as f32;
                    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / v.len() as f32;
                    let want = bound * bound / 3.0;
                    assert!(mean.abs() < 0.05 * bound, "{arch} {name}: mean {mean}");
                    assert!((var / want - 1.0).abs() < 0.05, "{arch} {name}: var {var}");
                    assert!(max > 0.99 * bound, "{arch} {name}: max {max}");
                }
            }
        }
    }
}

#[test]
fn to_device_copies_into_new_leaves() {
    let network = net("student-cnn", 3);
    let copy = network.to_device(&Device::Cpu).unwrap();
    assert_eq!(copy.spec(), network.spec());
    assert_eq!(values(&network), values(&copy));
    let x = images(2);
    let before = network.forward(&x, Mode::Eval).unwrap().to_vec().unwrap();
    assert_eq!(
        copy.forward(&x, Mode::Eval).unwrap().to_vec().unwrap(),
        before
    );
    // Writing the copy leaves the original alone.
    for (_, t) in copy.parameters() {
        assert!(t.requires_grad());
        t.assign(vec![0.0; t.numel()]).unwrap();
    }
    assert_eq!(
        network.forward(&x, Mode::Eval).unwrap().to_vec().unwrap(),
        before
    );
}

#[test]
fn every_parameter_gets_a_gradient() {
    for arch in builtin::NAMES {
        let network = net(arch, 0);
        let labels = Labels::new(&[3, 7], &Device::Cpu).unwrap();
        let loss = network
            .forward(&images(2), TRAIN)
            .unwrap()
            .cross_entropy(&labels)
            .unwrap();
        let grads = loss.backward().unwrap();
        for (name, t) in network.parameters() {
            let g = grads
                .get(&t)
                .unwrap_or_else(|| panic!("{arch} {name}: no gradient"));
            assert_eq!(g.shape(), t.shape(), "{arch} {name}");
            assert!(
                g.to_vec().unwrap().iter().any(|&v| v != 0.0),
                "{arch} {name}: all zero"
            );
        }
    }
}

#[test]
fn builtin_names_resolve_and_others_do_not() {
    assert_eq!(
        builtin::NAMES,
        [
            "teacher-cnn",
            "teacher-cnn-large",
            "student-cnn",
            "teacher-mlp",
            "student-mlp"
        ]
    );
    for arch in builtin::NAMES {
        let spec = NetworkSpec::resolve(arch).unwrap();
        assert_eq!(spec.name, arch);
        assert_eq!(net(arch, 0).name(), arch);
    }
    assert_eq!(builtin::all().len(), 5);
    let err = NetworkSpec::resolve("teacher").unwrap_err().to_string();
    assert!(err.contains("`teacher`"), "{err}");
    for name in builtin::NAMES {
        assert!(err.contains(name), "{err}");
    }
}

#[test]
fn linear_by_hand() {
    // W = [[1, 2], [3, 4], [5, 6]], b = [0.1, 0.2, 0.3], x = [1, -1]:
    // x·Wᵀ + b = [1 - 2, 3 - 4, 5 - 6] + b = [-0.9, -0.8, -0.7].
    let cpu = Device::Cpu;
    let layer = Linear {
        weight: Tensor::parameter(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[3, 2], &cpu).unwrap(),
        bias: Tensor::parameter(vec![0.1, 0.2, 0.3], &[3], &cpu).unwrap(),
    };
    let x = Tensor::from_vec(vec![1.0, -1.0], &[1, 2], &cpu).unwrap();
    let y = layer.forward(&x, Mode::Eval).unwrap().to_vec().unwrap();
    for (got, want) in y.iter().zip([-0.9, -0.8, -0.7]) {
        assert!((got - want).abs() < 1e-6, "{y:?}");
    }
}

#[test]
fn conv2d_by_hand() {
    // A 3×3 image 1..9 and a 2×2 kernel of ones, bias 0.5: each output is the sum of a
    // 2×2 window plus 0.5: [1+2+4+5, 2+3+5+6, 4+5+7+8, 5+6+8+9] + 0.5.
    let cpu = Device::Cpu;
    let layer = Conv2d {
        weight: Tensor::parameter(vec![1.0; 4], &[1, 1, 2, 2], &cpu).unwrap(),
        bias: Tensor::parameter(vec![0.5], &[1], &cpu).unwrap(),
        stride: 1,
        pad: 0,
    };
    let x = Tensor::from_vec((1..=9).map(|v| v as f32).collect(), &[1, 1, 3, 3], &cpu).unwrap();
    let y = layer.forward(&x, Mode::Eval).unwrap();
    assert_eq!(y.shape(), [1, 1, 2, 2]);
    assert_eq!(y.to_vec().unwrap(), [12.5, 16.5, 24.5, 28.5]);
}

#[test]
fn layer_init_is_seeded_and_bounded() {
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    let cpu = Device::Cpu;
    let a = Conv2d::new(3, 8, 5, 1, 2, &mut StdRng::seed_from_u64(1), &cpu).unwrap();
    let b = Conv2d::new(3, 8, 5, 1, 2, &mut StdRng::seed_from_u64(1), &cpu).unwrap();
    assert_eq!(a.weight.shape(), [8, 3, 5, 5]);
    assert_eq!(a.weight.to_vec().unwrap(), b.weight.to_vec().unwrap());
    // fan_in = 3·5·5 = 75
    let bound = 1.0 / 75f32.sqrt();
    assert!(a.weight.to_vec().unwrap().iter().all(|v| v.abs() < bound));
    assert!(a.bias.to_vec().unwrap().iter().all(|v| v.abs() < bound));
}

#[test]
fn dropout_eval_is_identity() {
    let x = images(2);
    let layer = Dropout::new(0.5, 1).unwrap();
    let y = layer.forward(&x, Mode::Eval).unwrap();
    assert_eq!(y.to_vec().unwrap(), x.to_vec().unwrap());
    // And the teacher-mlp, whose only randomness is dropout, is deterministic in eval.
    let network = net("teacher-mlp", 0);
    let a = network.forward(&x, Mode::Eval).unwrap().to_vec().unwrap();
    assert_eq!(
        network.forward(&x, Mode::Eval).unwrap().to_vec().unwrap(),
        a
    );
}

#[test]
fn dropout_train_is_seeded_and_differs_across_layers() {
    let ones = Tensor::from_vec(vec![1.0; 4096], &[4, 1024], &Device::Cpu).unwrap();
    let mask = |layer: &Dropout, seed| {
        layer
            .forward(&ones, Mode::Train { seed })
            .unwrap()
            .to_vec()
            .unwrap()
    };
    let (first, second) = (Dropout::new(0.5, 1).unwrap(), Dropout::new(0.5, 4).unwrap());
    let m = mask(&first, 9);
    // Inverted dropout: kept values are scaled by 1 / (1 - 0.5) = 2.
    assert!(m.iter().all(|&v| v == 0.0 || v == 2.0));
    let kept = m.iter().filter(|&&v| v == 2.0).count();
    assert!((1800..2300).contains(&kept), "kept {kept} of 4096");
    assert_eq!(mask(&first, 9), m, "same seed, same mask");
    assert_ne!(mask(&first, 10), m, "another step draws another mask");
    assert_ne!(mask(&second, 9), m, "another layer draws another mask");
    assert_ne!(first.seed(9), second.seed(9));

    // Through a network: the same step seed replays, another differs, eval differs.
    let network = net("teacher-mlp", 0);
    let x = images(3);
    let run = |mode| network.forward(&x, mode).unwrap().to_vec().unwrap();
    let a = run(Mode::Train { seed: 5 });
    assert_eq!(run(Mode::Train { seed: 5 }), a);
    assert_ne!(run(Mode::Train { seed: 6 }), a);
    assert_ne!(run(Mode::Eval), a);
}

#[test]
fn dropout_rejects_bad_probability() {
    for p in [-0.1, 1.0, f32::NAN] {
        let err = Dropout::new(p, 0).unwrap_err().to_string();
        assert!(err.contains("dropout"), "{err}");
    }
}
