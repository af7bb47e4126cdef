//! Inputs, shapes and checks shared by the bench files.

use kernels::cpu::Isa;
use kernels::params::{Conv2dParams, MatmulParams};

/// Says which instruction set the CPU kernels will run on (`KD_ISA` chooses another),
/// or, for a `KD_ISA` they cannot honour, says why and exits with status 2.
pub fn announce_isa() {
    match Isa::from_env() {
        Ok(isa) => eprintln!(
            "CPU kernels: {isa} (best on this CPU: {}; KD_ISA=avx512|avx2|portable chooses)",
            Isa::detect()
        ),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    }
}

/// The teacher-cnn's batch size.
pub const BATCH: usize = 64;

/// Deterministic inputs in `[-1, 1)` (a 64-bit LCG: no need for `rand` here).
pub fn inputs(len: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// teacher-cnn conv1: `x (64, 1, 28, 28)`, `weight (32, 1, 3, 3)`, `out (64, 32, 26, 26)`.
pub fn teacher_conv1() -> Conv2dParams {
    Conv2dParams::new(BATCH, 1, 28, 28, 32, 3, 3, 1, 0).expect("conv1 shape")
}

/// teacher-cnn conv2: `x (64, 32, 13, 13)`, `weight (64, 32, 3, 3)`, `out (64, 64, 11, 11)`.
pub fn teacher_conv2() -> Conv2dParams {
    Conv2dParams::new(BATCH, 32, 13, 13, 64, 3, 3, 1, 0).expect("conv2 shape")
}

/// The teacher-cnn's linear layers at batch 64 (fc1: 1600 → 128, fc2: 128 → 10), as the
/// engine calls matmul for them: `y = x·Wᵀ` (W stored `(out, in)`), `dx = dy·W` and
/// `dW = dyᵀ·x`. Labels `fc1_forward`, `fc1_backward_input`, `fc1_backward_weight`, ...
pub fn teacher_linear_shapes() -> Vec<(String, MatmulParams)> {
    let mut shapes = Vec::new();
    for (name, inputs, outputs) in [("fc1", 1600, 128), ("fc2", 128, 10)] {
        shapes.extend([
            (
                format!("{name}_forward"),
                MatmulParams::new(BATCH, outputs, inputs).unwrap().trans_b(),
            ),
            (
                format!("{name}_backward_input"),
                MatmulParams::new(BATCH, inputs, outputs).unwrap(),
            ),
            (
                format!("{name}_backward_weight"),
                MatmulParams::new(outputs, inputs, BATCH).unwrap().trans_a(),
            ),
        ]);
    }
    shapes
}

/// Bytes of `floats` f32 (or u32) values.
pub fn bytes(floats: usize) -> u64 {
    4 * floats as u64
}

/// Panics unless `|ours - reference| <= tol · max(1, |reference|)` elementwise.
pub fn assert_close(what: &str, ours: &[f32], reference: &[f32], tol: f32) {
    assert_eq!(ours.len(), reference.len(), "{what}: lengths");
    for (i, (&o, &r)) in ours.iter().zip(reference).enumerate() {
        assert!(
            (o - r).abs() <= tol * r.abs().max(1.0),
            "{what}[{i}]: ours {o}, reference {r}"
        );
    }
}

/// Panics unless each `ours[i]` is within `4·√len·ε·magnitude[i]` of `reference[i]`:
/// rounding in a sum of `len` f32 products grows like `√len` in practice (the worst
/// case, `len·ε`, is too loose over the 43,264-term sums of a weight gradient to catch
/// even a doubled value). The largest error seen against f64 was 0.55 of
/// `√len·ε·magnitude`.
pub fn assert_within_rounding(
    what: &str,
    ours: &[f32],
    reference: &[f64],
    magnitude: &[f64],
    len: usize,
) {
    assert_eq!(ours.len(), reference.len(), "{what}: lengths");
    let tol = 4.0 * (len as f64).sqrt() * f32::EPSILON as f64;
    for (i, ((&o, &r), &m)) in ours.iter().zip(reference).zip(magnitude).enumerate() {
        assert!(
            (o as f64 - r).abs() <= tol * m + 1e-6,
            "{what}[{i}]: ours {o}, reference {r} (Σ|a||b| = {m})"
        );
    }
}

pub fn abs(v: &[f32]) -> Vec<f32> {
    v.iter().map(|x| x.abs()).collect()
}

/// The sizes of the teacher-cnn's parameter tensors, in order (225,034 values in all).
pub fn teacher_cnn_lens() -> Vec<usize> {
    models::builtin::builtin("teacher-cnn")
        .expect("a built-in network")
        .parameter_shapes()
        .iter()
        .map(|(_, shape)| shape.iter().product())
        .collect()
}

/// `values` cut into consecutive pieces of `lens` values.
pub fn split_by(values: &[f32], lens: &[usize]) -> Vec<Vec<f32>> {
    let mut rest = values;
    lens.iter()
        .map(|&n| {
            let (head, tail) = rest.split_at(n);
            rest = tail;
            head.to_vec()
        })
        .collect()
}
