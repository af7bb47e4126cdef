//! Optimizers: the per-parameter state and the step count. The update rules themselves
//! are kernels (`kernels::cpu::optim`, `wgsl/sgd_step.wgsl`, `wgsl/adam_step.wgsl`),
//! reached through `Tensor::sgd_step` and `Tensor::adam_step` on the parameter's device.

use engine::{Adam, Error, Gradients, Result, Sgd, Tensor};
use std::fmt;
use std::str::FromStr;

/// Which update rule an [`Optimizer`] applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptimizerKind {
    /// SGD with momentum, as PyTorch's `SGD`.
    Sgd,
    /// Adam, with weight decay added to the gradient (L2), as PyTorch's `Adam`.
    Adam,
    /// Adam with decoupled weight decay, as PyTorch's `AdamW`.
    AdamW,
}

impl OptimizerKind {
    /// Every kind, in the order `from_str` tries their names.
    pub const ALL: [OptimizerKind; 3] = [
        OptimizerKind::Sgd,
        OptimizerKind::Adam,
        OptimizerKind::AdamW,
    ];

    /// The name `--optimizer` takes and checkpoints record: `sgd`, `adam`, `adamw`.
    pub fn name(self) -> &'static str {
        match self {
            OptimizerKind::Sgd => "sgd",
            OptimizerKind::Adam => "adam",
            OptimizerKind::AdamW => "adamw",
        }
    }
}

impl fmt::Display for OptimizerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for OptimizerKind {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        OptimizerKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| format!("unknown optimizer `{s}` (expected one of: sgd, adam, adamw)"))
    }
}

/// Hyper-parameters: PyTorch's defaults for the ones not given, but SGD's momentum 0.9.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OptimizerConfig {
    /// The update rule.
    pub kind: OptimizerKind,
    /// Learning rate, > 0.
    pub lr: f32,
    /// SGD's momentum factor; unused by Adam.
    pub momentum: f32,
    /// Weight decay: L2 on the gradient for SGD and Adam, decoupled for AdamW.
    pub weight_decay: f32,
    /// Adam's decay rate of the first moment; unused by SGD.
    pub beta1: f32,
    /// Adam's decay rate of the second moment; unused by SGD.
    pub beta2: f32,
    /// Adam's term added to the denominator; unused by SGD.
    pub eps: f32,
    /// The max-norm constraint applied after each update to every weight of 2 or more
    /// dimensions (each unit's incoming weights at most this L2 norm); `None`: none.
    pub max_norm: Option<f32>,
}

impl OptimizerConfig {
    /// `kind` at `lr`, with momentum 0.9, no weight decay, β = (0.9, 0.999) and ε = 1e-8.
    pub fn new(kind: OptimizerKind, lr: f32) -> Self {
        OptimizerConfig {
            kind,
            lr,
            momentum: 0.9,
            weight_decay: 0.0,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            max_norm: None,
        }
    }
}

/// The state of one parameter: SGD's velocity, or Adam's two moments.
struct Slot {
    name: String,
    first: Tensor,
    second: Option<Tensor>,
}

/// An optimizer over a fixed list of named parameters: its state and its step count.
pub struct Optimizer {
    config: OptimizerConfig,
    step: u64,
    slots: Vec<Slot>,
}

impl Optimizer {
    /// Zeroed state for each `(name, parameter)`, on the parameter's device.
    pub fn new(config: OptimizerConfig, params: &[(String, Tensor)]) -> Result<Optimizer> {
        let slots = params
            .iter()
            .map(|(name, p)| {
                let zeros = || Tensor::zeros(p.shape(), p.device());
                let second = match config.kind {
                    OptimizerKind::Sgd => None,
                    OptimizerKind::Adam | OptimizerKind::AdamW => Some(zeros()?),
                };
                Ok(Slot {
                    name: name.clone(),
                    first: zeros()?,
                    second,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Optimizer {
            config,
            step: 0,
            slots,
        })
    }

    /// The hyperparameters it was made with.
    pub fn config(&self) -> &OptimizerConfig {
        &self.config
    }

    /// Sets the learning rate of the following steps (a schedule's value for the step).
    pub fn set_lr(&mut self, lr: f32) {
        self.config.lr = lr;
    }

    /// Steps taken so far (Adam's bias correction counts from here).
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// Updates each parameter in place from its gradient; parameters that the loss did
    /// not reach are left as they are. `params` are the ones the optimizer was made
    /// for, by name and in order.
    pub fn step(&mut self, params: &[(String, Tensor)], grads: &Gradients) -> Result<()> {
        let names = params.iter().map(|(name, _)| name);
        if params.len() != self.slots.len() || !names.eq(self.slots.iter().map(|s| &s.name)) {
            return Err(Error::BadArgument {
                op: "optimizer step",
                message: "the parameters are not the ones the optimizer was made for".into(),
            });
        }
        self.step += 1;
        let c = self.config;
        for ((_, param), slot) in params.iter().zip(&self.slots) {
            let Some(grad) = grads.get(param) else {
                continue;
            };
            match &slot.second {
                None => {
                    let h = Sgd {
                        lr: c.lr,
                        momentum: c.momentum,
                        weight_decay: c.weight_decay,
                    };
                    param.sgd_step(grad, &slot.first, &h)?;
                }
                Some(v) => {
                    let h = Adam {
                        lr: c.lr,
                        beta1: c.beta1,
                        beta2: c.beta2,
                        eps: c.eps,
                        weight_decay: c.weight_decay,
                        decoupled: c.kind == OptimizerKind::AdamW,
                    };
                    param.adam_step(grad, &slot.first, v, &h, self.step)?;
                }
            }
            if let Some(max_norm) = c.max_norm.filter(|_| param.shape().len() >= 2) {
                param.max_norm_rows(max_norm)?;
            }
        }
        Ok(())
    }

    /// The state as named tensors for a checkpoint: `optim.<param>.m` / `.v` for Adam,
    /// `optim.<param>.velocity` for SGD.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for slot in &self.slots {
            match &slot.second {
                None => out.push((format!("optim.{}.velocity", slot.name), slot.first.clone())),
                Some(v) => {
                    out.push((format!("optim.{}.m", slot.name), slot.first.clone()));
                    out.push((format!("optim.{}.v", slot.name), v.clone()));
                }
            }
        }
        out
    }

    /// Restores the state written by [`Optimizer::state`] and the step count; says which
    /// tensor is missing or has the wrong size.
    pub fn load_state(
        &mut self,
        step: u64,
        tensors: &[(String, Vec<usize>, Vec<f32>)],
    ) -> std::result::Result<(), String> {
        for (name, tensor) in self.state() {
            let Some((_, shape, values)) = tensors.iter().find(|(n, _, _)| *n == name) else {
                return Err(format!("optimizer state `{name}` is missing"));
            };
            if shape != tensor.shape() {
                return Err(format!(
                    "optimizer state `{name}` has shape {shape:?}, expected {:?}",
                    tensor.shape()
                ));
            }
            tensor.assign(values.clone()).map_err(|e| e.to_string())?;
        }
        self.step = step;
        Ok(())
    }
}

/// How the learning rate changes over a run: its shape after an optional linear warm-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScheduleKind {
    /// The base rate throughout.
    Constant,
    /// Half a cosine from the base rate down to 0 at the last step (PyTorch's
    /// `CosineAnnealingLR` with `eta_min = 0`, stepped per batch).
    Cosine,
    /// The base rate, times 0.1 from half-way and 0.01 from three quarters of the steps
    /// (`MultiStepLR` with milestones at 50 % and 75 %, gamma 0.1).
    Step,
}

impl ScheduleKind {
    /// Every kind, in the order `from_str` tries their names.
    pub const ALL: [ScheduleKind; 3] = [
        ScheduleKind::Constant,
        ScheduleKind::Cosine,
        ScheduleKind::Step,
    ];

    /// The name `--schedule` takes and checkpoints record.
    pub fn name(self) -> &'static str {
        match self {
            ScheduleKind::Constant => "constant",
            ScheduleKind::Cosine => "cosine",
            ScheduleKind::Step => "step",
        }
    }
}

impl fmt::Display for ScheduleKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ScheduleKind {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        ScheduleKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                format!("unknown schedule `{s}` (expected one of: constant, cosine, step)")
            })
    }
}

/// A learning-rate schedule over a run's optimizer steps.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Schedule {
    /// The shape after the warm-up.
    pub kind: ScheduleKind,
    /// Epochs of linear warm-up from `base / warm-up steps` to `base`, ≥ 0 (may be a
    /// fraction); the shape then runs over the remaining steps.
    pub warmup_epochs: f32,
}

impl Schedule {
    /// A constant rate, no warm-up.
    pub const CONSTANT: Schedule = Schedule {
        kind: ScheduleKind::Constant,
        warmup_epochs: 0.0,
    };

    /// `kind` without warm-up.
    pub fn new(kind: ScheduleKind) -> Schedule {
        Schedule {
            kind,
            warmup_epochs: 0.0,
        }
    }

    /// The rate of step `step` (counted from 0) of `total` steps, `steps_per_epoch` to an
    /// epoch, for base rate `base`.
    ///
    /// ```
    /// use distill::optim::{Schedule, ScheduleKind};
    /// let cosine = Schedule::new(ScheduleKind::Cosine);
    /// assert_eq!(cosine.lr(1.0, 0, 100, 10), 1.0);
    /// assert!((cosine.lr(1.0, 50, 100, 10) - 0.5).abs() < 1e-6);
    /// let step = Schedule::new(ScheduleKind::Step);
    /// assert_eq!([step.lr(1.0, 49, 100, 10), step.lr(1.0, 50, 100, 10)], [1.0, 0.1]);
    /// let warm = Schedule { warmup_epochs: 0.5, ..cosine };
    /// assert_eq!([warm.lr(1.0, 0, 100, 10), warm.lr(1.0, 4, 100, 10)], [0.2, 1.0]);
    /// ```
    pub fn lr(&self, base: f32, step: usize, total: usize, steps_per_epoch: usize) -> f32 {
        let warmup = (self.warmup_epochs as f64 * steps_per_epoch as f64).round() as usize;
        let warmup = warmup.min(total);
        if step < warmup {
            return base * (step + 1) as f32 / warmup as f32;
        }
        // Progress through the steps after the warm-up, in [0, 1).
        let span = (total - warmup).max(1) as f64;
        let t = ((step - warmup) as f64 / span).min(1.0);
        let factor = match self.kind {
            ScheduleKind::Constant => 1.0,
            ScheduleKind::Cosine => 0.5 * (1.0 + (std::f64::consts::PI * t).cos()),
            ScheduleKind::Step if t >= 0.75 => 0.01,
            ScheduleKind::Step if t >= 0.5 => 0.1,
            ScheduleKind::Step => 1.0,
        };
        (base as f64 * factor) as f32
    }

    /// Checks the warm-up before anything is loaded.
    pub fn check(&self) -> std::result::Result<(), String> {
        let w = self.warmup_epochs;
        if !(w >= 0.0 && w.is_finite()) {
            return Err(format!("--warmup must be a number of epochs ≥ 0, got {w}"));
        }
        Ok(())
    }
}
