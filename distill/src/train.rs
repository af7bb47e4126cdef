//! The training loop, shared by plain training and distillation: they differ only in
//! the loss. Each epoch ends with a test evaluation, a line in the metrics file and an
//! atomically written checkpoint (parameters and optimizer state), so an interrupted run
//! loses at most the epoch in progress and `--resume` continues it exactly.
//!
//! The student and the teacher are any [`Module`]: a [`models::Network`] built from a
//! description, or a module of the caller's own.
//!
//! On the GPU a step stages its inputs, records its kernels and ends with one submit
//! (`Device::submit`); every 16 steps that submit also carries the read of the losses.
//! Nothing else waits for the device until the epoch's evaluation.

use crate::data::{Batch, Batching, Dataset, Mnist, IMAGE_PIXELS, IMAGE_SIDE, NUM_CLASSES};
use crate::error::{io, DistillError, Result};
use crate::optim::{Optimizer, OptimizerConfig};
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
    /// The optimizer and its hyperparameters.
    pub optimizer: OptimizerConfig,
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
    /// The `distill train` defaults: 3 epochs, batch 64, Adam at 1e-3, seed 0, no jitter,
    /// no resume, progress bars on a terminal; the checkpoint written to `out`.
    pub fn new(out: impl Into<PathBuf>) -> TrainOptions {
        TrainOptions {
            epochs: 3,
            batch_size: 64,
            optimizer: OptimizerConfig::new(crate::optim::OptimizerKind::Adam, 1e-3),
            seed: 0,
            jitter: false,
            out: out.into(),
            resume: false,
            progress: ProgressMode::Auto,
        }
    }
}

/// Distillation from a frozen teacher: `(1 - alpha)·CE + alpha·T²·KL`.
pub struct Distillation<'a> {
    /// Any module whose forward gives `(n, 10)` logits, on the training device.
    pub teacher: &'a dyn Module,
    /// The softening temperature `T > 0`.
    pub temperature: f32,
    /// The weight of the KL term, in `[0, 1]`: 0 is plain training on the labels.
    pub alpha: f32,
    /// Compute the teacher's logits once for the whole training set when the images
    /// are not augmented (on by default; off runs the teacher on every batch).
    pub cache_teacher: bool,
}

impl<'a> Distillation<'a> {
    /// Distillation from `teacher` with `cache_teacher` on; errors when
    /// [`Distillation::check`] does.
    pub fn new(teacher: &'a dyn Module, temperature: f32, alpha: f32) -> Result<Distillation<'a>> {
        Distillation::check(temperature, alpha)?;
        Ok(Distillation {
            teacher,
            temperature,
            alpha,
            cache_teacher: true,
        })
    }

    /// Checks the temperature and the weight before anything is loaded.
    pub fn check(temperature: f32, alpha: f32) -> Result<()> {
        if !(temperature > 0.0 && temperature.is_finite()) {
            return Err(DistillError::Config(format!(
                "--T must be > 0, got {temperature}"
            )));
        }
        if !(0.0..=1.0).contains(&alpha) {
            return Err(DistillError::Config(format!(
                "--alpha must be in [0, 1], got {alpha}"
            )));
        }
        Ok(())
    }
}

/// Test-set results.
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluation {
    /// Fraction of test examples classified correctly, in `[0, 1]`.
    pub accuracy: f64,
    /// Test examples misclassified.
    pub errors: usize,
    /// Test examples seen.
    pub total: usize,
    /// Mean cross-entropy per example.
    pub loss: f64,
    /// Wall-clock seconds the evaluation took.
    pub seconds: f64,
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
    /// Mean cross-entropy and `T²·KL` of a distillation run.
    pub train_parts: Option<[f64; 2]>,
    /// The test-set evaluation after the epoch.
    pub test: Evaluation,
    /// Wall-clock seconds of the training steps, the evaluation not included.
    pub epoch_seconds: f64,
    /// Training examples per second over `epoch_seconds`.
    pub samples_per_second: f64,
    /// On a GPU: the submits and dispatches of the epoch's training steps (the
    /// evaluation after them not included).
    pub queue: Option<QueueStats>,
}

impl EpochMetrics {
    /// The metrics-file line: `train_ce`, `train_kl` and the GPU counts only when present.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = json!({
            "epoch": self.epoch,
            "train_loss": self.train_loss,
            "test_accuracy": self.test.accuracy,
            "test_errors": self.test.errors,
            "test_loss": self.test.loss,
            "epoch_seconds": self.epoch_seconds,
            "samples_per_second": self.samples_per_second,
            "steps": self.steps,
        });
        if let Some([ce, kl]) = self.train_parts {
            v["train_ce"] = json!(ce);
            v["train_kl"] = json!(kl);
        }
        if let Some(q) = self.queue {
            v["gpu_submits"] = json!(q.submits);
            v["gpu_dispatches"] = json!(q.dispatches);
        }
        v
    }
}

/// What [`train`] did: one entry per epoch it ran.
pub struct TrainReport {
    /// The epochs this call ran, in order; not those a resumed checkpoint had done.
    pub epochs: Vec<EpochMetrics>,
    /// Seconds spent training in this process (resumed epochs not counted).
    pub train_seconds: f64,
}

impl TrainReport {
    /// The test evaluation after the last epoch run; `None` when none ran.
    pub fn final_test(&self) -> Option<&Evaluation> {
        self.epochs.last().map(|m| &m.test)
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
    let (mut optimizer, done) = start(opts, student, &name)?;
    let params = student.parameters();
    let teacher = match kd {
        // NOTE: without augmentation the teacher sees the same image every epoch, so its
        // logits are computed once instead of once per batch per epoch.
        Some(kd) if !opts.jitter && kd.cache_teacher => {
            say(
                opts.progress,
                "computing the teacher's logits for the training set once",
            );
            Some(TeacherLogits::Cached(logits_for(
                kd.teacher,
                &data.train,
                1000,
                device,
            )?))
        }
        Some(kd) => Some(TeacherLogits::Live(kd.teacher)),
        None => None,
    };
    let metrics_file = metrics_path(&opts.out);
    if done == 0 {
        // A fresh run starts a fresh metrics file.
        std::fs::write(&metrics_file, "").map_err(io(&metrics_file))?;
    }
    let mut epochs = Vec::new();
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
                (Some(t), Some(kd)) => {
                    let t_logits = teacher_batch(t, &batch, &x, device)?;
                    let out = logits.kd_loss(&t_logits, &y, kd.temperature, kd.alpha)?;
                    (out.loss, Some(out.parts))
                }
                _ => (logits.cross_entropy(&y)?, None),
            };
            let grads = loss.backward()?;
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
        let test = evaluate(student, &data.test, 1000, device)?;
        let seen = losses.seen.max(1) as f64;
        let metrics = EpochMetrics {
            epoch,
            steps: step as usize,
            train_loss: losses.sum / seen,
            train_parts: kd.map(|_| [losses.parts_sum[0] / seen, losses.parts_sum[1] / seen]),
            test,
            epoch_seconds,
            samples_per_second: losses.seen as f64 / epoch_seconds.max(1e-9),
            queue,
        };
        say(opts.progress, &epoch_line(&name, opts.epochs, &metrics));
        append_line(&metrics_file, &metrics.to_json())?;
        save(opts, student, &optimizer, &metrics, kd)?;
        epochs.push(metrics);
    }
    Ok(TrainReport {
        epochs,
        train_seconds: start_time.elapsed().as_secs_f64(),
    })
}

/// The losses of the steps since the last read, still on the device, and the sums of
/// those read so far.
#[derive(Default)]
struct LossLog {
    /// `(batch size, loss, [CE, T²·KL] of a distillation step)` per step.
    pending: Vec<(usize, Tensor, Option<Tensor>)>,
    sum: f64,
    parts_sum: [f64; 2],
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
            if parts.is_some() {
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
    Ok(())
}

/// A fresh optimizer for `student`, or, when resuming, the parameters and optimizer
/// state saved in `opts.out` (loaded into `student`); also the number of epochs done.
fn start(opts: &TrainOptions, student: &dyn Module, name: &str) -> Result<(Optimizer, usize)> {
    if opts.resume && opts.out.exists() {
        let ckpt = checkpoint::read(&opts.out)?;
        let resume_err = |detail: String| DistillError::Resume {
            path: opts.out.clone(),
            detail,
        };
        let kind = ckpt
            .metadata
            .get("optimizer")
            .map(String::as_str)
            .unwrap_or("");
        if kind != opts.optimizer.kind.name() {
            return Err(resume_err(format!(
                "it was trained with `{kind}`, not `{}`",
                opts.optimizer.kind
            )));
        }
        checkpoint::load_into(student, &ckpt)?;
        let done = meta_number(&ckpt, "epoch").map_err(resume_err)?;
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
        return Ok((optimizer, done));
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
    Ok((Optimizer::new(opts.optimizer, &student.parameters())?, 0))
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

/// Accuracy, error count and mean cross-entropy of `network` on `data`, without
/// recording gradients.
pub fn evaluate(
    module: &dyn Module,
    data: &Dataset,
    batch_size: usize,
    device: &Device,
) -> Result<Evaluation> {
    let _frozen = no_grad();
    let t0 = Instant::now();
    let (mut correct, mut loss_sum) = (0usize, 0.0f64);
    let mut batches = data.batches(Batching::eval(batch_size), 0)?;
    let mut batch = Batch::default();
    while batches.next_into(&mut batch) {
        let n = batch.len();
        debug_assert_eq!(batch.images.len(), n * IMAGE_PIXELS);
        let x = Tensor::from_vec(
            batch.images.clone(),
            &[n, 1, IMAGE_SIDE, IMAGE_SIDE],
            device,
        )?;
        let logits = module.forward(&x, Mode::Eval)?;
        let y = Labels::new(&batch.labels, device)?;
        loss_sum += logits.cross_entropy(&y)?.to_scalar()? as f64 * n as f64;
        let predicted = logits.argmax_rows()?;
        correct += predicted
            .iter()
            .zip(&batch.labels)
            .filter(|(p, y)| p == y)
            .count();
    }
    let total = data.len();
    Ok(Evaluation {
        accuracy: correct as f64 / total.max(1) as f64,
        errors: total - correct,
        total,
        loss: loss_sum / total.max(1) as f64,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

fn epoch_line(name: &str, epochs: usize, m: &EpochMetrics) -> String {
    format!(
        "{name} epoch {}/{epochs}: train loss {:.4}, test accuracy {:.2}% ({} errors), {:.1}s ({:.0} samples/s)",
        m.epoch,
        m.train_loss,
        100.0 * m.test.accuracy,
        m.test.errors,
        m.epoch_seconds,
        m.samples_per_second
    )
}

fn append_line(path: &Path, value: &serde_json::Value) -> Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io(path))?;
    writeln!(file, "{value}").map_err(io(path))
}

fn save(
    opts: &TrainOptions,
    module: &dyn Module,
    optimizer: &Optimizer,
    m: &EpochMetrics,
    kd: Option<&Distillation>,
) -> Result<()> {
    let mut meta = BTreeMap::new();
    meta.insert("epoch".to_string(), m.epoch.to_string());
    meta.insert("seed".to_string(), opts.seed.to_string());
    meta.insert("metrics".to_string(), m.to_json().to_string());
    meta.insert(
        "optimizer".to_string(),
        opts.optimizer.kind.name().to_string(),
    );
    meta.insert("optimizer_steps".to_string(), optimizer.steps().to_string());
    meta.insert("lr".to_string(), opts.optimizer.lr.to_string());
    meta.insert("batch".to_string(), opts.batch_size.to_string());
    meta.insert("jitter".to_string(), opts.jitter.to_string());
    if let Some(kd) = kd {
        let teacher = kd
            .teacher
            .spec()
            .map_or("a custom module", |s| s.name.as_str());
        meta.insert("distilled_from".to_string(), teacher.to_string());
        meta.insert("temperature".to_string(), kd.temperature.to_string());
        meta.insert("alpha".to_string(), kd.alpha.to_string());
    }
    checkpoint::save(&opts.out, module, &meta, &optimizer.state())?;
    Ok(())
}
