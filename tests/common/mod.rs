//! Helpers shared by the cross-crate tests: seeded inputs and the finite-difference
//! gradient check.
#![allow(dead_code)]

use engine::{Device, Labels, Result, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The absolute floor of [`gradcheck`]'s bound: above the rounding of an f32 central
/// difference at `eps = 1e-2` (about 1e-5 here), far below the gradients checked.
pub const ATOL: f32 = 1e-3;

pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// `len` values uniform in `[-1, 1)`.
pub fn uniform(rng: &mut StdRng, len: usize) -> Vec<f32> {
    (0..len).map(|_| rng.random_range(-1.0..1.0)).collect()
}

/// `len` distinct values, at least `gap` apart, in random order, centred on zero: no
/// ties for max-pool and no value within `gap / 2` of ReLU's kink at zero.
pub fn distinct(rng: &mut StdRng, len: usize, gap: f32) -> Vec<f32> {
    let mut values: Vec<f32> = (0..len)
        .map(|i| (i as f32 - (len / 2) as f32 + 0.5) * gap)
        .collect();
    for i in (1..len).rev() {
        let j = rng.random_range(0..=i);
        values.swap(i, j);
    }
    values
}

/// Checks the gradients that `backward` gives for `f` against centred finite differences
/// of the scalar `<f(inputs), r>`, with `r` a fixed random projection of the output.
/// Every element of every input is checked (keep the shapes small), each to
/// `|analytic - numeric| <= tol · max(|analytic|, |numeric|) + ATOL`: relative, with a
/// floor small enough that a small gradient off by a factor still fails.
pub fn gradcheck(
    name: &str,
    inputs: &[(Vec<f32>, Vec<usize>)],
    f: impl Fn(&[Tensor]) -> Result<Tensor>,
    eps: f32,
    tol: f32,
) {
    gradcheck_on(&Device::Cpu, name, inputs, f, eps, tol)
}

/// [`gradcheck`] with every tensor on `device`.
pub fn gradcheck_on(
    device: &Device,
    name: &str,
    inputs: &[(Vec<f32>, Vec<usize>)],
    f: impl Fn(&[Tensor]) -> Result<Tensor>,
    eps: f32,
    tol: f32,
) {
    let cpu = device.clone();
    let params = |values: &[(Vec<f32>, Vec<usize>)]| -> Vec<Tensor> {
        values
            .iter()
            .map(|(v, s)| Tensor::parameter(v.clone(), s, &cpu).unwrap())
            .collect()
    };
    let tensors = params(inputs);
    let out = f(&tensors).unwrap();
    let r = uniform(&mut rng(99), out.numel());
    let seed = Tensor::from_vec(r.clone(), out.shape(), &cpu).unwrap();
    let grads = out.backward_with(seed).unwrap();
    let project = |values: &[(Vec<f32>, Vec<usize>)]| -> f64 {
        let out = f(&params(values)).unwrap().to_vec().unwrap();
        out.iter().zip(&r).map(|(o, r)| *o as f64 * *r as f64).sum()
    };
    for (i, tensor) in tensors.iter().enumerate() {
        let analytic = grads
            .get(tensor)
            .unwrap_or_else(|| panic!("{name}: no gradient for input {i}"));
        let analytic = analytic.to_vec().unwrap();
        for (j, &a) in analytic.iter().enumerate() {
            let mut plus = inputs.to_vec();
            plus[i].0[j] += eps;
            let mut minus = inputs.to_vec();
            minus[i].0[j] -= eps;
            let numeric = ((project(&plus) - project(&minus)) / (2.0 * eps as f64)) as f32;
            let bound = tol * a.abs().max(numeric.abs()) + ATOL;
            assert!(
                (a - numeric).abs() <= bound,
                "{name}: input {i} element {j}: analytic {a}, numeric {numeric} (shape {:?})",
                inputs[i].1
            );
        }
    }
}

/// The GPU device for GPU tests (any adapter, the software driver included), or `None`
/// after a loud skip message. With `KD_REQUIRE_GPU=1` (set in CI) a missing adapter
/// fails the test instead.
pub fn gpu() -> Option<Device> {
    static DEVICE: std::sync::OnceLock<Option<Device>> = std::sync::OnceLock::new();
    DEVICE
        .get_or_init(|| match Device::select("gpu") {
            Ok((device, _)) => Some(device),
            Err(e) => {
                if std::env::var("KD_REQUIRE_GPU").as_deref() == Ok("1") {
                    panic!("KD_REQUIRE_GPU=1 but no GPU adapter: {e}");
                }
                eprintln!("*** SKIPPED: no GPU adapter ({e}); install mesa-vulkan-drivers and libvulkan1, or set KD_REQUIRE_GPU=1 to fail instead ***");
                None
            }
        })
        .clone()
}

/// The small network both conv gradient checks take (CPU and GPU): conv (stride 1, no
/// padding), bias, ReLU, 2 × 2 max-pool, a linear layer without bias and the
/// cross-entropy against `y`; `t` is `[x, conv weight, conv bias, linear weight]`.
pub fn conv_network_loss(t: &[Tensor], y: &Labels) -> Result<Tensor> {
    let h = t[0]
        .conv2d(&t[1], 1, 0)?
        .bias_add(&t[2])?
        .relu()?
        .max_pool2d(2, 2)?;
    h.flatten()?.matmul_t(&t[3])?.cross_entropy(y)
}
