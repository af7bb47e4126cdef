//! The studies `distill run` and `distill sweep` know, as data: one row per preset, no
//! code path of its own.

use crate::data::DatasetKind;
use crate::optim::{OptimizerConfig, OptimizerKind, Schedule, ScheduleKind};
use crate::progress::ProgressMode;
use crate::train::{json_f32, Loss, TrainOptions};
use std::path::PathBuf;

/// How one network of a study is trained.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Recipe {
    /// Epochs (`--epochs` overrides the students').
    pub epochs: usize,
    /// Training batch size.
    pub batch: usize,
    /// The optimizer.
    pub optimizer: OptimizerKind,
    /// Its base learning rate.
    pub lr: f32,
    /// How the rate changes over the run.
    pub schedule: Schedule,
    /// Random ±2-pixel shifts of the training images; a distilled student's teacher then
    /// runs on each shifted image (a consistent teacher).
    pub jitter: bool,
    /// The max-norm constraint on every weight after each step; `None`: none.
    pub max_norm: Option<f32>,
}

impl Recipe {
    /// Its settings as the reports and the sweep's fingerprints write them.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "epochs": self.epochs,
            "batch": self.batch,
            "optimizer": self.optimizer.name(),
            "lr": json_f32(self.lr),
            "schedule": self.schedule.kind.name(),
            "warmup_epochs": json_f32(self.schedule.warmup_epochs),
            "jitter": self.jitter,
        });
        // Only when set: recipes without it keep the sweep fingerprints they had.
        if let Some(max_norm) = self.max_norm {
            v["max_norm"] = json_f32(max_norm);
        }
        v
    }

    /// The training options of one run of this recipe: `seed`, checkpoint `out`.
    pub fn options(&self, seed: u64, out: PathBuf, progress: ProgressMode) -> TrainOptions {
        TrainOptions {
            epochs: self.epochs,
            batch_size: self.batch,
            optimizer: OptimizerConfig {
                max_norm: self.max_norm,
                ..OptimizerConfig::new(self.optimizer, self.lr)
            },
            schedule: self.schedule,
            seed,
            jitter: self.jitter,
            out,
            resume: false,
            progress,
        }
    }
}

/// Everything one study needs: the teacher, the student, how each is trained, and the
/// distillation loss's settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Preset {
    /// What `--preset` takes: `default`, `fashion`, `seed-example`, `hinton-mnist`.
    pub name: &'static str,
    /// One line for `--list-presets`.
    pub about: &'static str,
    /// A built-in network's name, or a description file (`--teacher` overrides it).
    pub teacher: &'static str,
    /// Likewise for the student (`--student`).
    pub student: &'static str,
    /// How the teacher is trained.
    pub teacher_recipe: Recipe,
    /// How both students (alone and distilled) are trained: the same recipe, so that
    /// only the loss differs.
    pub student_recipe: Recipe,
    /// The distillation temperature `T` (`--T` overrides it).
    pub temperature: f32,
    /// The weight of the KL term in `[0, 1]` (`--alpha` overrides it); with decoupled KD
    /// the weight of its target-class term.
    pub alpha: f32,
    /// The distillation loss (`--loss`, `--beta` override it).
    pub loss: Loss,
    /// The data set the recipe was chosen for, when it is one data set's (`run` and
    /// `sweep` refuse another); `None`: any.
    pub dataset: Option<DatasetKind>,
}

const COSINE: Schedule = Schedule {
    kind: ScheduleKind::Cosine,
    warmup_epochs: 0.0,
};

/// Every preset, in the order `--list-presets` prints them.
pub const PRESETS: &[Preset] = &[
    // NOTE: T, alpha and the students' schedule were chosen on the validation split by
    // the sweeps recorded in the README ("How the default recipe was chosen"); the
    // epochs and the teacher's recipe by the time a whole run may take (8 minutes).
    Preset {
        name: "default",
        about: "teacher-cnn (6 epochs, jitter) and student-cnn (8 epochs), Adam 1e-3 with a \
                cosine schedule, T = 4, alpha = 0.5",
        teacher: "teacher-cnn",
        student: "student-cnn",
        teacher_recipe: DEFAULT_TEACHER,
        student_recipe: DEFAULT_STUDENT,
        temperature: 4.0,
        alpha: 0.5,
        loss: Loss::Kd,
        dataset: None,
    },
    // NOTE: chosen on Fashion-MNIST's validation split (the README's "Fashion-MNIST"):
    // the teacher (teacher-cnn-large, no jitter, 12 epochs) against teacher-cnn, and
    // T = 1, alpha = 0.5 as the best cell of a T × alpha sweep, in which no cell beat the
    // student alone by more than its noise. The students' recipe is the default's.
    Preset {
        name: "fashion",
        about: "for --dataset fashion-mnist: teacher-cnn-large (12 epochs, no jitter) and \
                student-cnn (8 epochs), Adam 1e-3 with a cosine schedule, T = 1, alpha = 0.5",
        teacher: "teacher-cnn-large",
        student: "student-cnn",
        teacher_recipe: Recipe {
            epochs: 12,
            jitter: false,
            ..DEFAULT_TEACHER
        },
        student_recipe: DEFAULT_STUDENT,
        temperature: 1.0,
        alpha: 0.5,
        loss: Loss::Kd,
        dataset: Some(DatasetKind::FashionMnist),
    },
    Preset {
        name: "seed-example",
        about: "the seed documents' recipe verbatim: teacher-cnn and student-cnn, 3 epochs, \
                Adam 1e-3 at a constant rate, T = 5, alpha = 0.1",
        teacher: "teacher-cnn",
        student: "student-cnn",
        teacher_recipe: SEED_EXAMPLE,
        student_recipe: SEED_EXAMPLE,
        temperature: 5.0,
        alpha: 0.1,
        loss: Loss::Kd,
        dataset: None,
    },
    Preset {
        name: "hinton-mnist",
        about: "Hinton et al. 2015, section 3: a 1200-1200 MLP teacher with dropout, \
                max-norm weights and jitter; an 800-800 MLP student alone and distilled at \
                T = 20 without them; 30 epochs each, cosine schedule",
        teacher: "teacher-mlp",
        student: "student-mlp",
        // NOTE: the teacher's regularisation is Hinton et al. 2012's for MNIST (the
        // paper's reference [9]): dropout 0.2 on the input and 0.5 on the hidden units
        // (in the network), jitter, and each hidden unit's incoming weights held to a
        // squared length of at most 15. The student alone has none of it, as in the paper.
        teacher_recipe: Recipe {
            jitter: true,
            max_norm: Some(HINTON_MAX_NORM),
            ..HINTON
        },
        student_recipe: HINTON,
        temperature: 20.0,
        // NOTE: the paper weights the hard-label term "considerably lower" than the soft one.
        alpha: 0.9,
        loss: Loss::Kd,
        dataset: None,
    },
];

const DEFAULT_TEACHER: Recipe = Recipe {
    epochs: 6,
    batch: 64,
    optimizer: OptimizerKind::Adam,
    lr: 1e-3,
    schedule: COSINE,
    jitter: true,
    max_norm: None,
};

const DEFAULT_STUDENT: Recipe = Recipe {
    epochs: 8,
    jitter: false,
    ..DEFAULT_TEACHER
};

const SEED_EXAMPLE: Recipe = Recipe {
    epochs: 3,
    batch: 64,
    optimizer: OptimizerKind::Adam,
    lr: 1e-3,
    schedule: Schedule::CONSTANT,
    jitter: false,
    max_norm: None,
};

const HINTON: Recipe = Recipe {
    epochs: 30,
    batch: 128,
    optimizer: OptimizerKind::Adam,
    lr: 1e-3,
    schedule: COSINE,
    jitter: false,
    max_norm: None,
};

/// `sqrt(15)`: Hinton et al. 2012's bound on the squared length of a unit's incoming
/// weights.
const HINTON_MAX_NORM: f32 = 3.872_983_3;

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
