//! Row-wise losses over logits `(rows, classes)`: log-softmax, cross-entropy, the
//! softmax-KL distillation term and the fused distillation losses (Hinton's and the
//! decoupled one).
//!
//! Each loss runs one fused kernel that writes the per-row losses and the per-row
//! gradients together, then `row_loss_mean` (one dispatch) takes the mean over rows
//! (and, for the distillation losses, weighs their two or three terms). The op saves the per-row
//! gradients, so the backward is one kernel too: a scale by `upstream / rows`.

use crate::autograd::Op;
use crate::backend::run;
use crate::error::{Error, Result};
use crate::storage::Storage;
use crate::tensor::{Labels, Tensor};
use kernels::params::{ElementwiseParams, RowParams};
use kernels::registry as k;

/// The output of [`Tensor::kd_loss`] and [`Tensor::dkd_loss`].
pub struct KdLoss {
    /// The loss averaged over the batch (`(1 - α)·CE + α·T²·KL`, or decoupled KD's
    /// `CE + α·T²·TCKD + β·T²·NCKD`); backpropagate this.
    pub loss: Tensor,
    /// The means of its terms, for reporting (no gradient): `[CE, T²·KL]`, or `[CE,
    /// T²·TCKD, T²·NCKD]`.
    pub parts: Tensor,
}

impl Tensor {
    fn rows_cols(&self, op: &'static str) -> Result<(usize, usize)> {
        match self.shape() {
            &[rows, cols] if rows > 0 && cols > 0 => Ok((rows, cols)),
            shape => Err(Error::BadShape {
                op,
                shape: shape.to_vec(),
                expected: "(rows, classes), both >= 1",
            }),
        }
    }

    fn check_labels(
        &self,
        op: &'static str,
        labels: &Labels,
        rows: usize,
        cols: usize,
    ) -> Result<()> {
        if labels.len() != rows {
            return Err(Error::ShapeMismatch {
                op,
                lhs: self.shape().to_vec(),
                rhs: vec![labels.len()],
            });
        }
        if !labels.device().same(self.device()) {
            return Err(Error::DeviceMismatch {
                op,
                lhs: self.device().to_string(),
                rhs: labels.device().to_string(),
            });
        }
        if labels.max() as usize >= cols {
            return Err(Error::LabelOutOfRange {
                op,
                label: labels.max(),
                classes: cols,
            });
        }
        Ok(())
    }

    /// `log softmax` of each row of logits `(rows, classes)`, both at least 1.
    pub fn log_softmax(&self) -> Result<Tensor> {
        let (rows, cols) = self.rows_cols("log_softmax")?;
        let p = RowParams::new(rows, cols)?;
        let [out] = run(k::LogSoftmaxForward, &p, &[&self.storage()])?;
        let record = Op::LogSoftmax {
            x: self.clone(),
            out: out.duplicate()?,
            params: p,
        };
        Ok(Tensor::from_op(
            out,
            vec![rows, cols],
            self.device(),
            record,
        ))
    }

    /// Mean cross-entropy of `self` as logits against integer labels.
    pub fn cross_entropy(&self, labels: &Labels) -> Result<Tensor> {
        let (rows, cols) = self.rows_cols("cross_entropy")?;
        self.check_labels("cross_entropy", labels, rows, cols)?;
        let p = RowParams::new(rows, cols)?;
        let reads = [&*self.storage(), labels.storage()];
        let [loss, grad] = run(k::CrossEntropyForward, &p, &reads)?;
        Ok(self.row_loss(&loss, grad, RowParams::new(rows, 1)?)?.0)
    }

    /// Mean over rows of `T²·KL(softmax(teacher/T) ‖ softmax(self/T))`. The teacher's
    /// logits are a constant: no gradient flows into them.
    pub fn softmax_kl(&self, teacher: &Tensor, temperature: f32) -> Result<Tensor> {
        let (rows, cols) = self.check_kd_inputs("softmax_kl", teacher, temperature)?;
        let p = RowParams::new(rows, cols)?.with_temperature(temperature);
        let [loss, grad] = run(
            k::SoftmaxKlForward,
            &p,
            &[&self.storage(), &teacher.storage()],
        )?;
        Ok(self.row_loss(&loss, grad, RowParams::new(rows, 1)?)?.0)
    }

    /// Hinton's distillation loss, `(1 - α)·CE(y, s) + α·T²·KL(softmax(t/T) ‖ softmax(s/T))`
    /// averaged over the batch, with `self` the student's logits `s` and `teacher` the
    /// (constant) teacher logits `t`. One fused kernel pass per row.
    pub fn kd_loss(
        &self,
        teacher: &Tensor,
        labels: &Labels,
        temperature: f32,
        alpha: f32,
    ) -> Result<KdLoss> {
        let (rows, cols) = self.check_kd_inputs("kd_loss", teacher, temperature)?;
        self.check_labels("kd_loss", labels, rows, cols)?;
        if !(0.0..=1.0).contains(&alpha) {
            return Err(Error::BadArgument {
                op: "kd_loss",
                message: format!("alpha must be in [0, 1], got {alpha}"),
            });
        }
        let p = RowParams::new(rows, cols)?
            .with_temperature(temperature)
            .with_alpha(alpha);
        let reads = [&*self.storage(), &*teacher.storage(), labels.storage()];
        let [pairs, grad] = run(k::KdLossForward, &p, &reads)?;
        // (rows, 2) [CE, T²·KL] pairs -> the weighted mean and the two means.
        let (loss, parts) =
            self.row_loss(&pairs, grad, RowParams::new(rows, 2)?.with_alpha(alpha))?;
        Ok(KdLoss {
            loss,
            parts: Tensor::from_storage(parts, vec![2], self.device()),
        })
    }

    /// Decoupled KD (Zhao et al. 2022), `CE(y, s) + α·T²·TCKD + β·T²·NCKD` averaged over
    /// the batch: the softmax-KL split by the label into its target-class term (TCKD,
    /// the KL of the binary split `(p_y, 1 - p_y)`) and its non-target one (NCKD, the KL
    /// between the softmaxes over the other classes), each weighed on its own. `self` is
    /// the student's logits, `teacher` the constant teacher logits, at least two classes;
    /// `α, β >= 0`. One fused kernel pass per row. `parts` is `[mean CE, mean T²·TCKD,
    /// mean T²·NCKD]`.
    pub fn dkd_loss(
        &self,
        teacher: &Tensor,
        labels: &Labels,
        temperature: f32,
        alpha: f32,
        beta: f32,
    ) -> Result<KdLoss> {
        const OP: &str = "dkd_loss";
        let (rows, cols) = self.check_kd_inputs(OP, teacher, temperature)?;
        self.check_labels(OP, labels, rows, cols)?;
        if cols < 2 {
            return Err(Error::BadShape {
                op: OP,
                shape: self.shape().to_vec(),
                expected: "(rows, classes), classes >= 2: the non-target term needs them",
            });
        }
        for (name, w) in [("alpha", alpha), ("beta", beta)] {
            if !(w >= 0.0 && w.is_finite()) {
                return Err(Error::BadArgument {
                    op: OP,
                    message: format!("{name} must be >= 0 and finite, got {w}"),
                });
            }
        }
        let p = RowParams::new(rows, cols)?
            .with_temperature(temperature)
            .with_alpha(alpha)
            .with_beta(beta);
        let reads = [&*self.storage(), &*teacher.storage(), labels.storage()];
        let [terms, grad] = run(k::DkdLossForward, &p, &reads)?;
        // (rows, 3) [CE, T²·TCKD, T²·NCKD] -> the weighted mean and the three means.
        let mean = RowParams::new(rows, 3)?.with_alpha(alpha).with_beta(beta);
        let (loss, parts) = self.row_loss(&terms, grad, mean)?;
        Ok(KdLoss {
            loss,
            parts: Tensor::from_storage(parts, vec![3], self.device()),
        })
    }

    fn check_kd_inputs(
        &self,
        op: &'static str,
        teacher: &Tensor,
        t: f32,
    ) -> Result<(usize, usize)> {
        self.check_same_device(op, teacher)?;
        let (rows, cols) = self.rows_cols(op)?;
        if teacher.shape() != self.shape() {
            return Err(Error::ShapeMismatch {
                op,
                lhs: self.shape().to_vec(),
                rhs: teacher.shape().to_vec(),
            });
        }
        if !(t > 0.0 && t.is_finite()) {
            return Err(Error::BadArgument {
                op,
                message: format!("temperature must be > 0 and finite, got {t}"),
            });
        }
        Ok((rows, cols))
    }

    /// The scalar loss over per-row `losses` `(p.rows, p.cols)` (see `row_loss_mean`),
    /// recording their per-row gradients; and the column means.
    fn row_loss(&self, losses: &Storage, grad: Storage, p: RowParams) -> Result<(Tensor, Storage)> {
        let [loss, means] = run(k::RowLossMean, &p, &[losses])?;
        let record = Op::RowLoss {
            logits: self.clone(),
            grad,
            rows: p.rows as usize,
        };
        Ok((Tensor::from_op(loss, vec![], self.device(), record), means))
    }

    /// The index of the largest logit of each row (first on ties); reads back.
    pub fn argmax_rows(&self) -> Result<Vec<u32>> {
        let (rows, cols) = self.rows_cols("argmax_rows")?;
        let [out] = run(
            k::ArgmaxRows,
            &RowParams::new(rows, cols)?,
            &[&self.storage()],
        )?;
        out.to_vec_u32()
    }
}

// d/dx of log_softmax: dx = g - softmax(x) · Σ_j g_j, with softmax = exp(out)
pub(crate) fn log_softmax_backward(out: &Storage, p: &RowParams, g: &Storage) -> Result<Storage> {
    let [dx] = run(k::LogSoftmaxBackward, p, &[out, g])?;
    Ok(dx)
}

// loss = (1/rows) Σ_r loss_r, so d loss / d logits_r = upstream · grad_r / rows,
// with grad_r = d loss_r / d logits_r from the forward kernel.
pub(crate) fn row_loss_backward(rows_grad: &Storage, rows: usize, g: &Storage) -> Result<Storage> {
    let p = ElementwiseParams::with_alpha(rows_grad.len(), 1.0 / rows as f32)?;
    let [dx] = run(k::RowLossBackward, &p, &[rows_grad, g])?;
    Ok(dx)
}
