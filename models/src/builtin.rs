//! The built-in networks: entries in a table of descriptions, nothing more.

use crate::spec::NetworkSpec;

/// The built-in networks' names, in the order `distill models` lists them.
pub const NAMES: [&str; 5] = [
    "teacher-cnn",
    "teacher-cnn-large",
    "student-cnn",
    "teacher-mlp",
    "student-mlp",
];

/// The description of the built-in network `name`, or `None` for another name.
///
/// ```
/// let spec = models::builtin::builtin("student-cnn").unwrap();
/// assert_eq!(spec.parameter_count(), 173_930);
/// assert!(models::builtin::builtin("resnet-50").is_none());
/// ```
pub fn builtin(name: &str) -> Option<NetworkSpec> {
    let spec = NetworkSpec::new(name);
    match name {
        // 28 -conv3-> 26 -pool-> 13 -conv3-> 11 -pool-> 5: 64 · 5 · 5 = 1600
        "teacher-cnn" => Some(
            spec.conv2d("conv1", 1, 32, 3)
                .relu()
                .max_pool2d(2)
                .conv2d("conv2", 32, 64, 3)
                .relu()
                .max_pool2d(2)
                .flatten()
                .linear("fc1", 1600, 128)
                .relu()
                .linear("fc2", 128, 10),
        ),
        // Fashion-MNIST's teacher: padded convolutions keep 28 -pool-> 14 -pool-> 7, so
        // 64 · 7 · 7 = 3136 features, then a wider hidden layer; dropout as in the MLP.
        "teacher-cnn-large" => Some(
            spec.conv2d_padded("conv1", 1, 32, 3, 1)
                .relu()
                .max_pool2d(2)
                .conv2d_padded("conv2", 32, 64, 3, 1)
                .relu()
                .max_pool2d(2)
                .flatten()
                .dropout(0.25)
                .linear("fc1", 3136, 256)
                .relu()
                .dropout(0.5)
                .linear("fc2", 256, 10),
        ),
        // 28 -conv3-> 26 -pool-> 13: 16 · 13 · 13 = 2704
        "student-cnn" => Some(
            spec.conv2d("conv1", 1, 16, 3)
                .relu()
                .max_pool2d(2)
                .flatten()
                .linear("fc1", 2704, 64)
                .relu()
                .linear("fc2", 64, 10),
        ),
        // Hinton et al. 2015 / Srivastava et al. 2014: 20% dropout on the input pixels,
        // 50% on each hidden layer.
        "teacher-mlp" => Some(
            spec.flatten()
                .dropout(0.2)
                .linear("fc1", 784, 1200)
                .relu()
                .dropout(0.5)
                .linear("fc2", 1200, 1200)
                .relu()
                .dropout(0.5)
                .linear("fc3", 1200, 10),
        ),
        "student-mlp" => Some(
            spec.flatten()
                .linear("fc1", 784, 800)
                .relu()
                .linear("fc2", 800, 800)
                .relu()
                .linear("fc3", 800, 10),
        ),
        _ => None,
    }
}

/// Every built-in network, in [`NAMES`] order.
pub fn all() -> Vec<NetworkSpec> {
    NAMES.iter().filter_map(|name| builtin(name)).collect()
}
