//! The training loop, shared by plain training and distillation: they differ only in
//! the loss. Each epoch ends with a test evaluation, a line in the metrics file and an
//! atomically written checkpoint (parameters and optimizer state), so an interrupted run
//! loses at most the epoch in progress and `--resume` continues it exactly.

use crate::data::{Batch, Batching, Dataset, Mnist, IMAGE_PIXELS, IMAGE_SIDE, NUM_CLASSES};
use crate::error::{io, DistillError, Result};
use crate::optim::{Optimizer, OptimizerConfig};
use crate::progress::{say, EpochProgress, ProgressMode};
use engine::{no_grad, Device, Labels, Tensor};
use models::checkpoint::{self, Checkpoint};
use models::{Arch, Mode, Module, Network};
use serde_json::json;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// How to train one network.
#[derive(Clone, Debug)]
pub struct TrainOptions {
    pub arch: Arch,
    pub epochs: usize,
    pub batch_size: usize,
    pub optimizer: OptimizerConfig,
    pub seed: u64,
    /// Random ±2-pixel shifts of the training images.
    pub jitter: bool,
    /// The checkpoint written after every epoch; metrics go beside it.
    pub out: PathBuf,
    /// Continue from `out` when it exists.
    pub resume: bool,
    pub progress: ProgressMode,
}

/// Distillation from a frozen teacher: `(1 - alpha)·CE + alpha·T²·KL`.
pub struct Distillation {
    pub teacher: Network,
    pub temperature: f32,
    pub alpha: f32,
    /// Compute the teacher's logits once for the whole training set when the images
    /// are not augmented (on by default; off runs the teacher on every batch).
    pub cache_teacher: bool,
}

impl Distillation {
    pub fn new(teacher: Network, temperature: f32, alpha: f32) -> Result<Distillation> {
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
    pub accuracy: f64,
    pub errors: usize,
    pub total: usize,
    pub loss: f64,
    pub seconds: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct EpochMetrics {
    pub epoch: usize,
    pub train_loss: f64,
    /// Mean cross-entropy and `T²·KL` of a distillation run.
    pub train_parts: Option<[f64; 2]>,
    pub test: Evaluation,
    pub epoch_seconds: f64,
    pub samples_per_second: f64,
}

impl EpochMetrics {
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = json!({
            "epoch": self.epoch,
            "train_loss": self.train_loss,
            "test_accuracy": self.test.accuracy,
            "test_errors": self.test.errors,
            "test_loss": self.test.loss,
            "epoch_seconds": self.epoch_seconds,
            "samples_per_second": self.samples_per_second,
        });
        if let Some([ce, kl]) = self.train_parts {
            v["train_ce"] = json!(ce);
            v["train_kl"] = json!(kl);
        }
        v
    }
}

pub struct TrainReport {
    pub network: Network,
    pub epochs: Vec<EpochMetrics>,
    /// Seconds spent training in this process (resumed epochs not counted).
    pub train_seconds: f64,
}

impl TrainReport {
    pub fn final_test(&self) -> Option<&Evaluation> {
        self.epochs.last().map(|m| &m.test)
    }
}

/// `teacher.safetensors` -> `teacher.metrics.jsonl`.
pub fn metrics_path(checkpoint: &Path) -> PathBuf {
    checkpoint.with_extension("metrics.jsonl")
}

/// Where the teacher's logits for a training batch come from.
enum TeacherLogits<'a> {
    /// Computed once for the whole training set: `(len, 10)`, reused every epoch.
    Cached(Vec<f32>),
    /// Run per batch, on the augmented images.
    Live(&'a Network),
}

pub fn train(
    opts: &TrainOptions,
    data: &Mnist,
    device: &Device,
    kd: Option<&Distillation>,
) -> Result<TrainReport> {
    validate(opts)?;
    let (network, mut optimizer, done) = start(opts, device)?;
    let params = network.parameters();
    let teacher = match kd {
        // NOTE: without augmentation the teacher sees the same image every epoch, so its
        // logits are computed once instead of once per batch per epoch.
        Some(kd) if !opts.jitter && kd.cache_teacher => {
            say(
                opts.progress,
                "computing the teacher's logits for the training set once",
            );
            Some(TeacherLogits::Cached(logits_for(
                &kd.teacher,
                &data.train,
                1000,
            )?))
        }
        Some(kd) => Some(TeacherLogits::Live(&kd.teacher)),
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
        let label = format!("{} epoch {epoch}/{}", opts.arch, opts.epochs);
        let mut bar = EpochProgress::new(opts.progress, label, data.train.len());
        let batching = Batching::train(opts.batch_size, opts.seed).with_jitter(opts.jitter);
        let mut batches = data.train.batches(batching, epoch as u64)?;
        let (mut sum, mut parts_sum, mut pending, mut seen) =
            (0.0f64, [0.0f64; 2], Vec::new(), 0usize);
        let mut step = 0u32;
        while batches.next_into(&mut batch) {
            let n = batch.len();
            let x = Tensor::from_vec(
                batch.images.clone(),
                &[n, 1, IMAGE_SIDE, IMAGE_SIDE],
                device,
            )?;
            let y = Labels::new(&batch.labels, device)?;
            let seed = step_seed(opts.seed, epoch, step);
            let logits = network.forward(&x, Mode::Train { seed })?;
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
            pending.push((n, loss.detach(), parts));
            step += 1;
            // NOTE: on the GPU reading a scalar waits for the queue, so the losses are
            // read a few steps at a time rather than after every step.
            if pending.len() == 16 || batches.len() == 0 {
                let (s, p, k) = drain(&mut pending)?;
                sum += s;
                parts_sum[0] += p[0];
                parts_sum[1] += p[1];
                seen += k;
                bar.advance(k, s / k as f64);
            }
        }
        bar.finish();
        let epoch_seconds = t0.elapsed().as_secs_f64();
        let test = evaluate(&network, &data.test, 1000)?;
        let metrics = EpochMetrics {
            epoch,
            train_loss: sum / seen.max(1) as f64,
            train_parts: kd.map(|_| {
                [
                    parts_sum[0] / seen.max(1) as f64,
                    parts_sum[1] / seen.max(1) as f64,
                ]
            }),
            test,
            epoch_seconds,
            samples_per_second: seen as f64 / epoch_seconds.max(1e-9),
        };
        say(opts.progress, &epoch_line(opts.arch, opts.epochs, &metrics));
        append_line(&metrics_file, &metrics.to_json())?;
        save(opts, &network, &optimizer, &metrics, kd)?;
        epochs.push(metrics);
    }
    Ok(TrainReport {
        network,
        epochs,
        train_seconds: start_time.elapsed().as_secs_f64(),
    })
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

/// A fresh network and optimizer, or the ones saved in `opts.out` when resuming; also
/// the number of epochs already done.
fn start(opts: &TrainOptions, device: &Device) -> Result<(Network, Optimizer, usize)> {
    if opts.resume && opts.out.exists() {
        let (network, ckpt) = checkpoint::load_network(&opts.out, device)?;
        let resume_err = |detail: String| DistillError::Resume {
            path: opts.out.clone(),
            detail,
        };
        if network.arch() != opts.arch {
            return Err(resume_err(format!(
                "it holds {}, but --model is {}",
                network.arch(),
                opts.arch
            )));
        }
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
        let done = meta_number(&ckpt, "epoch").map_err(resume_err)?;
        let steps = meta_number(&ckpt, "optimizer_steps").map_err(resume_err)?;
        let mut optimizer = Optimizer::new(opts.optimizer, &network.parameters())?;
        optimizer
            .load_state(steps as u64, &ckpt.tensors)
            .map_err(resume_err)?;
        say(
            opts.progress,
            &format!(
                "resuming {} from {} after epoch {done}",
                opts.arch,
                opts.out.display()
            ),
        );
        return Ok((network, optimizer, done));
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
    let network = Network::new(opts.arch, opts.seed, device)?;
    let optimizer = Optimizer::new(opts.optimizer, &network.parameters())?;
    Ok((network, optimizer, 0))
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

/// Sums the pending losses (one read each): `(Σ loss·n, [Σ ce·n, Σ kl·n], Σ n)`.
fn drain(pending: &mut Vec<(usize, Tensor, Option<Tensor>)>) -> Result<(f64, [f64; 2], usize)> {
    let (mut sum, mut parts_sum, mut count) = (0.0, [0.0; 2], 0);
    for (n, loss, parts) in pending.drain(..) {
        sum += loss.to_scalar()? as f64 * n as f64;
        if let Some(parts) = parts {
            let p = parts.to_vec()?;
            parts_sum[0] += p[0] as f64 * n as f64;
            parts_sum[1] += p[1] as f64 * n as f64;
        }
        count += n;
    }
    Ok((sum, parts_sum, count))
}

fn teacher_batch(
    teacher: &TeacherLogits,
    batch: &Batch,
    x: &Tensor,
    device: &Device,
) -> Result<Tensor> {
    match teacher {
        TeacherLogits::Cached(all) => {
            let classes = NUM_CLASSES;
            let rows: Vec<f32> = batch
                .indices
                .iter()
                .flat_map(|&i| &all[i * classes..(i + 1) * classes])
                .copied()
                .collect();
            Ok(Tensor::from_vec(rows, &[batch.len(), classes], device)?)
        }
        TeacherLogits::Live(network) => {
            let _frozen = no_grad();
            Ok(network.forward(x, Mode::Eval)?)
        }
    }
}

/// The network's logits `(len, classes)` for every image of `data`, in order, on the host.
pub fn logits_for(network: &Network, data: &Dataset, batch_size: usize) -> Result<Vec<f32>> {
    let _frozen = no_grad();
    let device = network.device();
    let mut out = Vec::with_capacity(data.len() * 10);
    let mut batches = data.batches(Batching::eval(batch_size), 0)?;
    let mut batch = Batch::default();
    while batches.next_into(&mut batch) {
        let x = Tensor::from_vec(
            batch.images.clone(),
            &[batch.len(), 1, IMAGE_SIDE, IMAGE_SIDE],
            device,
        )?;
        out.extend(network.forward(&x, Mode::Eval)?.to_vec()?);
    }
    Ok(out)
}

/// Accuracy, error count and mean cross-entropy of `network` on `data`, without
/// recording gradients.
pub fn evaluate(network: &Network, data: &Dataset, batch_size: usize) -> Result<Evaluation> {
    let _frozen = no_grad();
    let t0 = Instant::now();
    let device = network.device();
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
        let logits = network.forward(&x, Mode::Eval)?;
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

fn epoch_line(arch: Arch, epochs: usize, m: &EpochMetrics) -> String {
    format!(
        "{arch} epoch {}/{epochs}: train loss {:.4}, test accuracy {:.2}% ({} errors), {:.1}s ({:.0} samples/s)",
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
    network: &Network,
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
        meta.insert("distilled_from".to_string(), kd.teacher.arch().to_string());
        meta.insert("temperature".to_string(), kd.temperature.to_string());
        meta.insert("alpha".to_string(), kd.alpha.to_string());
    }
    checkpoint::save(&opts.out, network, &meta, &optimizer.state())?;
    Ok(())
}
