//! Row-wise log-softmax, cross-entropy, the fused softmax-KL and distillation losses
//! (Hinton's and the decoupled one).
//!
//! Every kernel reads logits `(rows, cols)`, row-major (see [`RowParams`]):
//!
//! ```text
//! log_softmax_forward    x: (rows, cols)                     out: (rows, cols)
//! log_softmax_backward   out, grad_out: (rows, cols)         grad_x: (rows, cols)
//! cross_entropy_forward  logits: (rows, cols), labels: rows  loss: rows, grad: (rows, cols)
//! softmax_kl_forward     student, teacher: (rows, cols)      loss: rows, grad: (rows, cols)
//! kd_loss_forward        student, teacher, labels            loss: (rows, 2), grad: (rows, cols)
//! dkd_loss_forward       student, teacher, labels            loss: (rows, 3), grad: (rows, cols)
//! argmax_rows            x: (rows, cols)                     out: rows
//! row_loss_mean          losses: (rows, cols), cols 1 to 3   loss: 1, means: cols
//! row_loss_backward      grad_rows: (rows, cols), upstream: 1  grad: (rows, cols)
//! ```
//!
//! Rows are independent, so a task owns a block of whole rows and every row is computed
//! by the same serial code whatever the block: results are bit-identical run to run and
//! between the serial and the parallel path.
//!
//! Every softmax is taken in the shifted form `log softmax(x / T)_j = (x_j - max) / T -
//! ln Σ_k exp((x_k - max) / T)`: each exponent is `<= 0` and one is exactly 0, so the sum
//! lies in `[1, cols]` and logits near ±1e4 neither overflow nor lose the row.
//!
//! The losses come with their gradient with respect to the (student) logits, per row;
//! the engine scales it by the upstream gradient and `1 / rows`.

use super::vmath::{exp_nonpositive, ln_normal, on_widest_vectors};
use crate::error::{check_indices, words, words_mut, KernelError};
use crate::params::*;
use rayon::prelude::*;

/// About this many logits per rayon task: enough work to amortise a task, and inputs
/// of at most one block (a training batch of MNIST logits) stay on the calling thread.
const VALUES_PER_TASK: usize = 1 << 14;

/// Rows per rayon task. Depends on the shape only, never on the thread count.
fn rows_per_task(cols: usize) -> usize {
    (VALUES_PER_TASK / cols.max(1)).max(1)
}

/// `(rows, cols)` of `p`, after checking that a row has a column.
fn shape(op: &'static str, p: &RowParams) -> Result<(usize, usize), KernelError> {
    match p.cols {
        0 => Err(KernelError::BadParams {
            op,
            message: format!("{p:?}: a softmax row needs at least one column"),
        }),
        cols => Ok((p.rows as usize, cols as usize)),
    }
}

/// [`KernelError::BadParams`] unless the temperature is positive.
fn positive_temperature(op: &'static str, p: &RowParams) -> Result<(), KernelError> {
    match p.temperature > 0.0 {
        true => Ok(()),
        false => Err(KernelError::BadParams {
            op,
            message: format!("temperature {} must be positive", p.temperature),
        }),
    }
}

/// The largest logit of a row. NOTE: `f32::max` skips NaN, so a NaN logit does not
/// poison the shift (it still poisons its own softmax term).
fn row_max(x: &[f32]) -> f32 {
    x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v))
}

/// A row's log-softmax at temperature `T`, kept as its shift and normaliser so that
/// each column is one subtract, one multiply and one subtract.
#[derive(Clone, Copy)]
struct LogSoftmax {
    max: f32,
    inv_t: f32,
    lse: f32,
}

impl LogSoftmax {
    /// `max` is the row's largest logit; the largest of `x / T` is `max / T` for `T > 0`.
    fn of(x: &[f32], max: f32, inv_t: f32) -> Self {
        let sum: f32 = x.iter().map(|&v| ((v - max) * inv_t).exp()).sum();
        Self {
            max,
            inv_t,
            lse: sum.ln(),
        }
    }

    /// `log softmax(x / T)_j` for the logit `v = x_j`.
    fn at(&self, v: f32) -> f32 {
        (v - self.max) * self.inv_t - self.lse
    }
}

/// One column of the cross-entropy gradient, `softmax(z)_j - onehot(y)_j`, from
/// `log softmax(z)_j`. Shared by [`cross_entropy_forward`] and [`kd_loss_forward`] so
/// that `α = 0` reproduces the cross-entropy bit for bit.
fn ce_column(log_q: f32, is_label: bool) -> f32 {
    let q = log_q.exp();
    if is_label {
        q - 1.0
    } else {
        q
    }
}

/// One column of the softmax-KL: from `log p_j` (teacher) and `log q_j` (student), both at
/// temperature `T`, returns `(p_j (log p_j - log q_j), T (q_j - p_j))`.
fn kl_column(log_p: f32, log_q: f32, temperature: f32) -> (f32, f32) {
    let (p, q) = (log_p.exp(), log_q.exp());
    (kl_term(p, log_p, log_q), temperature * (q - p))
}

/// `p (log p - log q)`, one column's term of `KL(p ‖ q)`. NOTE: 0 · log 0 = 0: a teacher
/// probability that underflows, or a -inf teacher logit (log p = -inf), adds nothing
/// instead of 0 · inf = NaN. Only an exact 0 is skipped, so a NaN `p` (a NaN or +inf
/// teacher logit) still makes the loss NaN rather than hiding it.
#[inline(always)]
fn kl_term(p: f32, log_p: f32, log_q: f32) -> f32 {
    if p == 0.0 {
        0.0
    } else {
        p * (log_p - log_q)
    }
}

/// `out = log softmax(x)` per row.
pub fn log_softmax_forward(x: &[f32], out: &mut [f32], p: &RowParams) -> Result<(), KernelError> {
    const OP: &str = "log_softmax_forward";
    let (rows, cols) = shape(OP, p)?;
    let (x, out) = (
        words(OP, "x", x, rows * cols)?,
        words_mut(OP, "out", out, rows * cols)?,
    );
    let run = |x: &[f32], out: &mut [f32]| {
        for (x, out) in x.chunks_exact(cols).zip(out.chunks_exact_mut(cols)) {
            let ls = LogSoftmax::of(x, row_max(x), 1.0);
            for (o, &v) in out.iter_mut().zip(x) {
                *o = ls.at(v);
            }
        }
    };
    let block = rows_per_task(cols);
    if rows <= block {
        run(x, out);
        return Ok(());
    }
    x.par_chunks(block * cols)
        .zip(out.par_chunks_mut(block * cols))
        .for_each(|(x, out)| run(x, out));
    Ok(())
}

// d/dx of Σ_i g_i log_softmax(x)_i = g - softmax(x) · Σ_i g_i
//
// log_softmax(x)_i = x_i - ln Σ_k exp(x_k), so d log_softmax(x)_i / dx_j = δ_ij - softmax_j
// and Σ_i g_i (δ_ij - softmax_j) = g_j - softmax_j Σ_i g_i. softmax = exp(out): the
// forward output is all the backward needs.
/// `grad_x = grad_out - exp(out) · Σ grad_out` per row, with `out` the saved log-softmax.
pub fn log_softmax_backward(
    out: &[f32],
    grad_out: &[f32],
    grad_x: &mut [f32],
    p: &RowParams,
) -> Result<(), KernelError> {
    const OP: &str = "log_softmax_backward";
    let (rows, cols) = shape(OP, p)?;
    let len = rows * cols;
    let (out, grad_out) = (
        words(OP, "out", out, len)?,
        words(OP, "grad_out", grad_out, len)?,
    );
    let grad_x = words_mut(OP, "grad_x", grad_x, len)?;
    let run = |out: &[f32], g: &[f32], gx: &mut [f32]| {
        let rows = out.chunks_exact(cols).zip(g.chunks_exact(cols));
        for ((out, g), gx) in rows.zip(gx.chunks_exact_mut(cols)) {
            let sum: f32 = g.iter().sum();
            for ((gx, &o), &g) in gx.iter_mut().zip(out).zip(g) {
                *gx = g - o.exp() * sum;
            }
        }
    };
    let block = rows_per_task(cols);
    if rows <= block {
        run(out, grad_out, grad_x);
        return Ok(());
    }
    out.par_chunks(block * cols)
        .zip(grad_out.par_chunks(block * cols))
        .zip(grad_x.par_chunks_mut(block * cols))
        .for_each(|((out, g), gx)| run(out, g, gx));
    Ok(())
}

// d/dz of -log softmax(z)_y = softmax(z) - onehot(y)
//
// -log softmax(z)_y = -z_y + ln Σ_k exp(z_k), and d/dz_j ln Σ_k exp(z_k) = softmax(z)_j.
/// Per row: `loss = -log softmax(logits)[label]`, `grad = softmax(logits) - onehot(label)`.
pub fn cross_entropy_forward(
    logits: &[f32],
    labels: &[u32],
    loss: &mut [f32],
    grad: &mut [f32],
    p: &RowParams,
) -> Result<(), KernelError> {
    const OP: &str = "cross_entropy_forward";
    let (rows, cols) = shape(OP, p)?;
    let (logits, labels) = (
        words(OP, "logits", logits, rows * cols)?,
        words(OP, "labels", labels, rows)?,
    );
    let (loss, grad) = (
        words_mut(OP, "loss", loss, rows)?,
        words_mut(OP, "grad", grad, rows * cols)?,
    );
    check_indices(OP, "labels", labels, cols)?;
    let run = |z: &[f32], labels: &[u32], loss: &mut [f32], grad: &mut [f32]| {
        let rows = z.chunks_exact(cols).zip(labels).zip(loss);
        for (((z, &label), loss), grad) in rows.zip(grad.chunks_exact_mut(cols)) {
            let y = label as usize;
            let ls = LogSoftmax::of(z, row_max(z), 1.0);
            for (j, (g, &v)) in grad.iter_mut().zip(z).enumerate() {
                *g = ce_column(ls.at(v), j == y);
            }
            *loss = -ls.at(z[y]);
        }
    };
    let block = rows_per_task(cols);
    if rows <= block {
        run(logits, labels, loss, grad);
        return Ok(());
    }
    logits
        .par_chunks(block * cols)
        .zip(labels.par_chunks(block))
        .zip(loss.par_chunks_mut(block))
        .zip(grad.par_chunks_mut(block * cols))
        .for_each(|(((z, y), l), g)| run(z, y, l, g));
    Ok(())
}

/// Values in one group of rows of [`softmax_kl_rows`]; rows wider than this go one by
/// one through [`softmax_kl_row_wide`].
const KL_GROUP_VALUES: usize = 1024;

/// `T²·KL(p ‖ q)` of each row of a block of whole rows, with `p = softmax(t / T)`,
/// `q = softmax(s / T)`; writes `T (q - p)` into `grad` and hands each row's loss to
/// `put(row, loss)`.
///
/// NOTE: with 10 classes a row is too short for vectors, and its sums are chains of
/// dependent adds; yet the kernel is bound by arithmetic (two `exp` per logit, two `ln`
/// per row), not memory. So rows go by groups, transposed: a row is a lane, column `j`
/// of the group's rows lies at `buf[j * lanes..][..rows]`, and every step is a loop over
/// the rows that the compiler vectorises (16 rows per instruction with AVX-512, with the
/// polynomial `exp` and `ln` of [`super::vmath`]). Each row still sees the same
/// operations in the same column order as it would on its own, so results do not
/// depend on the grouping.
///
/// NOTE: rows wider than [`KL_GROUP_VALUES`] take libm's `exp` and `ln` instead, so
/// their results may differ from the grouped path's in the last bit.
fn softmax_kl_rows(
    s: &[f32],
    t: &[f32],
    grad: &mut [f32],
    cols: usize,
    temperature: f32,
    mut put: impl FnMut(usize, f32),
) {
    if cols > KL_GROUP_VALUES {
        let rows = s.chunks_exact(cols).zip(t.chunks_exact(cols));
        for (r, ((s, t), grad)) in rows.zip(grad.chunks_exact_mut(cols)).enumerate() {
            put(r, softmax_kl_row_wide(s, t, grad, temperature));
        }
        return;
    }
    let lanes = group_lanes(cols, s.len() / cols);
    let mut group = KlGroup::new(lanes, cols);
    on_widest_vectors(
        #[inline(always)]
        || {
            let groups = s.chunks(lanes * cols).zip(t.chunks(lanes * cols));
            for (g, ((s, t), grad)) in groups.zip(grad.chunks_mut(lanes * cols)).enumerate() {
                group.run(s, t, grad, temperature);
                for (r, &kl) in group.kl[..s.len() / cols].iter().enumerate() {
                    put(g * lanes + r, kl);
                }
            }
        },
    );
}

/// Rows per group of [`softmax_kl_rows`]: as many as fit in [`KL_GROUP_VALUES`], rounded
/// down to whole 16-lane vectors, and no more than the block has.
fn group_lanes(cols: usize, rows: usize) -> usize {
    let fit = KL_GROUP_VALUES / cols;
    let whole_vectors = if fit >= 16 { fit / 16 * 16 } else { fit };
    whole_vectors.min(rows).max(1)
}

/// The buffers of one group of [`softmax_kl_rows`]: both sides' softmaxes and each
/// row's loss.
struct KlGroup {
    lanes: usize,
    cols: usize,
    student: GroupSoftmax,
    teacher: GroupSoftmax,
    kl: Vec<f32>,
}

/// One side (student or teacher) of a group, transposed: per column `j` and row `r`, at
/// `j * lanes + r`, the shifted logits `x = (v - max) / T` and their exponentials `e`;
/// per row, the max, the sum of the exponentials, its `ln` and its inverse.
struct GroupSoftmax {
    x: Vec<f32>,
    e: Vec<f32>,
    max: Vec<f32>,
    sum: Vec<f32>,
    lse: Vec<f32>,
    inv_sum: Vec<f32>,
}

impl KlGroup {
    fn new(lanes: usize, cols: usize) -> Self {
        Self {
            lanes,
            cols,
            student: GroupSoftmax::new(lanes, cols),
            teacher: GroupSoftmax::new(lanes, cols),
            kl: vec![0.0; lanes],
        }
    }

    /// One group: `s.len() / cols <= lanes` rows in, their gradient rows out in `grad`,
    /// their losses in `self.kl`.
    #[inline(always)]
    fn run(&mut self, s: &[f32], t: &[f32], grad: &mut [f32], temperature: f32) {
        let (lanes, cols, rows) = (self.lanes, self.cols, s.len() / self.cols);
        self.student.load(s, lanes, cols, temperature);
        self.teacher.load(t, lanes, cols, temperature);
        // Per column: the KL terms and the gradient T (q - p), over the student's `e`.
        let (student, teacher) = (&mut self.student, &self.teacher);
        let kl = &mut self.kl[..rows];
        kl.fill(0.0);
        let (lse_s, lse_t) = (&student.lse[..rows], &teacher.lse[..rows]);
        let (inv_s, inv_t) = (&student.inv_sum[..rows], &teacher.inv_sum[..rows]);
        for j in 0..cols {
            let at = j * lanes..j * lanes + rows;
            let (x_s, x_t) = (&student.x[at.clone()], &teacher.x[at.clone()]);
            let (e_s, e_t) = (&mut student.e[at.clone()], &teacher.e[at]);
            for r in 0..rows {
                let (q, p) = (e_s[r] * inv_s[r], e_t[r] * inv_t[r]);
                let (log_p, log_q) = (x_t[r] - lse_t[r], x_s[r] - lse_s[r]);
                kl[r] += kl_term(p, log_p, log_q);
                e_s[r] = temperature * (q - p);
            }
        }
        for kl in kl {
            *kl *= temperature * temperature;
        }
        // Transpose the gradient out.
        for (r, row) in grad.chunks_exact_mut(cols).enumerate() {
            for (j, g) in row.iter_mut().enumerate() {
                *g = student.e[j * lanes + r];
            }
        }
    }
}

impl GroupSoftmax {
    fn new(lanes: usize, cols: usize) -> Self {
        let zeros = |n| vec![0.0; n];
        Self {
            x: zeros(lanes * cols),
            e: zeros(lanes * cols),
            max: zeros(lanes),
            sum: zeros(lanes),
            lse: zeros(lanes),
            inv_sum: zeros(lanes),
        }
    }

    /// Transposes in the rows of `logits` (at most `lanes`) and takes their softmax at
    /// temperature `T`, column by column.
    #[inline(always)]
    fn load(&mut self, logits: &[f32], lanes: usize, cols: usize, temperature: f32) {
        let rows = logits.len() / cols;
        let inv_temp = 1.0 / temperature;
        for (r, row) in logits.chunks_exact(cols).enumerate() {
            for (j, &v) in row.iter().enumerate() {
                self.x[j * lanes + r] = v;
            }
        }
        let columns = || (0..cols).map(|j| j * lanes..j * lanes + rows);
        let max = &mut self.max[..rows];
        max.fill(f32::NEG_INFINITY);
        for at in columns() {
            for (m, &v) in max.iter_mut().zip(&self.x[at]) {
                *m = m.max(v);
            }
        }
        let sum = &mut self.sum[..rows];
        sum.fill(0.0);
        for at in columns() {
            let (x, e) = (&mut self.x[at.clone()], &mut self.e[at]);
            for (((x, e), &m), sum) in x.iter_mut().zip(e).zip(&*max).zip(&mut *sum) {
                *x = (*x - m) * inv_temp;
                *e = exp_nonpositive(*x);
                *sum += *e;
            }
        }
        let per_row = self.lse[..rows].iter_mut().zip(&mut self.inv_sum[..rows]);
        for ((lse, inv_sum), &sum) in per_row.zip(&*sum) {
            (*lse, *inv_sum) = (ln_normal(sum), 1.0 / sum);
        }
    }
}

/// One row of [`softmax_kl_rows`] for rows wider than [`KL_GROUP_VALUES`]: the column
/// helpers, which recompute the exponentials instead of keeping them.
fn softmax_kl_row_wide(s: &[f32], t: &[f32], grad: &mut [f32], temperature: f32) -> f32 {
    let inv_t = 1.0 / temperature;
    let log_q = LogSoftmax::of(s, row_max(s), inv_t);
    let log_p = LogSoftmax::of(t, row_max(t), inv_t);
    let mut kl = 0.0;
    for ((g, &sj), &tj) in grad.iter_mut().zip(s).zip(t) {
        let (term, g_kl) = kl_column(log_p.at(tj), log_q.at(sj), temperature);
        kl += term;
        *g = g_kl;
    }
    temperature * temperature * kl
}

// d/dz_s of T^2 * KL(p_t || softmax(z_s / T)) = T * (softmax(z_s / T) - p_t)
//
// KL(p ‖ q) = Σ_j p_j log p_j - Σ_j p_j log q_j, and only the second sum depends on z_s.
// log q_j = z_j / T - ln Σ_k exp(z_k / T), so d log q_j / dz_i = (δ_ij - q_i) / T, and
// d/dz_i [-Σ_j p_j log q_j] = -(1/T) Σ_j p_j (δ_ij - q_i) = (q_i - p_i) / T as Σ_j p_j = 1.
// Times T²: T (q_i - p_i). The T² (Hinton et al.) keeps the soft-target gradient on the
// scale of the hard-label one as T grows.
/// The fused softmax-KL distillation loss per row: `loss = T²·KL(softmax(t/T) ‖
/// softmax(s/T))` and `grad = d loss / d s = T (softmax(s/T) - softmax(t/T))`, with
/// `T = p.temperature > 0`.
pub fn softmax_kl_forward(
    student: &[f32],
    teacher: &[f32],
    loss: &mut [f32],
    grad: &mut [f32],
    p: &RowParams,
) -> Result<(), KernelError> {
    const OP: &str = "softmax_kl_forward";
    let (rows, cols) = shape(OP, p)?;
    positive_temperature(OP, p)?;
    let len = rows * cols;
    let (student, teacher) = (
        words(OP, "student", student, len)?,
        words(OP, "teacher", teacher, len)?,
    );
    let (loss, grad) = (
        words_mut(OP, "loss", loss, rows)?,
        words_mut(OP, "grad", grad, len)?,
    );
    let temperature = p.temperature;
    let run = |s: &[f32], t: &[f32], loss: &mut [f32], grad: &mut [f32]| {
        softmax_kl_rows(s, t, grad, cols, temperature, |r, kl| loss[r] = kl);
    };
    let block = rows_per_task(cols);
    if rows <= block {
        run(student, teacher, loss, grad);
        return Ok(());
    }
    student
        .par_chunks(block * cols)
        .zip(teacher.par_chunks(block * cols))
        .zip(loss.par_chunks_mut(block))
        .zip(grad.par_chunks_mut(block * cols))
        .for_each(|(((s, t), l), g)| run(s, t, l, g));
    Ok(())
}

/// The cross-entropy half of one row of the distillation loss: `grad` holds the row's
/// softmax-KL gradient `T (q - p)` and becomes the blend `(1 - α) g_ce + α T (q - p)`;
/// returns `CE(y, s)`. The columns are computed exactly as in [`cross_entropy_forward`],
/// so that `α = 0` reproduces it bit for bit.
fn kd_blend_row(s: &[f32], y: usize, grad: &mut [f32], alpha: f32) -> f32 {
    let log_q1 = LogSoftmax::of(s, row_max(s), 1.0);
    for (j, (g, &sj)) in grad.iter_mut().zip(s).enumerate() {
        let g_ce = ce_column(log_q1.at(sj), j == y);
        *g = (1.0 - alpha) * g_ce + alpha * *g;
    }
    -log_q1.at(s[y])
}

// d/dz_s of (1 - α) CE(y, z_s) + α T^2 KL(p_t || softmax(z_s / T))
//     = (1 - α) (softmax(z_s) - onehot(y)) + α T (softmax(z_s / T) - p_t)
//
// The sum of the two derivatives above [`cross_entropy_forward`] and
// [`softmax_kl_forward`], weighted as the engine weights the two losses.
/// The fused distillation loss of Hinton et al. per row: `loss[2r] = CE(y, s) = -log
/// softmax(s)[y]`, `loss[2r + 1] = T²·KL(softmax(t/T) ‖ softmax(s/T))`, and `grad` the
/// derivative of `(1 - α)·ce + α·kl` with respect to `s` (`T = p.temperature > 0`,
/// `α = p.alpha`). The KL half goes through the grouped softmax-KL of
/// [`softmax_kl_forward`], then one pass per row adds the cross-entropy and blends the
/// gradients in place.
pub fn kd_loss_forward(
    student: &[f32],
    teacher: &[f32],
    labels: &[u32],
    loss: &mut [f32],
    grad: &mut [f32],
    p: &RowParams,
) -> Result<(), KernelError> {
    const OP: &str = "kd_loss_forward";
    let cols = p.cols as usize;
    let run = |s: &[f32], t: &[f32], labels: &[u32], loss: &mut [f32], grad: &mut [f32]| {
        // The KL half of every row first, its gradient T (q - p) in `grad`, then the blend.
        softmax_kl_rows(s, t, grad, cols, p.temperature, |r, kl| {
            loss[2 * r + 1] = kl
        });
        let rows = s.chunks_exact(cols).zip(labels);
        let outs = loss.chunks_exact_mut(2).zip(grad.chunks_exact_mut(cols));
        for ((s, &label), (loss, grad)) in rows.zip(outs) {
            loss[0] = kd_blend_row(s, label as usize, grad, p.alpha);
        }
    };
    let outs = LossOutputs {
        loss,
        terms: 2,
        grad,
    };
    distillation_blocks(OP, (student, teacher, labels), outs, p, run)
}

/// A distillation loss kernel's outputs: `terms` loss values per row, and the gradient.
struct LossOutputs<'a> {
    loss: &'a mut [f32],
    terms: usize,
    grad: &'a mut [f32],
}

/// Checks a distillation loss kernel's buffers, labels and temperature against `p` and
/// runs `run(student, teacher, labels, loss, grad)` on blocks of whole rows, in
/// parallel past one block.
fn distillation_blocks(
    op: &'static str,
    (student, teacher, labels): (&[f32], &[f32], &[u32]),
    out: LossOutputs,
    p: &RowParams,
    run: impl Fn(&[f32], &[f32], &[u32], &mut [f32], &mut [f32]) + Sync,
) -> Result<(), KernelError> {
    let LossOutputs { loss, terms, grad } = out;
    let (rows, cols) = shape(op, p)?;
    positive_temperature(op, p)?;
    let len = rows * cols;
    let (student, teacher) = (
        words(op, "student", student, len)?,
        words(op, "teacher", teacher, len)?,
    );
    let labels = words(op, "labels", labels, rows)?;
    let (loss, grad) = (
        words_mut(op, "loss", loss, terms * rows)?,
        words_mut(op, "grad", grad, len)?,
    );
    check_indices(op, "labels", labels, cols)?;
    let block = rows_per_task(cols);
    if rows <= block {
        run(student, teacher, labels, loss, grad);
        return Ok(());
    }
    student
        .par_chunks(block * cols)
        .zip(teacher.par_chunks(block * cols))
        .zip(labels.par_chunks(block))
        .zip(loss.par_chunks_mut(terms * block))
        .zip(grad.par_chunks_mut(block * cols))
        .for_each(|((((s, t), y), l), g)| run(s, t, y, l, g));
    Ok(())
}

impl LogSoftmax {
    /// The log-softmax at temperature `T` over every column of `x` but `y`: decoupled
    /// KD's non-target distribution. `x` has at least two columns. NOTE: if every other
    /// column is -inf, the shift is -inf and the terms that use it are NaN (the GPU's
    /// alike), unlike [`kl_term`]'s zero for a single -inf teacher logit.
    fn without(x: &[f32], y: usize, inv_t: f32) -> Self {
        let others = || x.iter().enumerate().filter(move |&(j, _)| j != y);
        let max = others().fold(f32::NEG_INFINITY, |m, (_, &v)| m.max(v));
        let sum: f32 = others().map(|(_, &v)| ((v - max) * inv_t).exp()).sum();
        Self {
            max,
            inv_t,
            lse: sum.ln(),
        }
    }

    /// `ln Σ_{j≠y} softmax(x / T)_j = ln(1 - softmax(x / T)_y)` from the row's softmax
    /// and its non-target one: the difference of their log-normalisers, which stays
    /// exact where `1 - softmax_y` would round to 0.
    fn log_rest(&self, rest: &LogSoftmax) -> f32 {
        (rest.max - self.max) * self.inv_t + rest.lse - self.lse
    }
}

// Decoupled KD (Zhao et al. 2022) splits KL(p ‖ q) at temperature T by the target class y:
//
//   TCKD = KL(b_p ‖ b_q) over the binary split b = (p_y, 1 - p_y),
//   NCKD = KL(p̂ ‖ q̂) over the non-target classes, p̂_j = p_j / (1 - p_y) (j ≠ y),
//
// and KL(p ‖ q) = TCKD + (1 - p_y)·NCKD. With z = s / T, q = softmax(z), q̂ = softmax of
// the non-target z:
//
//   d TCKD / dz_y = q_y - p_y             d TCKD / dz_j = q̂_j (p_y - q_y)   (j ≠ y)
//   d NCKD / dz_y = 0                     d NCKD / dz_j = q̂_j - p̂_j          (j ≠ y)
//
// (TCKD depends on z through q_y only, d q_y / dz_i = q_y (δ_iy - q_i); NCKD is a
// softmax-KL over the non-target z.) d/ds = (1/T) d/dz, so each term times T² has the
// gradient T times the above, as in the softmax-KL.
/// The decoupled distillation loss of Zhao et al. 2022 per row: `loss[3r] = CE(y, s)`,
/// `loss[3r + 1] = T²·TCKD`, `loss[3r + 2] = T²·NCKD` (see above), and `grad` the
/// derivative of `ce + α·tckd + β·nckd` with respect to `s` (`T = p.temperature > 0`,
/// `α = p.alpha`, `β = p.beta`; at least two classes). One serial pass per row: unlike
/// [`kd_loss_forward`], it is not grouped for vectors, as it is an option of the
/// distillation step rather than its default.
pub fn dkd_loss_forward(
    student: &[f32],
    teacher: &[f32],
    labels: &[u32],
    loss: &mut [f32],
    grad: &mut [f32],
    p: &RowParams,
) -> Result<(), KernelError> {
    const OP: &str = "dkd_loss_forward";
    let cols = p.cols as usize;
    if cols < 2 {
        let message = format!("{p:?}: decoupled KD needs at least two classes");
        return Err(KernelError::BadParams { op: OP, message });
    }
    let run = |s: &[f32], t: &[f32], labels: &[u32], loss: &mut [f32], grad: &mut [f32]| {
        let rows = s.chunks_exact(cols).zip(t.chunks_exact(cols)).zip(labels);
        let outs = loss.chunks_exact_mut(3).zip(grad.chunks_exact_mut(cols));
        for (((s, t), &label), (loss, grad)) in rows.zip(outs) {
            dkd_row(s, t, label as usize, loss, grad, p);
        }
    };
    let outs = LossOutputs {
        loss,
        terms: 3,
        grad,
    };
    distillation_blocks(OP, (student, teacher, labels), outs, p, run)
}

/// One row of [`dkd_loss_forward`]: `[CE, T²·TCKD, T²·NCKD]` into `loss`, the blended
/// gradient into `grad`.
fn dkd_row(s: &[f32], t: &[f32], y: usize, loss: &mut [f32], grad: &mut [f32], p: &RowParams) {
    let (temperature, alpha, beta) = (p.temperature, p.alpha, p.beta);
    let inv_t = 1.0 / temperature;
    let (max_s, max_t) = (row_max(s), row_max(t));
    let student1 = LogSoftmax::of(s, max_s, 1.0);
    let (student, teacher) = (
        LogSoftmax::of(s, max_s, inv_t),
        LogSoftmax::of(t, max_t, inv_t),
    );
    let (student_rest, teacher_rest) = (
        LogSoftmax::without(s, y, inv_t),
        LogSoftmax::without(t, y, inv_t),
    );
    // The binary split (target, the rest) of each side, in logs.
    let (log_qy, log_qn) = (student.at(s[y]), student.log_rest(&student_rest));
    let (log_py, log_pn) = (teacher.at(t[y]), teacher.log_rest(&teacher_rest));
    let (qy, py) = (log_qy.exp(), log_py.exp());
    let tckd = kl_term(py, log_py, log_qy) + kl_term(log_pn.exp(), log_pn, log_qn);
    let mut nckd = 0.0;
    for (j, ((g, &sj), &tj)) in grad.iter_mut().zip(s).zip(t).enumerate() {
        let g_ce = ce_column(student1.at(sj), j == y);
        let g_kd = if j == y {
            alpha * (qy - py)
        } else {
            let (log_q, log_p) = (student_rest.at(sj), teacher_rest.at(tj));
            let (q, p) = (log_q.exp(), log_p.exp());
            nckd += kl_term(p, log_p, log_q);
            alpha * q * (py - qy) + beta * (q - p)
        };
        *g = g_ce + temperature * g_kd;
    }
    let t2 = temperature * temperature;
    loss.copy_from_slice(&[-student1.at(s[y]), t2 * tckd, t2 * nckd]);
}

/// `out[r]` = the column of the largest value of row `r`, the first one on ties.
/// NOTE: comparisons with NaN are false: a NaN is never picked over an earlier number,
/// and a NaN in the first column is never replaced.
pub fn argmax_rows(x: &[f32], out: &mut [u32], p: &RowParams) -> Result<(), KernelError> {
    const OP: &str = "argmax_rows";
    let (rows, cols) = shape(OP, p)?;
    let (x, out) = (
        words(OP, "x", x, rows * cols)?,
        words_mut(OP, "out", out, rows)?,
    );
    let run = |x: &[f32], out: &mut [u32]| {
        for (x, o) in x.chunks_exact(cols).zip(out) {
            let mut best = 0;
            for (j, &v) in x.iter().enumerate().skip(1) {
                // Strictly greater: an equal value later in the row does not win.
                if v > x[best] {
                    best = j;
                }
            }
            *o = best as u32;
        }
    };
    let block = rows_per_task(cols);
    if rows <= block {
        run(x, out);
        return Ok(());
    }
    x.par_chunks(block * cols)
        .zip(out.par_chunks_mut(block))
        .for_each(|(x, o)| run(x, o));
    Ok(())
}

/// The mean over rows of per-row losses `(rows, cols)`: `means[c] = Σ_r losses[r, c] /
/// rows`, and `loss[0] = means[0]` when `cols == 1`, `(1 - α)·means[0] + α·means[1]` when
/// `cols == 2` (the cross-entropy and `T²·KL` columns of [`kd_loss_forward`]),
/// `means[0] + α·means[1] + β·means[2]` when `cols == 3` (those of [`dkd_loss_forward`]).
///
/// NOTE: summed in `f64`, then rounded: the GPU's `f32` tree agrees to about 1e-6.
pub fn row_loss_mean(
    losses: &[f32],
    loss: &mut [f32],
    means: &mut [f32],
    p: &RowParams,
) -> Result<(), KernelError> {
    const OP: &str = "row_loss_mean";
    let (rows, cols) = shape(OP, p)?;
    if rows == 0 || cols > 3 {
        let message = format!("{p:?}: the mean of 1 to 3 loss columns over at least one row");
        return Err(KernelError::BadParams { op: OP, message });
    }
    let losses = words(OP, "losses", losses, rows * cols)?;
    let (loss, means) = (
        words_mut(OP, "loss", loss, 1)?,
        words_mut(OP, "means", means, cols)?,
    );
    let mut sums = [0.0f64; 3];
    for row in losses.chunks_exact(cols) {
        for (s, &l) in sums.iter_mut().zip(row) {
            *s += l as f64;
        }
    }
    for (m, s) in means.iter_mut().zip(sums) {
        *m = (s / rows as f64) as f32;
    }
    loss[0] = match *means {
        [m] => m,
        [ce, kl] => (1.0 - p.alpha) * ce + p.alpha * kl,
        [ce, tckd, nckd] => ce + p.alpha * tckd + p.beta * nckd,
        _ => unreachable!("checked: 1 to 3 columns"),
    };
    Ok(())
}

// loss = (1/rows) Σ_r loss_r  =>  d loss / d logits_r = upstream · grad_r / rows,
// with grad_r = d loss_r / d logits_r from the loss kernel and `p.alpha = 1 / rows`.
/// `grad = (grad_rows · upstream[0]) · alpha`: the backward of [`row_loss_mean`].
pub fn row_loss_backward(
    grad_rows: &[f32],
    upstream: &[f32],
    grad: &mut [f32],
    p: &ElementwiseParams,
) -> Result<(), KernelError> {
    const OP: &str = "row_loss_backward";
    let len = p.elements();
    let (grad_rows, upstream) = (
        words(OP, "grad_rows", grad_rows, len)?,
        words(OP, "upstream", upstream, 1)?,
    );
    let grad = words_mut(OP, "grad", grad, len)?;
    let (up, alpha) = (upstream[0], p.alpha);
    for (g, &r) in grad.iter_mut().zip(grad_rows) {
        *g = (r * up) * alpha;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;
    use rand::{rngs::StdRng, Rng, SeedableRng};

    // Naive f64 references, one row at a time and in several passes: divide by T, find
    // the max, sum, take logs. Written apart from the kernels so that a shared mistake
    // cannot hide.

    fn f64s(x: &[f32]) -> Vec<f64> {
        x.iter().map(|&v| v as f64).collect()
    }

    fn ref_log_softmax(x: &[f64], t: f64) -> Vec<f64> {
        let z: Vec<f64> = x.iter().map(|v| v / t).collect();
        let max = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = z.iter().map(|v| (v - max).exp()).sum();
        z.iter().map(|v| v - max - sum.ln()).collect()
    }

    fn ref_softmax(x: &[f64], t: f64) -> Vec<f64> {
        ref_log_softmax(x, t).into_iter().map(f64::exp).collect()
    }

    fn ref_cross_entropy(z: &[f64], y: usize) -> f64 {
        -ref_log_softmax(z, 1.0)[y]
    }

    /// `T²·KL(softmax(t/T) ‖ softmax(s/T))`, skipping the `p = 0` terms.
    fn ref_softmax_kl(s: &[f64], t: &[f64], temp: f64) -> f64 {
        let (log_q, log_p) = (ref_log_softmax(s, temp), ref_log_softmax(t, temp));
        let kl: f64 = log_p
            .iter()
            .zip(&log_q)
            .filter(|(lp, _)| lp.exp() > 0.0)
            .map(|(lp, lq)| lp.exp() * (lp - lq))
            .sum();
        temp * temp * kl
    }

    /// `(T²·TCKD, T²·NCKD)` of decoupled KD from their definitions: the binary split
    /// `(p_y, 1 - p_y)` of each softmax at `T`, and the softmaxes renormalised over the
    /// columns other than `y`.
    fn ref_dkd(s: &[f64], t: &[f64], y: usize, temp: f64) -> (f64, f64) {
        let (q, p) = (ref_softmax(s, temp), ref_softmax(t, temp));
        let kl = |p: &[f64], q: &[f64]| -> f64 {
            p.iter()
                .zip(q)
                .filter(|(p, _)| **p > 0.0)
                .map(|(p, q)| p * (p / q).ln())
                .sum()
        };
        let tckd = kl(&[p[y], 1.0 - p[y]], &[q[y], 1.0 - q[y]]);
        let rest = |x: &[f64]| -> Vec<f64> {
            let others: Vec<f64> = (0..x.len()).filter(|&j| j != y).map(|j| x[j]).collect();
            let sum: f64 = others.iter().sum();
            others.iter().map(|v| v / sum).collect()
        };
        let nckd = kl(&rest(&p), &rest(&q));
        (temp * temp * tckd, temp * temp * nckd)
    }

    /// Central differences of `f` at `x`: truncation error O(h²) ≈ 1e-10 in f64.
    fn numeric_grad(x: &[f64], f: impl Fn(&[f64]) -> f64) -> Vec<f64> {
        let h = 1e-5;
        (0..x.len())
            .map(|j| {
                let (mut up, mut down) = (x.to_vec(), x.to_vec());
                up[j] += h;
                down[j] -= h;
                (f(&up) - f(&down)) / (2.0 * h)
            })
            .collect()
    }

    /// `|got - want| <= tol · (scale + |want|)` for every element.
    fn assert_close(what: &str, got: &[f32], want: &[f64], tol: f64, scale: f64) {
        assert_eq!(got.len(), want.len(), "{what}: lengths");
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            let err = (g as f64 - w).abs();
            assert!(
                err <= tol * (scale + w.abs()),
                "{what}[{i}]: got {g}, want {w}"
            );
        }
    }

    fn bits(x: &[f32]) -> Vec<u32> {
        x.iter().map(|v| v.to_bits()).collect()
    }

    #[derive(Clone, Debug)]
    struct Case {
        rows: usize,
        cols: usize,
        student: Vec<f32>,
        teacher: Vec<f32>,
        labels: Vec<u32>,
        temperature: f32,
        alpha: f32,
        beta: f32,
    }

    impl Case {
        fn params(&self) -> RowParams {
            RowParams::new(self.rows, self.cols)
                .unwrap()
                .with_temperature(self.temperature)
                .with_alpha(self.alpha)
                .with_beta(self.beta)
        }
        fn row(&self, x: &[f32], r: usize) -> Vec<f64> {
            f64s(&x[r * self.cols..(r + 1) * self.cols])
        }
        fn cross_entropy(&self) -> (Vec<f32>, Vec<f32>) {
            let (mut loss, mut grad) = (vec![0.0; self.rows], vec![0.0; self.student.len()]);
            cross_entropy_forward(
                &self.student,
                &self.labels,
                &mut loss,
                &mut grad,
                &self.params(),
            )
            .unwrap();
            (loss, grad)
        }
        fn softmax_kl(&self) -> (Vec<f32>, Vec<f32>) {
            let (mut loss, mut grad) = (vec![0.0; self.rows], vec![0.0; self.student.len()]);
            let (s, t) = (&self.student, &self.teacher);
            softmax_kl_forward(s, t, &mut loss, &mut grad, &self.params()).unwrap();
            (loss, grad)
        }
        fn kd_loss(&self) -> (Vec<f32>, Vec<f32>) {
            let (mut loss, mut grad) = (vec![0.0; 2 * self.rows], vec![0.0; self.student.len()]);
            let (s, t, y) = (&self.student, &self.teacher, &self.labels);
            kd_loss_forward(s, t, y, &mut loss, &mut grad, &self.params()).unwrap();
            (loss, grad)
        }
        fn dkd_loss(&self) -> (Vec<f32>, Vec<f32>) {
            let (mut loss, mut grad) = (vec![0.0; 3 * self.rows], vec![0.0; self.student.len()]);
            let (s, t, y) = (&self.student, &self.teacher, &self.labels);
            dkd_loss_forward(s, t, y, &mut loss, &mut grad, &self.params()).unwrap();
            (loss, grad)
        }
        fn log_softmax(&self) -> Vec<f32> {
            let mut out = vec![0.0; self.student.len()];
            log_softmax_forward(&self.student, &mut out, &self.params()).unwrap();
            out
        }
    }

    fn assert_softmax_kl_matches_reference(c: &Case) {
        let (loss, grad) = c.softmax_kl();
        let temp = c.temperature as f64;
        for r in 0..c.rows {
            let (s, t) = (c.row(&c.student, r), c.row(&c.teacher, r));
            let kl = ref_softmax_kl(&s, &t, temp);
            assert_close("loss", &loss[r..r + 1], &[kl], 1e-5, temp * temp);
            let (q, p) = (ref_softmax(&s, temp), ref_softmax(&t, temp));
            let want: Vec<f64> = q.iter().zip(&p).map(|(q, p)| temp * (q - p)).collect();
            assert_close("grad", &grad[r * c.cols..][..c.cols], &want, 1e-5, temp);
        }
    }

    /// Batch 1 and small batches; one column, two, primes and anything up to 40. Logits
    /// in (-5, 5) and T in [0.5, 8) keep every exponent within what f32 resolves well.
    fn cases() -> impl Strategy<Value = Case> {
        let rows = prop_oneof![Just(1usize), 1usize..9];
        let cols = prop_oneof![
            Just(1usize),
            Just(2),
            Just(3),
            Just(7),
            Just(13),
            1usize..40
        ];
        (rows, cols).prop_flat_map(|(rows, cols)| {
            let n = rows * cols;
            let logits = || vec(-5f32..5.0, n);
            let labels = vec(0..cols as u32, rows);
            let weights = (0.5f32..8.0, 0f32..=1.0, 0f32..8.0);
            (logits(), logits(), labels, weights).prop_map(
                move |(student, teacher, labels, (temperature, alpha, beta))| Case {
                    rows,
                    cols,
                    student,
                    teacher,
                    labels,
                    temperature,
                    alpha,
                    beta,
                },
            )
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn log_softmax_forward_matches_reference(c in cases()) {
            let out = c.log_softmax();
            for r in 0..c.rows {
                let want = ref_log_softmax(&c.row(&c.student, r), 1.0);
                assert_close("log_softmax", &out[r * c.cols..][..c.cols], &want, 1e-5, 1.0);
            }
        }

        // The teacher logits stand in for an upstream gradient.
        #[test]
        fn log_softmax_backward_matches_reference(c in cases()) {
            let out = c.log_softmax();
            let mut grad_x = vec![0.0; out.len()];
            log_softmax_backward(&out, &c.teacher, &mut grad_x, &c.params()).unwrap();
            for r in 0..c.rows {
                let (x, g) = (c.row(&c.student, r), c.row(&c.teacher, r));
                let sum: f64 = g.iter().sum();
                let want: Vec<f64> =
                    ref_softmax(&x, 1.0).iter().zip(&g).map(|(q, g)| g - q * sum).collect();
                assert_close("grad_x", &grad_x[r * c.cols..][..c.cols], &want, 1e-5, 1.0);
            }
        }

        // L(x) = Σ_i g_i log_softmax(x)_i, whose gradient the backward claims to be.
        #[test]
        fn log_softmax_backward_matches_finite_differences(c in cases()) {
            let out = c.log_softmax();
            let mut grad_x = vec![0.0; out.len()];
            log_softmax_backward(&out, &c.teacher, &mut grad_x, &c.params()).unwrap();
            for r in 0..c.rows {
                let g = c.row(&c.teacher, r);
                let loss = |x: &[f64]| {
                    ref_log_softmax(x, 1.0).iter().zip(&g).map(|(l, g)| l * g).sum::<f64>()
                };
                let want = numeric_grad(&c.row(&c.student, r), loss);
                assert_close("grad_x", &grad_x[r * c.cols..][..c.cols], &want, 1e-4, 1.0);
            }
        }

        #[test]
        fn cross_entropy_forward_matches_reference(c in cases()) {
            let (loss, grad) = c.cross_entropy();
            for r in 0..c.rows {
                let (z, y) = (c.row(&c.student, r), c.labels[r] as usize);
                assert_close("loss", &loss[r..r + 1], &[ref_cross_entropy(&z, y)], 1e-5, 1.0);
                let mut want = ref_softmax(&z, 1.0);
                want[y] -= 1.0;
                assert_close("grad", &grad[r * c.cols..][..c.cols], &want, 1e-5, 1.0);
            }
        }

        #[test]
        fn cross_entropy_grad_matches_finite_differences(c in cases()) {
            let (_, grad) = c.cross_entropy();
            for r in 0..c.rows {
                let y = c.labels[r] as usize;
                let want = numeric_grad(&c.row(&c.student, r), |z| ref_cross_entropy(z, y));
                assert_close("grad", &grad[r * c.cols..][..c.cols], &want, 1e-4, 1.0);
            }
        }

        #[test]
        fn softmax_kl_forward_matches_reference(c in cases()) {
            assert_softmax_kl_matches_reference(&c);
        }

        #[test]
        fn softmax_kl_grad_matches_finite_differences(c in cases()) {
            let (_, grad) = c.softmax_kl();
            let temp = c.temperature as f64;
            for r in 0..c.rows {
                let t = c.row(&c.teacher, r);
                let want = numeric_grad(&c.row(&c.student, r), |s| ref_softmax_kl(s, &t, temp));
                assert_close("grad", &grad[r * c.cols..][..c.cols], &want, 1e-4, temp);
            }
        }

        // Student and teacher logits both multiplied by T give the softmaxes of T = 1 at
        // temperature T: the loss grows by T² and the gradient by T.
        #[test]
        fn softmax_kl_scales_with_t_squared(c in cases()) {
            let temp = c.temperature;
            let scaled = |x: &[f32]| x.iter().map(|v| v * temp).collect::<Vec<f32>>();
            let base = Case { temperature: 1.0, ..c.clone() };
            let hot = Case { student: scaled(&c.student), teacher: scaled(&c.teacher), ..c.clone() };
            let ((loss1, grad1), (loss_t, grad_t)) = (base.softmax_kl(), hot.softmax_kl());
            let t = temp as f64;
            let want_loss: Vec<f64> = loss1.iter().map(|&l| t * t * l as f64).collect();
            let want_grad: Vec<f64> = grad1.iter().map(|&g| t * g as f64).collect();
            assert_close("loss", &loss_t, &want_loss, 1e-4, t * t);
            assert_close("grad", &grad_t, &want_grad, 1e-4, t);
        }

        #[test]
        fn kd_loss_forward_matches_reference(c in cases()) {
            let (loss, grad) = c.kd_loss();
            let (temp, alpha) = (c.temperature as f64, c.alpha as f64);
            for r in 0..c.rows {
                let (s, t, y) = (c.row(&c.student, r), c.row(&c.teacher, r), c.labels[r] as usize);
                let (ce, kl) = (ref_cross_entropy(&s, y), ref_softmax_kl(&s, &t, temp));
                assert_close("ce", &loss[2 * r..][..1], &[ce], 1e-5, 1.0);
                assert_close("kl", &loss[2 * r + 1..][..1], &[kl], 1e-5, temp * temp);
                let (q1, q, p) = (ref_softmax(&s, 1.0), ref_softmax(&s, temp), ref_softmax(&t, temp));
                let want: Vec<f64> = (0..c.cols)
                    .map(|j| {
                        let g_ce = q1[j] - if j == y { 1.0 } else { 0.0 };
                        (1.0 - alpha) * g_ce + alpha * temp * (q[j] - p[j])
                    })
                    .collect();
                assert_close("grad", &grad[r * c.cols..][..c.cols], &want, 1e-5, temp);
            }
        }

        #[test]
        fn kd_loss_grad_matches_finite_differences(c in cases()) {
            let (_, grad) = c.kd_loss();
            let (temp, alpha) = (c.temperature as f64, c.alpha as f64);
            for r in 0..c.rows {
                let (t, y) = (c.row(&c.teacher, r), c.labels[r] as usize);
                let loss = |s: &[f64]| {
                    (1.0 - alpha) * ref_cross_entropy(s, y) + alpha * ref_softmax_kl(s, &t, temp)
                };
                let want = numeric_grad(&c.row(&c.student, r), loss);
                assert_close("grad", &grad[r * c.cols..][..c.cols], &want, 1e-4, temp);
            }
        }

        // With α = 0 the blend is 1·g_ce + 0·g_kl, which rounds to g_ce exactly.
        #[test]
        fn kd_loss_with_alpha_0_is_cross_entropy(c in cases()) {
            let c = Case { alpha: 0.0, ..c };
            let ((kd_loss, kd_grad), (ce_loss, ce_grad)) = (c.kd_loss(), c.cross_entropy());
            let kd_ce: Vec<f32> = kd_loss.iter().step_by(2).copied().collect();
            prop_assert_eq!(bits(&kd_ce), bits(&ce_loss));
            prop_assert_eq!(bits(&kd_grad), bits(&ce_grad));
        }

        // With α = 1 the gradient and the KL are the softmax-KL's, whatever the labels.
        #[test]
        fn kd_loss_with_alpha_1_ignores_labels(c in cases()) {
            let c = Case { alpha: 1.0, ..c };
            let shifted = Case {
                labels: c.labels.iter().map(|&y| (y + 1) % c.cols as u32).collect(),
                ..c.clone()
            };
            let ((loss, grad), (loss2, grad2)) = (c.kd_loss(), shifted.kd_loss());
            let (kl_loss, kl_grad) = c.softmax_kl();
            let kl = |l: &[f32]| l.iter().skip(1).step_by(2).copied().collect::<Vec<f32>>();
            prop_assert_eq!(bits(&kl(&loss)), bits(&kl_loss));
            prop_assert_eq!(bits(&kl(&loss2)), bits(&kl_loss));
            prop_assert_eq!(bits(&grad), bits(&kl_grad));
            prop_assert_eq!(bits(&grad2), bits(&kl_grad));
        }

        #[test]
        fn dkd_loss_forward_matches_reference(c in cases()) {
            prop_assume!(c.cols >= 2);
            let (loss, grad) = c.dkd_loss();
            let (temp, alpha, beta) = (c.temperature as f64, c.alpha as f64, c.beta as f64);
            for r in 0..c.rows {
                let (s, t, y) = (c.row(&c.student, r), c.row(&c.teacher, r), c.labels[r] as usize);
                let (tckd, nckd) = ref_dkd(&s, &t, y, temp);
                assert_close("ce", &loss[3 * r..][..1], &[ref_cross_entropy(&s, y)], 1e-5, 1.0);
                assert_close("tckd", &loss[3 * r + 1..][..1], &[tckd], 1e-4, temp * temp);
                assert_close("nckd", &loss[3 * r + 2..][..1], &[nckd], 1e-4, temp * temp);
                let total = |s: &[f64]| {
                    let (tckd, nckd) = ref_dkd(s, &t, y, temp);
                    ref_cross_entropy(s, y) + alpha * tckd + beta * nckd
                };
                let want = numeric_grad(&s, total);
                let scale = temp * (1.0 + alpha + beta);
                assert_close("grad", &grad[r * c.cols..][..c.cols], &want, 1e-4, scale);
            }
        }

        // Zhao et al.'s decomposition: KL(p ‖ q) = TCKD + (1 - p_y)·NCKD, all times T².
        #[test]
        fn dkd_terms_sum_to_the_softmax_kl(c in cases()) {
            prop_assume!(c.cols >= 2);
            let ((dkd, _), (kl, _)) = (c.dkd_loss(), c.softmax_kl());
            let temp = c.temperature as f64;
            for r in 0..c.rows {
                let (t, y) = (c.row(&c.teacher, r), c.labels[r] as usize);
                let p_y = ref_softmax(&t, temp)[y];
                let sum = dkd[3 * r + 1] as f64 + (1.0 - p_y) * dkd[3 * r + 2] as f64;
                assert_close("kl", &[sum as f32], &[kl[r] as f64], 1e-4, temp * temp);
            }
        }

        // With α = β = 0 the gradient is g_ce + T·0, which rounds to g_ce exactly.
        #[test]
        fn dkd_loss_with_zero_weights_is_cross_entropy(c in cases()) {
            prop_assume!(c.cols >= 2);
            let c = Case { alpha: 0.0, beta: 0.0, ..c };
            let ((dkd_loss, dkd_grad), (ce_loss, ce_grad)) = (c.dkd_loss(), c.cross_entropy());
            let dkd_ce: Vec<f32> = dkd_loss.iter().step_by(3).copied().collect();
            prop_assert_eq!(bits(&dkd_ce), bits(&ce_loss));
            prop_assert_eq!(bits(&dkd_grad), bits(&ce_grad));
        }

        // Values from {-2, ..., 2} so that most rows hold ties.
        #[test]
        fn argmax_rows_matches_reference(
            (rows, cols, x) in (1usize..9, 1usize..20).prop_flat_map(|(rows, cols)| {
                (Just(rows), Just(cols), vec((-2i32..3).prop_map(|v| v as f32), rows * cols))
            })
        ) {
            let mut out = vec![0; rows];
            argmax_rows(&x, &mut out, &RowParams::new(rows, cols).unwrap()).unwrap();
            for (r, &got) in out.iter().enumerate() {
                let row = &x[r * cols..][..cols];
                let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let first = row.iter().position(|&v| v == max).unwrap();
                prop_assert_eq!(got as usize, first);
            }
        }
    }

    // logits [0, ln 3]: exp = [1, 3], sum 4, so softmax = [1/4, 3/4] and
    // log_softmax = [-ln 4, ln 3 - ln 4].
    #[test]
    fn log_softmax_and_cross_entropy_by_hand() {
        let p = RowParams::new(1, 2).unwrap();
        let x = [0.0, 3f32.ln()];
        let mut out = [0.0; 2];
        log_softmax_forward(&x, &mut out, &p).unwrap();
        assert_close("out", &out, &[-(4f64.ln()), (0.75f64).ln()], 1e-6, 1.0);

        // Backward with grad_out [1, 0]: Σ g = 1, so grad_x = [1 - 1/4, 0 - 3/4].
        let mut grad_x = [0.0; 2];
        log_softmax_backward(&out, &[1.0, 0.0], &mut grad_x, &p).unwrap();
        assert_close("grad_x", &grad_x, &[0.75, -0.75], 1e-6, 1.0);

        // Label 1: loss = -ln(3/4) = ln(4/3), grad = [1/4, 3/4 - 1].
        // Label 0: loss = -ln(1/4) = ln 4,    grad = [1/4 - 1, 3/4].
        let (mut loss, mut grad) = ([0.0; 2], [0.0; 4]);
        let (x2, p2) = (
            [0.0, 3f32.ln(), 0.0, 3f32.ln()],
            RowParams::new(2, 2).unwrap(),
        );
        cross_entropy_forward(&x2, &[1, 0], &mut loss, &mut grad, &p2).unwrap();
        assert_close("loss", &loss, &[(4.0f64 / 3.0).ln(), 4f64.ln()], 1e-6, 1.0);
        assert_close("grad", &grad, &[0.25, -0.25, -0.75, 0.75], 1e-6, 1.0);
    }

    // Teacher [0, 2 ln 3] at T = 2 is p = softmax([0, ln 3]) = [1/4, 3/4]; student [0, 0]
    // is q = [1/2, 1/2] at any T.
    // KL(p ‖ q) = 1/4 ln((1/4)/(1/2)) + 3/4 ln((3/4)/(1/2)) = -1/4 ln 2 + 3/4 ln(3/2)
    //           ≈ 0.130812; loss = T² KL = 4 KL; grad = T (q - p) = 2 [1/4, -1/4].
    #[test]
    fn softmax_kl_by_hand() {
        let kl = -0.25 * 2f64.ln() + 0.75 * 1.5f64.ln();
        let (mut loss, mut grad) = ([0.0], [0.0; 2]);
        let p = RowParams::new(1, 2).unwrap().with_temperature(2.0);
        let (s, t) = ([0.0, 0.0], [0.0, 2.0 * 3f32.ln()]);
        softmax_kl_forward(&s, &t, &mut loss, &mut grad, &p).unwrap();
        assert_close("loss", &loss, &[4.0 * kl], 1e-6, 1.0);
        assert_close("grad", &grad, &[0.5, -0.5], 1e-6, 1.0);

        // A student equal to its teacher: KL = 0 exactly, since log p_j - log q_j = 0.
        softmax_kl_forward(&[1.0, -3.0], &[1.0, -3.0], &mut loss, &mut grad, &p).unwrap();
        assert_eq!((loss, grad), ([0.0], [0.0; 2]));
    }

    // The rows of the two cases above, label 1, α = 1/2, T = 2:
    // CE = -ln softmax([0, 0])_1 = ln 2, KL term = 4 · 0.130812;
    // grad = 1/2 ([1/2, 1/2] - [0, 1]) + 1/2 · 2 ([1/2, 1/2] - [1/4, 3/4])
    //      = [1/4, -1/4] + [1/4, -1/4] = [1/2, -1/2].
    #[test]
    fn kd_loss_by_hand() {
        let kl = -0.25 * 2f64.ln() + 0.75 * 1.5f64.ln();
        let (mut loss, mut grad) = ([0.0; 2], [0.0; 2]);
        let p = RowParams::new(1, 2)
            .unwrap()
            .with_temperature(2.0)
            .with_alpha(0.5);
        let (s, t) = ([0.0, 0.0], [0.0, 2.0 * 3f32.ln()]);
        kd_loss_forward(&s, &t, &[1], &mut loss, &mut grad, &p).unwrap();
        assert_close("loss", &loss, &[2f64.ln(), 4.0 * kl], 1e-6, 1.0);
        assert_close("grad", &grad, &[0.5, -0.5], 1e-6, 1.0);
    }

    // s = 0: q = (1/3, 1/3, 1/3); t = ln (4, 3, 1): p = (4, 3, 1) / 8; label 0, T = 1.
    // TCKD = KL((1/2, 1/2) ‖ (1/3, 2/3)); NCKD = KL((3/4, 1/4) ‖ (1/2, 1/2)).
    // grad (α = 1, β = 2): column 0: 1/3 - 1 + (1/3 - 1/2) = -5/6; columns 1, 2:
    // 1/3 + (1/2)(1/2 - 1/3) + 2 (1/2 - 3/4 or 1/4) = -1/12 or 11/12.
    #[test]
    fn dkd_loss_by_hand() {
        let tckd = 0.5 * 1.5f64.ln() + 0.5 * 0.75f64.ln();
        let nckd = 0.75 * 1.5f64.ln() + 0.25 * 0.5f64.ln();
        let (mut loss, mut grad) = ([0.0; 3], [0.0; 3]);
        let p = RowParams::new(1, 3).unwrap().with_alpha(1.0).with_beta(2.0);
        let (s, t) = ([0.0; 3], [4f32.ln(), 3f32.ln(), 0.0]);
        dkd_loss_forward(&s, &t, &[0], &mut loss, &mut grad, &p).unwrap();
        assert_close("loss", &loss, &[3f64.ln(), tckd, nckd], 1e-6, 1.0);
        let want = [-5.0 / 6.0, -1.0 / 12.0, 11.0 / 12.0];
        assert_close("grad", &grad, &want, 1e-6, 1.0);
    }

    #[test]
    fn argmax_rows_by_hand() {
        let mut out = [9; 3];
        let x = [[1.0, 3.0, 3.0, 2.0], [-1.0; 4], [0.0, -5.0, 7.0, 7.5]];
        argmax_rows(x.as_flattened(), &mut out, &RowParams::new(3, 4).unwrap()).unwrap();
        // The first of the tied 3s; a row all tied goes to column 0; a plain maximum.
        assert_eq!(out, [1, 0, 3]);
    }

    // exp(88.8) already overflows f32, so logits near ±1e4 only survive in the shifted
    // form. Rows sit at +1e4, at -1e4, or span both; the reference is taken in f64 on
    // the same f32 logits moved back by the offset, where no shift is needed.
    // A -inf teacher logit is a probability of exactly 0: its term is dropped and the
    // row stays finite. A NaN or +inf one makes every p NaN (inf - inf): the loss must
    // say NaN, not drop every term and report a perfect 0.
    #[test]
    fn softmax_kl_drops_zero_probabilities_but_not_nan() {
        let one_row = |teacher: [f32; 3]| Case {
            rows: 1,
            cols: 3,
            student: vec![0.5, -1.0, 2.0],
            teacher: teacher.to_vec(),
            labels: vec![0],
            temperature: 2.0,
            alpha: 0.5,
            beta: 1.0,
        };
        let c = one_row([f32::NEG_INFINITY, 1.0, -1.0]);
        let (loss, grad) = c.softmax_kl();
        let (s, t) = (f64s(&c.student), f64s(&c.teacher));
        assert_close("loss", &loss, &[ref_softmax_kl(&s, &t, 2.0)], 1e-5, 4.0);
        assert!(grad.iter().all(|g| g.is_finite()), "{grad:?}");
        for bad in [f32::NAN, f32::INFINITY] {
            let c = one_row([bad, 1.0, -1.0]);
            let ((loss, _), (kd, _)) = (c.softmax_kl(), c.kd_loss());
            assert!(loss[0].is_nan(), "teacher logit {bad}: loss {}", loss[0]);
            assert!(kd[1].is_nan(), "teacher logit {bad}: kd kl {}", kd[1]);
        }
    }

    #[test]
    fn softmax_kl_stays_finite_near_1e4() {
        let s = [0.5, -1.25, 3.0, 0.0, 2.0, -2.0];
        let t = [-0.75, 2.5, 1.0, 0.0, -3.0, 1.5];
        for offset in [1e4f32, -1e4] {
            let shift = |x: &[f32]| x.iter().map(|v| v + offset).collect::<Vec<f32>>();
            let back = |x: &[f32]| {
                x.iter()
                    .map(|&v| v as f64 - offset as f64)
                    .collect::<Vec<_>>()
            };
            let c = Case {
                rows: 2,
                cols: 3,
                student: shift(&s),
                teacher: shift(&t),
                labels: vec![2, 0],
                temperature: 2.0,
                alpha: 0.25,
                beta: 1.0,
            };
            let (loss, grad) = c.softmax_kl();
            let (kd, kd_grad) = c.kd_loss();
            let (ce, _) = c.cross_entropy();
            for r in 0..2 {
                let (sr, tr) = (
                    back(&c.student[r * 3..][..3]),
                    back(&c.teacher[r * 3..][..3]),
                );
                let kl = ref_softmax_kl(&sr, &tr, 2.0);
                let ce_ref = ref_cross_entropy(&sr, c.labels[r] as usize);
                assert_close("kl", &loss[r..r + 1], &[kl], 1e-5, 4.0);
                assert_close("kd kl", &kd[2 * r + 1..][..1], &[kl], 1e-5, 4.0);
                assert_close("ce", &ce[r..r + 1], &[ce_ref], 1e-5, 1.0);
                assert_close("kd ce", &kd[2 * r..][..1], &[ce_ref], 1e-5, 1.0);
            }
            assert!(grad.iter().chain(&kd_grad).all(|g| g.is_finite()));
        }

        // A row spanning both ends at T = 1: p ≈ [0, 1, 0] (exp(-2e4) underflows to 0 and
        // its term is dropped), log q_1 = -2e4, so KL = 1 · (0 - (-2e4)) = 2e4 and the
        // gradient is q - p = [1, -1, 0].
        let (s, t) = ([1e4, -1e4, 0.0], [-1e4, 1e4, 5.0]);
        let (mut loss, mut grad) = ([0.0], [0.0; 3]);
        softmax_kl_forward(&s, &t, &mut loss, &mut grad, &RowParams::new(1, 3).unwrap()).unwrap();
        assert_close(
            "loss",
            &loss,
            &[ref_softmax_kl(&f64s(&s), &f64s(&t), 1.0)],
            1e-6,
            1.0,
        );
        assert_close("loss", &loss, &[2e4], 1e-6, 1.0);
        assert_close("grad", &grad, &[1.0, -1.0, 0.0], 1e-6, 1.0);
    }

    // Rows of up to KL_GROUP_VALUES logits go by transposed groups (1023 and 1024: one
    // row per group), wider ones one by one through the column helpers (1025, 1500).
    #[test]
    fn softmax_kl_matches_reference_around_the_group_width() {
        let mut rng = StdRng::seed_from_u64(23);
        for cols in [1023, KL_GROUP_VALUES, 1025, 1500] {
            let rows = 3;
            let mut logits = || {
                (0..rows * cols)
                    .map(|_| rng.random_range(-5.0f32..5.0))
                    .collect()
            };
            let c = Case {
                rows,
                cols,
                student: logits(),
                teacher: logits(),
                labels: vec![0; rows],
                temperature: 2.0,
                alpha: 0.5,
                beta: 1.0,
            };
            assert_softmax_kl_matches_reference(&c);
        }
    }

    /// A case big enough for several rayon blocks: 2500 rows of 13 make two blocks of
    /// 1260 rows (16384 / 13) and a short one.
    fn big_case() -> Case {
        let (rows, cols) = (2500, 13);
        let mut rng = StdRng::seed_from_u64(17);
        let mut logits = || {
            (0..rows * cols)
                .map(|_| rng.random_range(-6.0f32..6.0))
                .collect()
        };
        let (student, teacher) = (logits(), logits());
        let labels = (0..rows).map(|r| (r * 7 % cols) as u32).collect();
        Case {
            rows,
            cols,
            student,
            teacher,
            labels,
            temperature: 3.0,
            alpha: 0.7,
            beta: 1.0,
        }
    }

    /// Every kernel's outputs over the whole case, flattened to bits.
    fn all_outputs(c: &Case) -> Vec<Vec<u32>> {
        let out = c.log_softmax();
        let mut grad_x = vec![0.0; out.len()];
        log_softmax_backward(&out, &c.teacher, &mut grad_x, &c.params()).unwrap();
        let mut argmax = vec![0; c.rows];
        argmax_rows(&c.student, &mut argmax, &c.params()).unwrap();
        let (ce, ce_grad) = c.cross_entropy();
        let (kl, kl_grad) = c.softmax_kl();
        let (kd, kd_grad) = c.kd_loss();
        let outs = [out, grad_x, ce, ce_grad, kl, kl_grad, kd, kd_grad];
        let mut all: Vec<Vec<u32>> = outs.iter().map(|o| bits(o)).collect();
        all.push(argmax);
        all
    }

    #[test]
    fn row_kernels_are_deterministic() {
        let c = big_case();
        assert_eq!(all_outputs(&c), all_outputs(&c));
    }

    // The parallel path over blocks gives each row exactly what the serial path gives
    // that row on its own.
    #[test]
    fn row_kernels_blocks_match_rows_one_by_one() {
        let c = big_case();
        let whole = all_outputs(&c);
        let mut by_row: Vec<Vec<u32>> = vec![Vec::new(); whole.len()];
        for r in 0..c.rows {
            let one = Case {
                rows: 1,
                student: c.student[r * c.cols..][..c.cols].to_vec(),
                teacher: c.teacher[r * c.cols..][..c.cols].to_vec(),
                labels: vec![c.labels[r]],
                ..c.clone()
            };
            for (acc, part) in by_row.iter_mut().zip(all_outputs(&one)) {
                acc.extend(part);
            }
        }
        assert_eq!(whole, by_row);
    }

    #[test]
    fn row_loss_mean_by_hand() {
        // One column [1, 2, 6]: mean 3. Two columns [[1, 10], [3, 30]]: means [2, 20],
        // and at alpha 0.25 the loss is 0.75 · 2 + 0.25 · 20 = 6.5.
        let (mut loss, mut means) = ([f32::NAN], [f32::NAN]);
        row_loss_mean(
            &[1.0, 2.0, 6.0],
            &mut loss,
            &mut means,
            &RowParams::new(3, 1).unwrap(),
        )
        .unwrap();
        assert_eq!((loss, means), ([3.0], [3.0]));
        let (mut loss, mut means) = ([f32::NAN], [f32::NAN; 2]);
        let p = RowParams::new(2, 2).unwrap().with_alpha(0.25);
        row_loss_mean(&[1.0, 10.0, 3.0, 30.0], &mut loss, &mut means, &p).unwrap();
        assert_eq!((loss, means), ([6.5], [2.0, 20.0]));
        // Three columns [[1, 2, 4], [3, 6, 0]]: means [2, 4, 2]; at alpha 0.5, beta 2 the
        // loss is 2 + 0.5 · 4 + 2 · 2 = 8.
        let (mut loss, mut means) = ([f32::NAN], [f32::NAN; 3]);
        let p = RowParams::new(2, 3).unwrap().with_alpha(0.5).with_beta(2.0);
        row_loss_mean(&[1.0, 2.0, 4.0, 3.0, 6.0, 0.0], &mut loss, &mut means, &p).unwrap();
        assert_eq!((loss, means), ([8.0], [2.0, 4.0, 2.0]));
    }

    #[test]
    fn row_loss_backward_scales_by_upstream_over_rows() {
        // grad_rows [2, -4] · upstream 3 · (1 / 2 rows) = [3, -6].
        let mut grad = [f32::NAN; 2];
        let p = ElementwiseParams::with_alpha(2, 0.5).unwrap();
        row_loss_backward(&[2.0, -4.0], &[3.0], &mut grad, &p).unwrap();
        assert_eq!(grad, [3.0, -6.0]);
    }
}
