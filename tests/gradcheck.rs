//! Finite-difference gradient checks through the engine, one test per differentiable
//! op, on proptest-generated shapes. Inputs stay away from kinks (ReLU at 0) and ties
//! (max-pool windows) so that the numeric derivative exists.

mod common;

use common::{conv_network_loss, distinct, gradcheck, rng, uniform};
use engine::{Labels, Tensor};
use proptest::prelude::*;

const EPS: f32 = 1e-2;
const TOL: f32 = 2e-2;

/// The output of `f` and the gradient of each input for the projection `<out, r>`,
/// `r` fixed.
fn outputs_and_grads(
    inputs: &[(Vec<f32>, Vec<usize>)],
    f: impl Fn(&[Tensor]) -> engine::Result<Tensor>,
) -> Vec<Vec<f32>> {
    let device = engine::Device::Cpu;
    let tensors: Vec<Tensor> = inputs
        .iter()
        .map(|(v, s)| Tensor::parameter(v.clone(), s, &device).unwrap())
        .collect();
    let out = f(&tensors).unwrap();
    let r = Tensor::from_vec(uniform(&mut rng(7), out.numel()), out.shape(), &device).unwrap();
    let grads = out.backward_with(r).unwrap();
    let mut all = vec![out.to_vec().unwrap()];
    all.extend(
        tensors
            .iter()
            .map(|t| grads.get(t).unwrap().to_vec().unwrap()),
    );
    all
}

fn labels(seed: u64, rows: usize, classes: usize) -> Labels {
    use rand::Rng;
    let mut r = rng(seed);
    let l: Vec<u32> = (0..rows)
        .map(|_| r.random_range(0..classes as u32))
        .collect();
    Labels::new(&l, &engine::Device::Cpu).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn gradcheck_matmul(m in 1usize..6, k in 1usize..7, n in 1usize..6, seed in 0u64..1000) {
        let mut r = rng(seed);
        let inputs = [(uniform(&mut r, m * k), vec![m, k]), (uniform(&mut r, k * n), vec![k, n])];
        gradcheck("matmul", &inputs, |t| t[0].matmul(&t[1]), EPS, TOL);
    }

    #[test]
    fn gradcheck_matmul_t(m in 1usize..6, k in 1usize..7, n in 1usize..6, seed in 0u64..1000) {
        let mut r = rng(seed);
        let inputs = [(uniform(&mut r, m * k), vec![m, k]), (uniform(&mut r, n * k), vec![n, k])];
        gradcheck("matmul_t", &inputs, |t| t[0].matmul_t(&t[1]), EPS, TOL);
    }

    #[test]
    fn gradcheck_conv2d(
        n in 1usize..3, c_in in 1usize..3, c_out in 1usize..4, h in 1usize..7, w in 1usize..7,
        k in 1usize..4, stride in 1usize..3, pad in 0usize..2, seed in 0u64..1000,
    ) {
        prop_assume!(k <= h + 2 * pad && k <= w + 2 * pad);
        let mut r = rng(seed);
        let inputs = [
            (uniform(&mut r, n * c_in * h * w), vec![n, c_in, h, w]),
            (uniform(&mut r, c_out * c_in * k * k), vec![c_out, c_in, k, k]),
        ];
        gradcheck("conv2d", &inputs, |t| t[0].conv2d(&t[1], stride, pad), EPS, TOL);
    }

    #[test]
    fn conv2d_relu_pool_is_the_unfused_block(
        n in 1usize..12, c_in in 1usize..4, c_out in 1usize..5, h in 2usize..12,
        w in 2usize..12, k in 1usize..4, stride in 1usize..3, pad in 0usize..2,
        seed in 0u64..1000,
    ) {
        let out_side = |side: usize| (side + 2 * pad).checked_sub(k).map(|v| v / stride + 1);
        prop_assume!(out_side(h).is_some_and(|v| v >= 2) && out_side(w).is_some_and(|v| v >= 2));
        let mut r = rng(seed);
        let inputs = [
            (uniform(&mut r, n * c_in * h * w), vec![n, c_in, h, w]),
            (uniform(&mut r, c_out * c_in * k * k), vec![c_out, c_in, k, k]),
            (uniform(&mut r, c_out), vec![c_out]),
        ];
        let fused = outputs_and_grads(&inputs, |t| t[0].conv2d_relu_pool(&t[1], &t[2], stride, pad));
        let unfused = outputs_and_grads(&inputs, |t| {
            t[0].conv2d(&t[1], stride, pad)?.bias_add(&t[2])?.relu()?.max_pool2d(2, 2)
        });
        // The output bit for bit; the gradients up to rounding (the fused backward sums
        // only the pool's winners, in another order).
        let bits = |v: &[f32]| -> Vec<u32> { v.iter().map(|f| f.to_bits()).collect() };
        prop_assert_eq!(bits(&fused[0]), bits(&unfused[0]));
        for (i, (a, b)) in fused.iter().zip(&unfused).enumerate().skip(1) {
            for (x, y) in a.iter().zip(b) {
                prop_assert!((x - y).abs() <= 1e-5 * (1.0 + y.abs()), "gradient {i}: {x} vs {y}");
            }
        }
    }

    #[test]
    fn gradcheck_bias(n in 1usize..4, c in 1usize..5, inner in 1usize..6, seed in 0u64..1000) {
        let mut r = rng(seed);
        let inputs = [(uniform(&mut r, n * c * inner), vec![n, c, inner]), (uniform(&mut r, c), vec![c])];
        gradcheck("bias", &inputs, |t| t[0].bias_add(&t[1]), EPS, TOL);
    }

    #[test]
    fn gradcheck_max_pool2d(
        n in 1usize..3, c in 1usize..3, h in 2usize..8, w in 2usize..8,
        kernel in 1usize..4, stride in 1usize..3, seed in 0u64..1000,
    ) {
        prop_assume!(kernel <= h && kernel <= w);
        let mut r = rng(seed);
        // Values 0.1 apart and eps = 1e-2: no perturbation changes a window's winner.
        let inputs = [(distinct(&mut r, n * c * h * w, 0.1), vec![n, c, h, w])];
        gradcheck("max_pool2d", &inputs, |t| t[0].max_pool2d(kernel, stride), EPS, TOL);
    }

    #[test]
    fn gradcheck_relu(len in 1usize..40, seed in 0u64..1000) {
        let mut r = rng(seed);
        let inputs = [(distinct(&mut r, len, 0.05), vec![len])];
        gradcheck("relu", &inputs, |t| t[0].relu(), EPS, TOL);
    }

    #[test]
    fn gradcheck_leaky_relu(len in 1usize..40, slope in -0.5f32..0.5, seed in 0u64..1000) {
        let mut r = rng(seed);
        let inputs = [(distinct(&mut r, len, 0.05), vec![len])];
        gradcheck("leaky_relu", &inputs, |t| t[0].leaky_relu(slope), EPS, TOL);
    }

    #[test]
    fn gradcheck_dropout(len in 1usize..40, seed in 0u32..1000) {
        let mut r = rng(seed as u64);
        let inputs = [(uniform(&mut r, len), vec![len])];
        gradcheck("dropout", &inputs, |t| t[0].dropout(0.5, seed), EPS, TOL);
    }

    #[test]
    fn gradcheck_add_scale_reshape_sum(rows in 1usize..5, cols in 1usize..5, seed in 0u64..1000) {
        let mut r = rng(seed);
        let inputs = [(uniform(&mut r, rows * cols), vec![rows, cols]), (uniform(&mut r, rows * cols), vec![rows, cols])];
        gradcheck("add_scale_reshape_sum", &inputs, |t| {
            t[0].add(&t[1])?.scale(-1.5)?.reshape(&[cols, rows])?.sum_axis(0)?.mean()
        }, EPS, TOL);
    }

    #[test]
    fn gradcheck_log_softmax(rows in 1usize..5, cols in 1usize..8, seed in 0u64..1000) {
        let mut r = rng(seed);
        let inputs = [(uniform(&mut r, rows * cols), vec![rows, cols])];
        gradcheck("log_softmax", &inputs, |t| t[0].log_softmax(), EPS, TOL);
    }

    #[test]
    fn gradcheck_cross_entropy(rows in 1usize..6, cols in 1usize..8, seed in 0u64..1000) {
        let mut r = rng(seed);
        let inputs = [(uniform(&mut r, rows * cols), vec![rows, cols])];
        let y = labels(seed, rows, cols);
        gradcheck("cross_entropy", &inputs, |t| t[0].cross_entropy(&y), EPS, TOL);
    }

    #[test]
    fn gradcheck_softmax_kl(rows in 1usize..6, cols in 1usize..8, t in 0.5f32..8.0, seed in 0u64..1000) {
        let mut r = rng(seed);
        let inputs = [(uniform(&mut r, rows * cols), vec![rows, cols])];
        let teacher = Tensor::from_vec(uniform(&mut r, rows * cols).iter().map(|v| v * 4.0).collect(), &[rows, cols], &engine::Device::Cpu).unwrap();
        gradcheck("softmax_kl", &inputs, |x| x[0].softmax_kl(&teacher, t), EPS, TOL);
    }

    #[test]
    fn gradcheck_kd_loss(rows in 1usize..6, cols in 2usize..8, t in 0.5f32..8.0, alpha in 0.0f32..=1.0, seed in 0u64..1000) {
        let mut r = rng(seed);
        let inputs = [(uniform(&mut r, rows * cols), vec![rows, cols])];
        let teacher = Tensor::from_vec(uniform(&mut r, rows * cols).iter().map(|v| v * 4.0).collect(), &[rows, cols], &engine::Device::Cpu).unwrap();
        let y = labels(seed, rows, cols);
        gradcheck("kd_loss", &inputs, |x| Ok(x[0].kd_loss(&teacher, &y, t, alpha)?.loss), EPS, TOL);
    }

    #[test]
    fn gradcheck_dkd_loss(rows in 1usize..6, cols in 2usize..8, t in 0.5f32..8.0, alpha in 0.0f32..2.0, beta in 0.0f32..8.0, seed in 0u64..1000) {
        let mut r = rng(seed);
        let inputs = [(uniform(&mut r, rows * cols), vec![rows, cols])];
        let teacher = Tensor::from_vec(uniform(&mut r, rows * cols).iter().map(|v| v * 4.0).collect(), &[rows, cols], &engine::Device::Cpu).unwrap();
        let y = labels(seed, rows, cols);
        gradcheck("dkd_loss", &inputs, |x| Ok(x[0].dkd_loss(&teacher, &y, t, alpha, beta)?.loss), EPS, TOL);
    }
}

/// A small conv network end to end: conv, bias, relu, pool, flatten, linear, CE. Fixed
/// seeds rather than proptest: random inputs may sit near a ReLU kink or a pool tie, and
/// a fixed seed that passes once passes every time.
#[test]
fn gradcheck_conv2d_relu_pool() {
    // Fixed seeds with a small step, as the network below: random conv outputs sit far
    // enough from ReLU's kink and from ties for eps = 1e-3.
    for (seed, n, stride, pad) in [(0u64, 1usize, 1usize, 0usize), (1, 2, 1, 1), (2, 3, 2, 1)] {
        let mut r = rng(seed);
        let inputs = [
            (uniform(&mut r, n * 2 * 7 * 6), vec![n, 2, 7, 6]),
            (uniform(&mut r, 3 * 2 * 9), vec![3, 2, 3, 3]),
            (uniform(&mut r, 3), vec![3]),
        ];
        gradcheck(
            "conv2d_relu_pool",
            &inputs,
            |t| t[0].conv2d_relu_pool(&t[1], &t[2], stride, pad),
            1e-3,
            5e-2,
        );
    }
}

#[test]
fn gradcheck_conv_network() {
    for (seed, n) in [(0u64, 1usize), (1, 2), (2, 3)] {
        let mut r = rng(seed);
        let inputs = [
            (uniform(&mut r, n * 6 * 6), vec![n, 1, 6, 6]),
            (uniform(&mut r, 3 * 9), vec![3, 1, 3, 3]),
            (uniform(&mut r, 3), vec![3]),
            (uniform(&mut r, 4 * 12), vec![4, 12]),
        ];
        let y = labels(seed, n, 4);
        gradcheck(
            "conv_network",
            &inputs,
            |t| conv_network_loss(t, &y),
            1e-3,
            5e-2,
        );
    }
}
