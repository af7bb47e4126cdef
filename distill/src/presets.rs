//! The studies `distill run` knows, as data: one row per preset, no code path of its own.

use crate::optim::OptimizerKind;

/// Everything one `distill run` needs: the teacher, the student, and the recipe that
/// all three runs (teacher, student alone, distilled student) share.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Preset {
    /// What `--preset` takes: `default`, `hinton-mnist`.
    pub name: &'static str,
    /// One line for `--list-presets`.
    pub about: &'static str,
    /// A built-in network's name, or a description file (`--teacher` overrides it).
    pub teacher: &'static str,
    /// Likewise for the student (`--student`).
    pub student: &'static str,
    /// Jitter the teacher's training images.
    pub teacher_jitter: bool,
    /// Jitter the training images of the two student runs (the transfer set).
    pub student_jitter: bool,
    /// The distillation temperature `T` (`--T` overrides it).
    pub temperature: f32,
    /// The weight of the KL term in `[0, 1]` (`--alpha` overrides it).
    pub alpha: f32,
    /// Epochs of each of the three runs (`--epochs` overrides it).
    pub epochs: usize,
    /// Training batch size.
    pub batch: usize,
    /// The optimizer of all three runs.
    pub optimizer: OptimizerKind,
    /// Its learning rate.
    pub lr: f32,
}

/// Every preset, in the order `--list-presets` prints them.
pub const PRESETS: &[Preset] = &[
    Preset {
        name: "default",
        about: "teacher-cnn and student-cnn, 3 epochs, Adam 1e-3, T = 5, alpha = 0.1",
        teacher: "teacher-cnn",
        student: "student-cnn",
        teacher_jitter: false,
        student_jitter: false,
        temperature: 5.0,
        alpha: 0.1,
        epochs: 3,
        batch: 64,
        optimizer: OptimizerKind::Adam,
        lr: 1e-3,
    },
    Preset {
        name: "hinton-mnist",
        about: "Hinton et al. 2015, section 3: a dropout, jittered 1200-1200 MLP teacher; \
                an 800-800 MLP student alone and distilled at T = 20 without jitter",
        teacher: "teacher-mlp",
        student: "student-mlp",
        teacher_jitter: true,
        student_jitter: false,
        temperature: 20.0,
        // NOTE: the paper weights the hard-label term "considerably lower" than the soft one.
        alpha: 0.9,
        epochs: 20,
        batch: 128,
        optimizer: OptimizerKind::Adam,
        lr: 1e-3,
    },
];

/// The preset named `name`, or an error listing the known ones.
pub fn find(name: &str) -> Result<&'static Preset, String> {
    PRESETS.iter().find(|p| p.name == name).ok_or_else(|| {
        let names: Vec<&str> = PRESETS.iter().map(|p| p.name).collect();
        format!(
            "unknown preset `{name}` (expected one of: {})",
            names.join(", ")
        )
    })
}
