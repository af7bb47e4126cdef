//! The engine on the GPU: every op's forward and backward agree with the CPU on the same
//! inputs, a small conv network passes a gradient check run entirely on the GPU, and a
//! training step of each network gives the CPU's parameters. Shapes stay small: CI runs
//! these on Mesa's software Vulkan driver.

mod common;

use common::{conv_network_loss, gpu, gradcheck_on, rng, uniform};
use distill::data::{Dataset, DatasetKind, Mnist};
use distill::optim::{OptimizerConfig, OptimizerKind, Schedule};
use distill::progress::ProgressMode;
use distill::train::{self, Distillation, TrainOptions};
use engine::{Device, Error, Labels, Result, Tensor};
use models::{builtin, Mode, Module, Network};

/// `|a - b| <= tol · max(1, max |a|)`, elementwise.
fn assert_close(what: &str, a: &[f32], b: &[f32], tol: f32) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    let scale = a.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= tol * scale,
            "{what}[{i}]: cpu {x}, gpu {y}"
        );
    }
}

/// Runs `f` on the CPU and on the GPU with the same parameter values and compares the
/// outputs and the gradient of every input (for the projection `<out, r>`).
fn cpu_equals_gpu(
    what: &str,
    gpu: &Device,
    inputs: &[(Vec<f32>, Vec<usize>)],
    f: impl Fn(&[Tensor]) -> Result<Tensor>,
) {
    let run = |device: &Device| {
        let tensors: Vec<Tensor> = inputs
            .iter()
            .map(|(v, s)| Tensor::parameter(v.clone(), s, device).unwrap())
            .collect();
        let out = f(&tensors).unwrap();
        let r = uniform(&mut rng(7), out.numel());
        let grads = out
            .backward_with(Tensor::from_vec(r, out.shape(), device).unwrap())
            .unwrap();
        let g: Vec<Vec<f32>> = tensors
            .iter()
            .map(|t| grads.get(t).unwrap().to_vec().unwrap())
            .collect();
        (out.to_vec().unwrap(), g)
    };
    let (cpu_out, cpu_grads) = run(&Device::Cpu);
    let (gpu_out, gpu_grads) = run(gpu);
    assert_close(&format!("{what} output"), &cpu_out, &gpu_out, 1e-4);
    for (i, (c, g)) in cpu_grads.iter().zip(&gpu_grads).enumerate() {
        assert_close(&format!("{what} grad {i}"), c, g, 1e-4);
    }
}

#[test]
fn every_op_forward_and_backward_matches_the_cpu() {
    let Some(device) = gpu() else { return };
    let mut r = rng(1);
    let mut u = |len| uniform(&mut r, len);
    let (m, k, n) = (5, 7, 3);
    cpu_equals_gpu(
        "matmul",
        &device,
        &[(u(m * k), vec![m, k]), (u(k * n), vec![k, n])],
        |t| t[0].matmul(&t[1]),
    );
    cpu_equals_gpu(
        "matmul_t",
        &device,
        &[(u(m * k), vec![m, k]), (u(n * k), vec![n, k])],
        |t| t[0].matmul_t(&t[1]),
    );
    cpu_equals_gpu(
        "conv2d",
        &device,
        &[
            (u(2 * 3 * 7 * 6), vec![2, 3, 7, 6]),
            (u(4 * 3 * 9), vec![4, 3, 3, 3]),
        ],
        |t| t[0].conv2d(&t[1], 2, 1),
    );
    // Conv outputs 9×8 (the pool drops the last row) and, at stride 2, 4×3.
    for (stride, side) in [(1, 9), (2, 7)] {
        cpu_equals_gpu(
            &format!("conv2d_relu_pool, stride {stride}"),
            &device,
            &[
                (u(2 * 3 * side * 8), vec![2, 3, side, 8]),
                (u(4 * 3 * 9), vec![4, 3, 3, 3]),
                (u(4), vec![4]),
            ],
            |t| t[0].conv2d_relu_pool(&t[1], &t[2], stride, 1),
        );
    }
    cpu_equals_gpu(
        "bias",
        &device,
        &[(u(2 * 3 * 5), vec![2, 3, 5]), (u(3), vec![3])],
        |t| t[0].bias_add(&t[1]),
    );
    cpu_equals_gpu(
        "max_pool2d",
        &device,
        &[(u(2 * 2 * 5 * 5), vec![2, 2, 5, 5])],
        |t| t[0].max_pool2d(2, 2),
    );
    cpu_equals_gpu(
        "max_pool2d 1x1",
        &device,
        &[(u(3), vec![1, 3, 1, 1])],
        |t| t[0].max_pool2d(1, 1),
    );
    cpu_equals_gpu("relu", &device, &[(u(37), vec![37])], |t| t[0].relu());
    cpu_equals_gpu("leaky_relu", &device, &[(u(37), vec![37])], |t| {
        t[0].leaky_relu(0.2)
    });
    cpu_equals_gpu("dropout", &device, &[(u(101), vec![101])], |t| {
        t[0].dropout(0.3, 42)
    });
    cpu_equals_gpu(
        "add scale sum mean",
        &device,
        &[(u(12), vec![3, 4]), (u(12), vec![3, 4])],
        |t| t[0].add(&t[1])?.scale(0.5)?.sum_axis(1)?.mean(),
    );
    cpu_equals_gpu("log_softmax", &device, &[(u(3 * 10), vec![3, 10])], |t| {
        t[0].log_softmax()
    });
    let y = |device: &Device| Labels::new(&[3, 0, 9], device).unwrap();
    let teacher = uniform(&mut rng(2), 30);
    cpu_equals_gpu("cross_entropy", &device, &[(u(30), vec![3, 10])], |t| {
        t[0].cross_entropy(&y(t[0].device()))
    });
    cpu_equals_gpu("softmax_kl", &device, &[(u(30), vec![3, 10])], |t| {
        let teacher = Tensor::from_vec(teacher.clone(), &[3, 10], t[0].device())?;
        t[0].softmax_kl(&teacher, 4.0)
    });
    cpu_equals_gpu("kd_loss", &device, &[(u(30), vec![3, 10])], |t| {
        let teacher = Tensor::from_vec(teacher.clone(), &[3, 10], t[0].device())?;
        Ok(t[0].kd_loss(&teacher, &y(t[0].device()), 4.0, 0.3)?.loss)
    });
    cpu_equals_gpu("dkd_loss", &device, &[(u(30), vec![3, 10])], |t| {
        let teacher = Tensor::from_vec(teacher.clone(), &[3, 10], t[0].device())?;
        Ok(t[0]
            .dkd_loss(&teacher, &y(t[0].device()), 4.0, 1.0, 8.0)?
            .loss)
    });
}

/// The constants without a backward: gathered rows and a concatenation.
#[test]
fn gather_rows_and_concat_match_the_cpu() {
    let Some(device) = gpu() else { return };
    let table = uniform(&mut rng(5), 7 * 3);
    let index = [6, 0, 0, 3];
    let run = |device: &Device| {
        let t = Tensor::from_vec(table.clone(), &[7, 3], device).unwrap();
        let rows = t
            .gather_rows(&Labels::new(&index, device).unwrap())
            .unwrap();
        assert_eq!(rows.shape(), [4, 3]);
        let joined = Tensor::concat(&[rows.clone(), t.sum().unwrap()]).unwrap();
        (rows.to_vec().unwrap(), joined.to_vec().unwrap())
    };
    let (cpu, gpu) = (run(&Device::Cpu), run(&device));
    assert_eq!(cpu.0, gpu.0, "gather_rows copies exactly");
    assert_close("concat", &cpu.1, &gpu.1, 1e-5);
    assert_eq!(cpu.0[..3], table[18..21]);
}

#[test]
fn gradcheck_conv_network_on_the_gpu() {
    let Some(device) = gpu() else { return };
    let mut r = rng(3);
    let inputs = [
        (uniform(&mut r, 2 * 6 * 6), vec![2, 1, 6, 6]),
        (uniform(&mut r, 3 * 9), vec![3, 1, 3, 3]),
        (uniform(&mut r, 3), vec![3]),
        (uniform(&mut r, 4 * 12), vec![4, 12]),
    ];
    let y = Labels::new(&[1, 3], &device).unwrap();
    gradcheck_on(
        &device,
        "conv_network_gpu",
        &inputs,
        |t| conv_network_loss(t, &y),
        1e-3,
        5e-2,
    );
}

#[test]
fn mixing_devices_is_a_named_error() {
    let Some(device) = gpu() else { return };
    let a = Tensor::from_vec(vec![1.0; 4], &[2, 2], &Device::Cpu).unwrap();
    let b = Tensor::from_vec(vec![1.0; 4], &[2, 2], &device).unwrap();
    let err = a.matmul(&b).unwrap_err();
    assert!(
        matches!(err, Error::DeviceMismatch { op: "matmul", .. }),
        "{err}"
    );
    assert!(err.to_string().contains("to_device"), "{err}");
    // Moving is explicit and keeps the values.
    assert_eq!(
        b.to_device(&Device::Cpu)
            .unwrap()
            .matmul(&a)
            .unwrap()
            .to_vec()
            .unwrap(),
        vec![2.0; 4]
    );
}

/// Every built-in network on a batch of 3 real-looking inputs: the gradients of the
/// first step (compared before Adam, whose normalisation would hide a wrong scale), then
/// the parameters after two steps, agree between the CPU and the GPU. The teacher-mlp's
/// dropout draws the same masks on both.
#[test]
fn training_steps_match_the_cpu_for_every_network() {
    let Some(device) = gpu() else { return };
    let x = uniform(&mut rng(4), 3 * 784)
        .iter()
        .map(|v| v.abs())
        .collect::<Vec<f32>>();
    for arch in builtin::NAMES {
        let spec = builtin::builtin(arch).unwrap();
        let steps = |device: &Device| -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
            let net = Network::new(&spec, 0, device).unwrap();
            let params = net.parameters();
            let mut opt = distill::optim::Optimizer::new(
                OptimizerConfig::new(OptimizerKind::Adam, 1e-3),
                &params,
            )
            .unwrap();
            let xs = Tensor::from_vec(x.clone(), &[3, 1, 28, 28], device).unwrap();
            let y = Labels::new(&[1, 7, 3], device).unwrap();
            let mut first_grads = Vec::new();
            for step in 0..2 {
                let loss = net
                    .forward(&xs, Mode::Train { seed: step })
                    .unwrap()
                    .cross_entropy(&y)
                    .unwrap();
                let grads = loss.backward().unwrap();
                if step == 0 {
                    first_grads = params
                        .iter()
                        .map(|(_, t)| grads.get(t).unwrap().to_vec().unwrap())
                        .collect();
                }
                opt.step(&params, &grads).unwrap();
            }
            let values = params.iter().map(|(_, t)| t.to_vec().unwrap()).collect();
            (first_grads, values)
        };
        let ((cpu_grads, cpu_params), (gpu_grads, gpu_params)) =
            (steps(&Device::Cpu), steps(&device));
        let names: Vec<String> = spec
            .parameter_shapes()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        for ((name, c), g) in names.iter().zip(&cpu_grads).zip(&gpu_grads) {
            assert!(
                c.iter().any(|&v| v != 0.0),
                "{arch} {name}: an all-zero gradient"
            );
            assert_close(&format!("{arch} gradient of {name}"), c, g, 1e-4);
        }
        for ((name, c), g) in names.iter().zip(&cpu_params).zip(&gpu_params) {
            assert_close(&format!("{arch} {name} after two steps"), c, g, 1e-4);
        }
    }
}

/// MNIST-like images (a fixed pattern of pixel bytes) and digit labels: `n` of them.
fn synthetic(n: usize) -> Dataset {
    let pixels = (0..n * 784).map(|i| ((i * 37) % 251) as u8).collect();
    Dataset::from_parts(pixels, (0..n).map(|i| (i % 10) as u8).collect()).unwrap()
}

/// The queue a training step sends: exactly one submit a step (on every 16th the loss
/// read rides in it), and a fixed number of dispatches. 40 images at batch 2 are 20
/// steps, so one epoch holds a read at step 16 and one at its end.
///
/// student-cnn, plain: 9 forward dispatches (the input's shift and scale, the fused
/// conv + bias + ReLU + pool, two linear layers with their biases and the ReLU between;
/// fc1's product, (2, 2704)·(2704, 64), is cut into pieces along its long reduction and
/// summed), 2 for the loss (cross-entropy, row_loss_mean), 12 backward
/// (row_loss_backward, fc2 and fc1: two matmuls and a bias each, two ReLUs (fc1's, and
/// the block's mask on the pooled values), conv1's weight gradient read through the
/// pool, in two pieces and their sum_axis, and its bias gradient) and 6 Adam steps: 29.
/// Distilled: the batch's teacher logits are gathered on the device, one more.
#[test]
fn one_submit_per_training_step_on_the_gpu() {
    let Some(_) = gpu() else { return };
    // A device of its own: the other tests' work would be counted on the shared one.
    let (device, _) = Device::select("gpu").unwrap();
    let data = Mnist {
        kind: DatasetKind::Mnist,
        val: Dataset::default(),
        train: synthetic(40),
        test: synthetic(10),
    };
    let dir = std::env::temp_dir().join(format!("kd-gpu-submits-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let opts = |file: &str| TrainOptions {
        epochs: 1,
        batch_size: 2,
        optimizer: OptimizerConfig::new(OptimizerKind::Adam, 1e-3),
        schedule: Schedule::CONSTANT,
        seed: 0,
        jitter: false,
        out: dir.join(file),
        resume: false,
        progress: ProgressMode::Quiet,
    };
    let spec = builtin::builtin("student-cnn").unwrap();
    let student = Network::new(&spec, 0, &device).unwrap();
    let report = train::train(&opts("plain.safetensors"), &student, &data, &device, None).unwrap();
    let epoch = &report.epochs[0];
    let queue = epoch.queue.expect("a GPU epoch counts its queue");
    assert_eq!(epoch.steps, 20);
    assert_eq!(queue.submits, 20, "one submit per step");
    assert_eq!(queue.dispatches, 20 * 29, "{queue:?}");

    let teacher = Network::new(&spec, 1, &device).unwrap();
    let kd = Distillation::new(&teacher, 4.0, 0.5).unwrap();
    let student = Network::new(&spec, 0, &device).unwrap();
    let report =
        train::train(&opts("kd.safetensors"), &student, &data, &device, Some(&kd)).unwrap();
    let queue = report.epochs[0].queue.unwrap();
    assert_eq!(queue.submits, 20, "one submit per distillation step");
    assert_eq!(queue.dispatches, 20 * 30, "{queue:?}");
    // The metrics file says the same.
    let line = std::fs::read_to_string(dir.join("kd.metrics.jsonl")).unwrap();
    let line: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    assert_eq!(
        (line["gpu_submits"].as_u64(), line["steps"].as_u64()),
        (Some(20), Some(20))
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
