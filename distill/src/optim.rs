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
