//! The training loop, shared by plain training and distillation: they differ only in
//! the loss. Each epoch ends with an evaluation on the held-out validation images, an
//! atomically written checkpoint (parameters, optimizer state, schedule), then a line in
//! the metrics file, so an interrupted run loses at most the epoch in progress and
//! `--resume` continues it exactly; a resume first makes the metrics file agree with
//! the checkpoint (one line for each epoch it holds, in order, none torn). The test set
//! is evaluated once, after the last epoch.
//!
//! The student and the teacher are any [`Module`]: a [`models::Network`] built from a
//! description, or a module of the caller's own.
//!
//! On the GPU a step stages its inputs, records its kernels and ends with one submit
//! (`Device::submit`); every 16 steps that submit also carries the read of the losses.
//! Nothing else waits for the device until the epoch's evaluation.

use crate::data::{Batch, Batching, Dataset, Mnist, IMAGE_SIDE, NUM_CLASSES};
use crate::error::{io, DistillError, Result};
use crate::optim::{Optimizer, OptimizerConfig, Schedule, ScheduleKind};
use crate::progress::{say, EpochProgress, ProgressMode};
use engine::{no_grad, Device, Labels, QueueStats, Tensor};
use models::checkpoint::{self, Checkpoint};
use models::{Mode, Module, MNIST_INPUT};
use serde_json::json;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// How to train one network.
#[derive(Clone, Debug)]
pub struct TrainOptions {
    /// The epoch count to reach, at least 1; a resumed run counts the epochs already done.
    pub epochs: usize,
    /// Training examples per optimizer step, at least 1; the last batch may be smaller.
    pub batch_size: usize,
    /// The optimizer and its hyperparameters; `lr` is the schedule's base rate.
    pub optimizer: OptimizerConfig,
    /// How the learning rate changes over the run's steps.
    pub schedule: Schedule,
    /// Seeds the shuffle, the jitter and the dropout masks; saved in the checkpoint.
    pub seed: u64,
    /// Random ±2-pixel shifts of the training images.
    pub jitter: bool,
    /// The checkpoint written after every epoch; metrics go beside it.
    pub out: PathBuf,
    /// Continue from `out` when it exists.
    pub resume: bool,
    /// What the run prints while it trains.
    pub progress: ProgressMode,
}

impl TrainOptions {
    /// The `distill train` defaults: 3 epochs, batch 64, Adam at 1e-3, a constant rate,
    /// seed 0, no jitter, no resume, progress bars on a terminal; the checkpoint written
    /// to `out`.
    pub fn new(out: impl Into<PathBuf>) -> TrainOptions {
        TrainOptions {
            epochs: 3,
            batch_size: 64,
            optimizer: OptimizerConfig::new(crate::optim::OptimizerKind::Adam, 1e-3),
            schedule: Schedule::CONSTANT,
            seed: 0,
            jitter: false,
            out: out.into(),
            resume: false,
            progress: ProgressMode::Auto,
        }
    }
}

/// `x` as JSON by its shortest decimal: `0.9`, not the `0.8999999761581421` that
/// widening the `f32` to `f64` gives. Non-finite values become `null`, as in `serde_json`.
pub fn json_f32(x: f32) -> serde_json::Value {
    x.to_string()
        .parse::<f64>()
        .map_or(serde_json::Value::Null, Into::into)
}

/// The distillation loss a student trains with (`--loss`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Loss {
    /// Hinton et al. 2015: `(1 - α)·CE + α·T²·KL(softmax(t/T) ‖ softmax(s/T))`, `α` in
    /// `[0, 1]`.
    Kd,
    /// Decoupled KD (Zhao et al. 2022): `CE + α·T²·TCKD + β·T²·NCKD`, the KL split by
    /// the label into its target-class and non-target terms, `α, β >= 0`.
    Dkd {
        /// The weight of the non-target term.
        beta: f32,
    },
}

impl Loss {
    /// Zhao et al.'s weights for CIFAR-100: α = 1, β = 8. (They also ramp the DKD terms
    /// in linearly over the first 20 of 240 epochs; that warm-up is not implemented.)
    pub const DKD_ALPHA: f32 = 1.0;
    /// See [`Loss::DKD_ALPHA`].
    pub const DKD_BETA: f32 = 8.0;

    /// The loss of `--loss NAME` and `--beta`: `kd` takes no β, `dkd` defaults it to
    /// [`Loss::DKD_BETA`].
    pub fn from_flags(name: &str, beta: Option<f32>) -> Result<Loss> {
        match (name, beta) {
            ("kd", None) => Ok(Loss::Kd),
            ("kd", Some(_)) => Err(DistillError::Config(
                "--beta weighs decoupled KD's non-target term; it needs --loss dkd".into(),
            )),
            ("dkd", beta) => Ok(Loss::Dkd {
                beta: beta.unwrap_or(Loss::DKD_BETA),
            }),
            (other, _) => Err(DistillError::Config(format!(
                "--loss must be kd or dkd, got `{other}`"
            ))),
        }
    }

    /// `kd` or `dkd`, as `--loss` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Loss::Kd => "kd",
            Loss::Dkd { .. } => "dkd",
        }
    }

    /// The names of its terms, in the order of the loss op's `parts`.
    pub fn part_names(self) -> &'static [&'static str] {
        match self {
            Loss::Kd => &["ce", "kl"],
            Loss::Dkd { .. } => &["ce", "tckd", "nckd"],
        }
    }

    /// What names of runs and default folders add for the loss: nothing for KD,
    /// `-dkd-b8` for decoupled KD at β = 8 (so runs of several betas never share a name).
    pub fn suffix(self) -> String {
        match self {
            Loss::Kd => String::new(),
            Loss::Dkd { beta } => format!("-dkd-b{beta}"),
        }
    }

    /// Its JSON form in reports and sweep fingerprints: `{"name": "kd"}` or `{"name":
    /// "dkd", "beta": 8.0}`.
    pub fn to_json(self) -> serde_json::Value {
        match self {
            Loss::Kd => json!({ "name": "kd" }),
            Loss::Dkd { beta } => json!({ "name": "dkd", "beta": json_f32(beta) }),
        }
    }

    /// How reports name it: `KD` or `DKD (beta = 8)`.
    pub fn describe(self) -> String {
        match self {
            Loss::Kd => "KD".into(),
            Loss::Dkd { beta } => format!("DKD (beta = {beta})"),
        }
    }
}

/// Distillation from a frozen teacher: `(1 - alpha)·CE + alpha·T²·KL`, or decoupled KD
/// (see [`Loss`]).
pub struct Distillation<'a> {
    /// Any module whose forward gives `(n, 10)` logits, on the training device.
    pub teacher: &'a dyn Module,
    /// The softening temperature `T > 0`.
    pub temperature: f32,
    /// With [`Loss::Kd`], the weight of the KL term, in `[0, 1]`: 0 is plain training on
    /// the labels. With [`Loss::Dkd`], the weight of the target-class term, `>= 0`.
    pub alpha: f32,
    /// Which loss: [`Loss::Kd`] unless set.
    pub loss: Loss,
    /// Compute the teacher's logits once for the whole training set when the images
    /// are not augmented (on by default; off runs the teacher on every batch). With
    /// augmentation the teacher always runs on the very image the student sees (a
    /// consistent teacher, as Beyer et al. 2022 recommend).
    pub cache_teacher: bool,
    /// The teacher's logits for the training set, `(len, classes)` on the training
    /// device, when the caller computed them already ([`logits_for`]): a study or a sweep
    /// computes them once for all its runs. Used only where the cache would be.
    pub logits: Option<Tensor>,
}

impl<'a> Distillation<'a> {
    /// Distillation from `teacher` with `cache_teacher` on; errors when
    /// [`Distillation::check`] does.
    pub fn new(teacher: &'a dyn Module, temperature: f32, alpha: f32) -> Result<Distillation<'a>> {
        Distillation::with_loss(Loss::Kd, teacher, temperature, alpha)
    }

    /// Distillation with `loss` (`alpha` as [`Distillation::alpha`] says), `cache_teacher`
    /// on; errors when [`Distillation::check`] does.
    pub fn with_loss(
        loss: Loss,
        teacher: &'a dyn Module,
        temperature: f32,
        alpha: f32,
    ) -> Result<Distillation<'a>> {
        Distillation::check(temperature, alpha, loss)?;
        Ok(Distillation {
            teacher,
            temperature,
            alpha,
            loss,
            cache_teacher: true,
            logits: None,
        })
    }

    /// Checks the temperature and the weights before anything is loaded.
    pub fn check(temperature: f32, alpha: f32, loss: Loss) -> Result<()> {
        if !(temperature > 0.0 && temperature.is_finite()) {
            return Err(DistillError::Config(format!(
                "--T must be > 0, got {temperature}"
            )));
        }
        let weight = |flag: &str, w: f32| match w >= 0.0 && w.is_finite() {
            true => Ok(()),
            false => Err(DistillError::Config(format!(
                "{flag} must be >= 0 and finite with --loss dkd, got {w}"
            ))),
        };
        match loss {
            Loss::Kd if !(0.0..=1.0).contains(&alpha) => Err(DistillError::Config(format!(
                "--alpha must be in [0, 1], got {alpha}"
            ))),
            Loss::Kd => Ok(()),
            Loss::Dkd { beta } => weight("--alpha", alpha).and(weight("--beta", beta)),
        }
    }
}

/// Results on a labelled set (validation or test).
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluation {
    /// Fraction of examples classified correctly, in `[0, 1]`.
    pub accuracy: f64,
    /// Examples misclassified.
    pub errors: usize,
    /// Examples seen.
    pub total: usize,
    /// Mean cross-entropy per example.
    pub loss: f64,
    /// Wall-clock seconds the forward passes took.
    pub seconds: f64,
}

/// A module's logits for every image of a set, in order, read back to the host.
#[derive(Clone, Debug, PartialEq)]
pub struct Predictions {
    /// `(images, classes)` row-major.
    pub logits: Vec<f32>,
    /// Logits per image.
    pub classes: usize,
    /// Wall-clock seconds of the forward passes and the one read.
    pub seconds: f64,
}

impl Predictions {
    /// Accuracy, errors and mean cross-entropy against `data`'s labels (computed on the
    /// host in f64).
    pub fn evaluate(&self, data: &Dataset) -> Evaluation {
        let (mut correct, mut loss) = (0usize, 0.0f64);
        for (row, &label) in self.logits.chunks_exact(self.classes).zip(data.labels()) {
            let label = label as usize;
            let log_p = crate::calibration::log_softmax(row);
            loss -= log_p.get(label).copied().unwrap_or(f64::NAN);
            // The first largest logit, as `argmax_rows`.
            let top = (0..row.len()).fold(0, |best, i| if row[i] > row[best] { i } else { best });
            correct += usize::from(top == label);
        }
        let total = data.len();
        Evaluation {
            accuracy: correct as f64 / total.max(1) as f64,
            errors: total - correct,
            total,
            loss: loss / total.max(1) as f64,
            seconds: self.seconds,
        }
    }
}

/// One epoch of [`train`]; [`EpochMetrics::to_json`] is its line in the metrics file.
#[derive(Clone, Debug, PartialEq)]
pub struct EpochMetrics {
    /// The epoch, counted from 1.
    pub epoch: usize,
    /// Optimizer steps in the epoch.
    pub steps: usize,
    /// Mean training loss per example, as the optimizer saw it (with dropout, jitter).
    pub train_loss: f64,
    /// The mean of each term of a distillation run's loss, by name: `ce` and `kl`, or
    /// `ce`, `tckd` and `nckd` (the `T²`-scaled terms); empty without distillation.
    pub train_parts: Vec<(&'static str, f64)>,
    /// The learning rate of the epoch's last step.
    pub lr: f32,
    /// The evaluation on the validation images after the epoch; `None` without any.
    pub val: Option<Evaluation>,
    /// The test-set evaluation, after the last epoch only.
    pub test: Option<Evaluation>,
    /// Wall-clock seconds of the training steps, the evaluation not included.
    pub epoch_seconds: f64,
    /// Training examples per second over `epoch_seconds`.
    pub samples_per_second: f64,
    /// On a GPU: the submits and dispatches of the epoch's training steps (the
    /// evaluation after them not included).
    pub queue: Option<QueueStats>,
}

impl EpochMetrics {
    /// The metrics-file line: the loss's terms (`train_ce` and `train_kl`, or
    /// `train_ce`, `train_tckd` and `train_nckd`), the `val_` and `test_` results and
    /// the GPU counts only when present.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = json!({
            "epoch": self.epoch,
            "train_loss": self.train_loss,
            "lr": json_f32(self.lr),
            "epoch_seconds": self.epoch_seconds,
            "samples_per_second": self.samples_per_second,
            "steps": self.steps,
        });
        for (prefix, e) in [("val", &self.val), ("test", &self.test)] {
            if let Some(e) = e {
                v[format!("{prefix}_accuracy")] = json!(e.accuracy);
                v[format!("{prefix}_errors")] = json!(e.errors);
                v[format!("{prefix}_loss")] = json!(e.loss);
            }
        }
        for (name, mean) in &self.train_parts {
            v[format!("train_{name}")] = json!(mean);
        }
        if let Some(q) = self.queue {
            v["gpu_submits"] = json!(q.submits);
            v["gpu_dispatches"] = json!(q.dispatches);
        }
        v
    }
}

/// What [`train`] did: one entry per epoch it ran, and the test set's logits at the end.
pub struct TrainReport {
    /// The epochs this call ran, in order; not those a resumed checkpoint had done.
    pub epochs: Vec<EpochMetrics>,
    /// Seconds spent training in this process (resumed epochs not counted).
    pub train_seconds: f64,
    /// The trained module's test-set logits, after the last epoch; `None` when this call
    /// ran no epoch.
    pub test: Option<Predictions>,
}

impl TrainReport {
    /// The test evaluation after the last epoch; `None` when this call ran no epoch.
    pub fn final_test(&self) -> Option<&Evaluation> {
        self.epochs.last().and_then(|m| m.test.as_ref())
    }

    /// Steps, and on a GPU the submits and dispatches, of all the training steps run.
    pub fn queue(&self) -> (usize, Option<QueueStats>) {
        let steps = self.epochs.iter().map(|m| m.steps).sum();
        let queue = self
            .epochs
            .iter()
            .filter_map(|m| m.queue)
            .reduce(|a, b| QueueStats {
                submits: a.submits + b.submits,
                dispatches: a.dispatches + b.dispatches,
            });
        (steps, queue)
    }
}

/// How messages name a module: its description's name, else the checkpoint's stem.
pub fn model_name(module: &dyn Module, out: &Path) -> String {
    match module.spec() {
        Some(spec) => spec.name.clone(),
        None => out
            .file_stem()
            .map_or("model".into(), |s| s.to_string_lossy().into_owned()),
    }
}

/// `teacher.safetensors` -> `teacher.metrics.jsonl`.
pub fn metrics_path(checkpoint: &Path) -> PathBuf {
    checkpoint.with_extension("metrics.jsonl")
}

/// Where the teacher's logits for a training batch come from.
enum TeacherLogits<'a> {
    /// Computed once for the whole training set, `(len, 10)` on the training device,
    /// reused every epoch: each batch gathers its rows there.
    Cached(Tensor),
    /// Run per batch, on the augmented images.
    Live(&'a dyn Module),
}

/// Losses read back every this many steps: on the GPU a read waits for the queue.
const READ_EVERY: usize = 16;

/// Trains `student` on `device` (where its parameters live) as `opts` says, with the
/// labels alone or, with `kd`, distilled from a teacher.
pub fn train(
    opts: &TrainOptions,
    student: &dyn Module,
    data: &Mnist,
    device: &Device,
    kd: Option<&Distillation>,
) -> Result<TrainReport> {
    validate(opts)?;
    check_fits(student, "the student")?;
    if let Some(kd) = kd {
        check_fits(kd.teacher, "the teacher")?;
    }
    let name = model_name(student, &opts.out);
    let (mut optimizer, done, last_line) = start(opts, student, data, kd, &name)?;
    let params = student.parameters();
    let teacher = match kd {
        // NOTE: without augmentation the teacher sees the same image every epoch, so its
        // logits are computed once instead of once per batch per epoch.
        Some(kd) if !opts.jitter && kd.cache_teacher => {
            Some(TeacherLogits::Cached(match &kd.logits {
                Some(logits) if logits.shape() == [data.train.len(), NUM_CLASSES] => logits.clone(),
                Some(logits) => {
                    return Err(DistillError::Config(format!(
                        "the teacher's logits given have shape {:?}, the training set \
                         needs ({}, {NUM_CLASSES})",
                        logits.shape(),
                        data.train.len()
                    )))
                }
                None => {
                    say(
                        opts.progress,
                        "computing the teacher's logits for the training set once",
                    );
                    logits_for(kd.teacher, &data.train, 1000, device)?
                }
            }))
        }
        Some(kd) => Some(TeacherLogits::Live(kd.teacher)),
        None => None,
    };
    let metrics_file = metrics_path(&opts.out);
    match last_line {
        // A fresh run starts a fresh metrics file.
        None => std::fs::write(&metrics_file, "").map_err(io(&metrics_file))?,
        Some(line) => agree_with_checkpoint(&metrics_file, done, &line)?,
    }
    let steps_per_epoch = data.train.len().div_ceil(opts.batch_size);
    let total_steps = steps_per_epoch * opts.epochs;
    let base_lr = opts.optimizer.lr;
    let mut epochs = Vec::new();
    let mut test = None;
    let start_time = Instant::now();
    let mut batch = Batch::default();
    for epoch in done + 1..=opts.epochs {
        let t0 = Instant::now();
        let queue0 = device.queue_stats();
        let label = format!("{name} epoch {epoch}/{}", opts.epochs);
        let mut bar = EpochProgress::new(opts.progress, label, data.train.len());
        let batching = Batching::train(opts.batch_size, opts.seed).with_jitter(opts.jitter);
        let mut batches = data.train.batches(batching, epoch as u64)?;
        let mut losses = LossLog::default();
        let mut step = 0u32;
        let mut lr = base_lr;
        while batches.next_into(&mut batch) {
            let n = batch.len();
            // Staged with the batch: none of these uploads waits for the device.
            let x = Tensor::from_vec(
                batch.images.clone(),
                &[n, 1, IMAGE_SIDE, IMAGE_SIDE],
                device,
            )?;
            let y = Labels::new(&batch.labels, device)?;
            let seed = step_seed(opts.seed, epoch, step);
            let logits = student.forward(&x, Mode::Train { seed })?;
            let (loss, parts) = match (&teacher, kd) {
                (Some(teacher), Some(kd)) => {
                    let t_logits = teacher_batch(teacher, &batch, &x, device)?;
                    let (t, a) = (kd.temperature, kd.alpha);
                    let out = match kd.loss {
                        Loss::Kd => logits.kd_loss(&t_logits, &y, t, a)?,
                        Loss::Dkd { beta } => logits.dkd_loss(&t_logits, &y, t, a, beta)?,
                    };
                    (out.loss, Some(out.parts))
                }
                _ => (logits.cross_entropy(&y)?, None),
            };
            let grads = loss.backward()?;
            // The rate goes into the update kernel's params: no extra work on either device.
            lr = opts.schedule.lr(
                base_lr,
                optimizer.steps() as usize,
                total_steps,
                steps_per_epoch,
            );
            optimizer.set_lr(lr);
            optimizer.step(&params, &grads)?;
            losses.push(n, loss.detach(), parts);
            step += 1;
            if losses.len() == READ_EVERY || batches.len() == 0 {
                // The read submits the step's work with it.
                let (seen, mean) = losses.drain()?;
                bar.advance(seen, mean);
            } else {
                device.submit();
            }
        }
        let queue = device
            .queue_stats()
            .zip(queue0)
            .map(|(now, then)| now - then);
        bar.finish();
        let epoch_seconds = t0.elapsed().as_secs_f64();
        let val = match data.val.is_empty() {
            true => None,
            false => Some(evaluate(student, &data.val, 1000, device)?),
        };
        if epoch == opts.epochs {
            test = Some(predict(student, &data.test, 1000, device)?);
        }
        let seen = losses.seen.max(1) as f64;
        let metrics = EpochMetrics {
            epoch,
            steps: step as usize,
            train_loss: losses.sum / seen,
            train_parts: kd.map_or(vec![], |kd| {
                let means = losses.parts_sum.iter().map(|sum| sum / seen);
                kd.loss.part_names().iter().copied().zip(means).collect()
            }),
            lr,
            val,
            test: test.as_ref().map(|p| p.evaluate(&data.test)),
            epoch_seconds,
            samples_per_second: losses.seen as f64 / epoch_seconds.max(1e-9),
            queue,
        };
        say(opts.progress, &epoch_line(&name, opts.epochs, &metrics));
        // NOTE: the checkpoint first: a failed save must not leave a line for an epoch
        // the checkpoint lacks (a resume would run it again and write it twice).
        save(opts, student, &optimizer, &metrics, data, kd)?;
        append_line(&metrics_file, &metrics.to_json())?;
        epochs.push(metrics);
    }
    Ok(TrainReport {
        epochs,
        train_seconds: start_time.elapsed().as_secs_f64(),
        test,
    })
}

/// The losses of the steps since the last read, still on the device, and the sums of
/// those read so far.
#[derive(Default)]
struct LossLog {
    /// `(batch size, loss, the terms of a distillation step's loss)` per step.
    pending: Vec<(usize, Tensor, Option<Tensor>)>,
    sum: f64,
    /// The sums of the terms, weighted by batch size: `[CE, T²·KL]` or `[CE, T²·TCKD,
    /// T²·NCKD]`; empty without distillation.
    parts_sum: Vec<f64>,
    seen: usize,
}

impl LossLog {
    fn push(&mut self, n: usize, loss: Tensor, parts: Option<Tensor>) {
        self.pending.push((n, loss, parts));
    }

    fn len(&self) -> usize {
        self.pending.len()
    }

    /// Reads the pending losses back in one read; returns their examples and mean loss.
    fn drain(&mut self) -> Result<(usize, f64)> {
        let tensors: Vec<Tensor> = self
            .pending
            .iter()
            .flat_map(|(_, loss, parts)| std::iter::once(loss.clone()).chain(parts.clone()))
            .collect();
        if tensors.is_empty() {
            return Ok((0, 0.0));
        }
        let values = Tensor::concat(&tensors)?.to_vec()?;
        let mut values = values.into_iter();
        let (mut sum, mut count) = (0.0, 0);
        for (n, _, parts) in self.pending.drain(..) {
            let weight = n as f64;
            sum += values.next().unwrap_or(f32::NAN) as f64 * weight;
            if let Some(parts) = parts {
                self.parts_sum.resize(parts.shape().iter().product(), 0.0);
                for part in &mut self.parts_sum {
                    *part += values.next().unwrap_or(f32::NAN) as f64 * weight;
                }
            }
            count += n;
        }
        self.sum += sum;
        self.seen += count;
        Ok((count, sum / count.max(1) as f64))
    }
}

/// The module takes MNIST images: a described network must take `(1, 28, 28)` and give
/// one logit per class (a module without a description is checked by its first step).
fn check_fits(module: &dyn Module, role: &str) -> Result<()> {
    let Some(spec) = module.spec() else {
        return Ok(());
    };
    let output = spec.output_shape()?;
    if spec.input != MNIST_INPUT || output != [NUM_CLASSES] {
        return Err(DistillError::Config(format!(
            "{role} `{}` takes {:?} images and gives {output:?} values; MNIST needs \
             {MNIST_INPUT:?} images and {NUM_CLASSES} classes",
            spec.name, spec.input
        )));
    }
    Ok(())
}

/// Checks the options that need nothing loaded, so that a bad flag fails at once.
pub fn validate(opts: &TrainOptions) -> Result<()> {
    if opts.epochs == 0 {
        return Err(DistillError::Config("--epochs must be at least 1".into()));
    }
    if opts.batch_size == 0 {
        return Err(DistillError::Config("--batch must be at least 1".into()));
    }
    let lr = opts.optimizer.lr;
    if !(lr > 0.0 && lr.is_finite()) {
        return Err(DistillError::Config(format!("--lr must be > 0, got {lr}")));
    }
    let decay = opts.optimizer.weight_decay;
    if !(decay >= 0.0 && decay.is_finite()) {
        return Err(DistillError::Config(format!(
            "--weight-decay must be >= 0 and finite, got {decay}"
        )));
    }
    if let Some(c) = opts
        .optimizer
        .max_norm
        .filter(|c| !(*c > 0.0 && c.is_finite()))
    {
        return Err(DistillError::Config(format!(
            "--max-norm must be > 0 and finite, got {c}"
        )));
    }
    opts.schedule.check().map_err(DistillError::Config)
}

/// A fresh optimizer for `student`, or, when resuming, the parameters and optimizer
/// state saved beside `opts.out` (loaded into `student`); also the number of epochs done
/// and, when resuming, the checkpoint's metrics line of its last epoch.
fn start(
    opts: &TrainOptions,
    student: &dyn Module,
    data: &Mnist,
    kd: Option<&Distillation>,
    name: &str,
) -> Result<(Optimizer, usize, Option<String>)> {
    if opts.resume && (opts.out.exists() || checkpoint::state_path(&opts.out).exists()) {
        let ckpt = resume_source(&opts.out)?;
        let resume_err = |detail: String| DistillError::Resume {
            path: opts.out.clone(),
            detail,
        };
        let changed: Vec<String> = recipe(opts, data, kd)?
            .into_iter()
            // NOTE: a checkpoint from before a setting existed ran with its default.
            .filter_map(|(key, given)| {
                let saved = ckpt.metadata.get(key)?;
                (*saved != given).then(|| format!("{key} was `{saved}`, now `{given}`"))
            })
            .collect();
        if !changed.is_empty() {
            return Err(resume_err(format!(
                "it was trained with another recipe: {}",
                changed.join("; ")
            )));
        }
        checkpoint::load_into(student, &ckpt)?;
        if ckpt.extra().next().is_none() {
            let state = checkpoint::state_path(&opts.out);
            return Err(resume_err(format!(
                "its optimizer state, {}, is missing; pass --force to train from scratch",
                state.display()
            )));
        }
        let done = meta_number(&ckpt, "epoch").map_err(resume_err)?;
        if ckpt.path != opts.out && weights_epoch(&opts.out) != Some(done as u64) {
            // A kill between the two files left the state an epoch ahead of the weights
            // (or alone): bring the weights up to it, as its epoch's save would have.
            let mut meta = ckpt.metadata.clone();
            meta.remove("optimizer_steps");
            checkpoint::save(&opts.out, student, &meta, &[])?;
        }
        let steps = meta_number(&ckpt, "optimizer_steps").map_err(resume_err)?;
        let mut optimizer = Optimizer::new(opts.optimizer, &student.parameters())?;
        optimizer
            .load_state(steps as u64, &ckpt.tensors)
            .map_err(resume_err)?;
        say(
            opts.progress,
            &format!(
                "resuming {name} from {} after epoch {done}",
                opts.out.display()
            ),
        );
        let last_line = ckpt.metadata.get("metrics").cloned().unwrap_or_default();
        return Ok((optimizer, done, Some(last_line)));
    }
    if opts.resume {
        say(
            opts.progress,
            &format!(
                "no checkpoint at {}; starting from scratch",
                opts.out.display()
            ),
        );
    }
    Ok((
        Optimizer::new(opts.optimizer, &student.parameters())?,
        0,
        None,
    ))
}

/// The epoch of the weights file at `path`, if there is one that reads.
fn weights_epoch(path: &Path) -> Option<u64> {
    checkpoint::read(path).ok()?.epoch()
}

/// What a resume continues from: the training state beside the weights file `out`
/// ([`checkpoint::state_path`]), else the weights file itself (one of the older kind
/// holds its optimizer state; `start` refuses one that does not).
fn resume_source(out: &Path) -> Result<Checkpoint> {
    let state = checkpoint::state_path(out);
    match state.exists() {
        true => Ok(checkpoint::read(&state)?),
        false => Ok(checkpoint::read(out)?),
    }
}

/// Rewrites the metrics file of a run resumed after epoch `done` (atomically) so that
/// it holds the lines of epochs 1 to `done` once each, in order: a line past `done` (an
/// epoch whose checkpoint was never written) and a torn last line (a kill during the
/// append) go, and a missing line for `done` itself (a kill between the checkpoint and
/// the append) is put back from the checkpoint's copy, `last_line`.
fn agree_with_checkpoint(path: &Path, done: usize, last_line: &str) -> Result<()> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(io(path)(e)),
    };
    let epoch_of = |line: &str| -> Option<usize> {
        let value: serde_json::Value = serde_json::from_str(line).ok()?;
        value.get("epoch")?.as_u64().map(|e| e as usize)
    };
    let mut kept = String::new();
    let mut next = 1;
    // NOTE: `split_inclusive` keeps each line's newline: a last line without one is torn.
    for line in text.split_inclusive('\n').filter(|l| l.ends_with('\n')) {
        if epoch_of(line.trim_end()) == Some(next) && next <= done {
            kept.push_str(line);
            next += 1;
        }
    }
    if next == done && epoch_of(last_line) == Some(done) {
        kept.push_str(last_line);
        kept.push('\n');
    }
    if kept != text {
        crate::study::write_atomic(path, kept.as_bytes())?;
    }
    Ok(())
}

/// The settings saved in a checkpoint that a resumed run must share with it, as
/// metadata pairs: everything that changes the experiment but the epoch count (which a
/// constant rate lets a resume raise), the device and what is printed.
fn recipe(
    opts: &TrainOptions,
    data: &Mnist,
    kd: Option<&Distillation>,
) -> Result<Vec<(&'static str, String)>> {
    let mut keys = vec![
        ("lr", opts.optimizer.lr.to_string()),
        ("batch", opts.batch_size.to_string()),
        ("seed", opts.seed.to_string()),
        ("jitter", opts.jitter.to_string()),
        ("weight_decay", opts.optimizer.weight_decay.to_string()),
        ("optimizer", opts.optimizer.kind.name().to_string()),
        ("schedule", opts.schedule.kind.name().to_string()),
        ("warmup_epochs", opts.schedule.warmup_epochs.to_string()),
        ("dataset", data.kind.name().to_string()),
        ("val", data.val.len().to_string()),
    ];
    // A constant rate does not depend on the run's length, so more epochs may be added.
    if opts.schedule.kind != ScheduleKind::Constant {
        keys.push(("epochs", opts.epochs.to_string()));
    }
    if let Some(max_norm) = opts.optimizer.max_norm {
        keys.push(("max_norm", max_norm.to_string()));
    }
    if let Some(kd) = kd {
        keys.push(("temperature", kd.temperature.to_string()));
        keys.push(("alpha", kd.alpha.to_string()));
        keys.push(("loss", kd.loss.name().to_string()));
        if let Loss::Dkd { beta } = kd.loss {
            keys.push(("beta", beta.to_string()));
        }
        keys.push(("teacher_sha256", fingerprint(kd.teacher)?));
    }
    Ok(keys)
}

/// The first 16 hex digits of SHA-256 over `module`'s parameters (names, shapes and
/// values in order): another teacher, or the same one trained further, gives another.
fn fingerprint(module: &dyn Module) -> Result<String> {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    for (name, p) in module.parameters() {
        hash.update(name.as_bytes());
        for &d in p.shape() {
            hash.update((d as u64).to_le_bytes());
        }
        for v in p.to_vec()? {
            hash.update(v.to_le_bytes());
        }
    }
    let digest = hash.finalize();
    Ok(digest[..8].iter().map(|b| format!("{b:02x}")).collect())
}

fn meta_number(ckpt: &Checkpoint, key: &str) -> std::result::Result<usize, String> {
    let value = ckpt
        .metadata
        .get(key)
        .ok_or_else(|| format!("metadata `{key}` is missing"))?;
    value
        .parse()
        .map_err(|_| format!("metadata `{key}` = `{value}` is not a number"))
}

/// The dropout seed of one step: distinct for every (run seed, epoch, step).
fn step_seed(seed: u64, epoch: usize, step: u32) -> u32 {
    let mixed = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ ((epoch as u64) << 32 | step as u64);
    (mixed ^ (mixed >> 29)) as u32
}

fn teacher_batch(
    teacher: &TeacherLogits,
    batch: &Batch,
    x: &Tensor,
    device: &Device,
) -> Result<Tensor> {
    match teacher {
        TeacherLogits::Cached(all) => {
            let rows: Vec<u32> = batch.indices.iter().map(|&i| i as u32).collect();
            Ok(all.gather_rows(&Labels::new(&rows, device)?)?)
        }
        TeacherLogits::Live(network) => {
            let _frozen = no_grad();
            Ok(network.forward(x, Mode::Eval)?)
        }
    }
}

/// The module's logits `(len, classes)` for every image of `data`, in order, as a
/// constant on `device`.
pub fn logits_for(
    module: &dyn Module,
    data: &Dataset,
    batch_size: usize,
    device: &Device,
) -> Result<Tensor> {
    let _frozen = no_grad();
    let mut parts = Vec::new();
    let mut batches = data.batches(Batching::eval(batch_size), 0)?;
    let mut batch = Batch::default();
    while batches.next_into(&mut batch) {
        let x = Tensor::from_vec(
            batch.images.clone(),
            &[batch.len(), 1, IMAGE_SIDE, IMAGE_SIDE],
            device,
        )?;
        parts.push(module.forward(&x, Mode::Eval)?);
    }
    let classes = match parts.first().map(|t| t.shape()) {
        Some(&[_, classes]) => classes,
        Some(shape) => {
            return Err(DistillError::Config(format!(
                "the teacher gives logits of shape {shape:?}, not (images, classes)"
            )))
        }
        None => NUM_CLASSES,
    };
    Ok(Tensor::concat(&parts)?.reshape(&[data.len(), classes])?)
}

/// The module's logits for every image of `data`, read back in one read.
pub fn predict(
    module: &dyn Module,
    data: &Dataset,
    batch_size: usize,
    device: &Device,
) -> Result<Predictions> {
    let t0 = Instant::now();
    let logits = logits_for(module, data, batch_size, device)?;
    let classes = logits.shape().get(1).copied().unwrap_or(NUM_CLASSES);
    let logits = logits.to_vec()?;
    Ok(Predictions {
        logits,
        classes,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

/// Accuracy, error count and mean cross-entropy of `module` on `data`, without
/// recording gradients.
pub fn evaluate(
    module: &dyn Module,
    data: &Dataset,
    batch_size: usize,
    device: &Device,
) -> Result<Evaluation> {
    Ok(predict(module, data, batch_size, device)?.evaluate(data))
}

fn epoch_line(name: &str, epochs: usize, m: &EpochMetrics) -> String {
    let mut line = format!(
        "{name} epoch {}/{epochs}: train loss {:.4}, lr {:.3e}",
        m.epoch, m.train_loss, m.lr
    );
    for (set, e) in [("val", &m.val), ("test", &m.test)] {
        if let Some(e) = e {
            line += &format!(", {set} {:.2}% ({} errors)", 100.0 * e.accuracy, e.errors);
        }
    }
    line + &format!(
        ", {:.1}s ({:.0} samples/s)",
        m.epoch_seconds, m.samples_per_second
    )
}

/// Appends `value` and a newline in one `write`, so that a kill leaves the whole line or
/// none of it (`writeln!` writes in pieces).
fn append_line(path: &Path, value: &serde_json::Value) -> Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io(path))?;
    file.write_all(format!("{value}\n").as_bytes())
        .map_err(io(path))
}

fn save(
    opts: &TrainOptions,
    module: &dyn Module,
    optimizer: &Optimizer,
    m: &EpochMetrics,
    data: &Mnist,
    kd: Option<&Distillation>,
) -> Result<()> {
    let mut meta: BTreeMap<String, String> = recipe(opts, data, kd)?
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    meta.insert("epochs".to_string(), opts.epochs.to_string());
    meta.insert("epoch".to_string(), m.epoch.to_string());
    meta.insert("metrics".to_string(), m.to_json().to_string());
    if let Some(kd) = kd {
        let teacher = kd
            .teacher
            .spec()
            .map_or("a custom module", |s| s.name.as_str());
        meta.insert("distilled_from".to_string(), teacher.to_string());
    }
    // The whole training state first, then the weights alone (what PyTorch, eval and the
    // exports read): a kill between the two leaves a state one epoch ahead of the
    // weights, and a resume continues from the state.
    let mut state = meta.clone();
    state.insert("optimizer_steps".to_string(), optimizer.steps().to_string());
    let state_path = checkpoint::state_path(&opts.out);
    checkpoint::save(&state_path, module, &state, &optimizer.state())?;
    checkpoint::save(&opts.out, module, &meta, &[])?;
    Ok(())
}
