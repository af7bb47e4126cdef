//! Weight initialization.

use rand::Rng;

/// `len` values drawn from `U(-1/√fan_in, 1/√fan_in)`: PyTorch's default for the
/// weights and the biases of `nn.Linear` and `nn.Conv2d`.
///
/// PyTorch draws the weights with `kaiming_uniform_(a = √5)`, whose bound is
/// `gain · √(3 / fan_in)` with `gain = √(2 / (1 + a²)) = √(1/3)`, i.e. `1/√fan_in`;
/// the bias uses the same bound. We keep that default (rather than He init for the
/// layers followed by ReLU) because the reference accuracy recipes were tuned on it.
pub fn pytorch_uniform(len: usize, fan_in: usize, rng: &mut impl Rng) -> Vec<f32> {
    let bound = 1.0 / (fan_in as f32).sqrt();
    // NOTE: half-open [-bound, bound), as `torch.Tensor.uniform_`.
    (0..len).map(|_| rng.random_range(-bound..bound)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn pytorch_uniform_stays_in_bound_and_fills_it() {
        let mut rng = StdRng::seed_from_u64(7);
        // fan_in 16: bound 1/4. The variance of U(-b, b) is b²/3 = 1/48.
        let v = pytorch_uniform(100_000, 16, &mut rng);
        assert!(v.iter().all(|x| (-0.25..0.25).contains(x)));
        let mean = v.iter().sum::<f32>() / v.len() as f32;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / v.len() as f32;
        assert!(mean.abs() < 0.005, "mean {mean}");
        assert!((var - 1.0 / 48.0).abs() < 0.001, "variance {var}");
        assert!(v.iter().any(|&x| x < -0.24) && v.iter().any(|&x| x > 0.24));
    }
}
