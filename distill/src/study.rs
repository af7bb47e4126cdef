//! `distill run`: the paired multi-seed study. Train one teacher; then, for each seed,
//! the student alone and the student distilled from the teacher, both from the same
//! initial parameters and the same batch order, so that only the loss differs. Report
//! each run, the mean ± standard deviation of each, and the paired difference
//! (distilled − alone) with its 95 % confidence interval over seeds, as Markdown, JSON
//! and SVG figures (validation accuracy per epoch, reliability diagrams).
//!
//! Epochs are judged on the held-out validation images; the test set is evaluated once
//! per run, after its last epoch, and reported.

use crate::calibration::{self, Fidelity, Reliability, BINS};
use crate::data::Mnist;
use crate::error::{io, Result};
use crate::plot::{self, Axes, Series};
use crate::presets::{Preset, Recipe};
use crate::progress::{say, ProgressMode};
use crate::stats::{self, Summary};
use crate::train::{self, json_f32, Distillation, Predictions, TrainOptions, TrainReport};
use engine::{Device, QueueStats};
use models::{Module, Network, NetworkSpec};
use serde_json::json;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// What `distill run` compares, and where it writes.
pub struct StudyOptions {
    /// The recipe, with the command line's overrides applied; its network names are not read.
    pub preset: Preset,
    /// The preset's networks, or those `--teacher` and `--student` name.
    pub teacher: NetworkSpec,
    /// Likewise for the student, trained alone and distilled.
    pub student: NetworkSpec,
    /// The teacher's seed and the first student seed.
    pub seed: u64,
    /// Student seeds: `seed, seed + 1, ...`; at least 1.
    pub seeds: usize,
    /// Where the checkpoints, their metrics and the report go; created if needed.
    pub out_dir: PathBuf,
    /// What the runs print while they train.
    pub progress: ProgressMode,
}

/// One trained network of the study.
#[derive(Clone, Debug, PartialEq)]
pub struct RunSummary {
    /// Which run: `teacher`, `student alone` or `student distilled`.
    pub run: &'static str,
    /// Its seed (initial parameters, batch order, dropout, jitter).
    pub seed: u64,
    /// The network's name.
    pub model: String,
    /// Trainable values in the network.
    pub parameters: usize,
    /// Validation images misclassified after the last epoch.
    pub val_errors: usize,
    /// Fraction of the test set classified correctly after the last epoch, in `[0, 1]`.
    pub test_accuracy: f64,
    /// Test images misclassified after the last epoch.
    pub test_errors: usize,
    /// Its confidence bins on the test set.
    pub reliability: Reliability,
    /// A student's agreement with and KL divergence from the teacher on the test set.
    pub fidelity: Option<Fidelity>,
    /// Wall-clock seconds of the training steps of all epochs, evaluations not included.
    pub train_seconds: f64,
    /// Microseconds per test image of the test pass in batches of 1000, no gradients.
    pub inference_us_per_image: f64,
    /// Validation accuracy after each epoch, in `[0, 1]`.
    pub val_accuracy_per_epoch: Vec<f64>,
    /// Training steps run.
    pub train_steps: usize,
    /// On a GPU, the submits and dispatches of those steps.
    pub gpu_queue: Option<QueueStats>,
}

/// The whole study: the teacher and one pair of students per seed.
#[derive(Clone, Debug, PartialEq)]
pub struct StudyReport {
    /// The recipe it ran.
    pub preset: Preset,
    /// The data set's name for the report (`MNIST`).
    pub dataset: &'static str,
    /// Validation images held out of training.
    pub val: usize,
    /// The device it ran on, as shown.
    pub device: String,
    /// The teacher's run.
    pub teacher: RunSummary,
    /// Per seed: the student alone, then distilled.
    pub pairs: Vec<(RunSummary, RunSummary)>,
}

/// Trains the teacher and the students, writes the report to `opts.out_dir`, and
/// returns it.
pub fn run_study(opts: &StudyOptions, data: &Mnist, device: &Device) -> Result<StudyReport> {
    let p = &opts.preset;
    std::fs::create_dir_all(&opts.out_dir).map_err(io(&opts.out_dir))?;
    let total = 1 + 2 * opts.seeds;
    say(
        opts.progress,
        &format!("[1/{total}] teacher {}", opts.teacher.name),
    );
    let teacher = Network::new(&opts.teacher, opts.seed, device)?;
    let run_opts = |recipe: &Recipe, seed: u64, file: String| {
        recipe.options(seed, opts.out_dir.join(file), opts.progress)
    };
    let teacher_opts = run_opts(&p.teacher_recipe, opts.seed, "teacher.safetensors".into());
    let report = train::train(&teacher_opts, &teacher, data, device, None)?;
    let teacher_test = final_predictions(&report, &teacher, data, device)?;
    let teacher_row = summarize(
        "teacher",
        opts.seed,
        &teacher,
        &report,
        (&teacher_test, data),
        None,
    );
    let mut kd = Distillation::with_loss(p.loss, &teacher, p.temperature, p.alpha)?;
    if !p.student_recipe.jitter {
        say(
            opts.progress,
            "computing the teacher's logits for the training set once, for every seed",
        );
        kd.logits = Some(train::logits_for(&teacher, &data.train, 1000, device)?);
    }
    let mut pairs = Vec::new();
    for k in 0..opts.seeds {
        let seed = opts.seed + k as u64;
        let step = 2 + 2 * k;
        say(
            opts.progress,
            &format!("[{step}/{total}] {} alone, seed {seed}", opts.student.name),
        );
        let alone_row = student_run(
            "student alone",
            &run_opts(
                &p.student_recipe,
                seed,
                format!("student-alone-seed{seed}.safetensors"),
            ),
            &opts.student,
            (data, device),
            None,
            &teacher_test,
        )?;
        say(
            opts.progress,
            &format!(
                "[{}/{total}] {} distilled ({}) at T = {}, alpha = {}, seed {seed}",
                step + 1,
                opts.student.name,
                p.loss.describe(),
                p.temperature,
                p.alpha
            ),
        );
        let distilled_row = student_run(
            "student distilled",
            &run_opts(
                &p.student_recipe,
                seed,
                format!("student-distilled-seed{seed}.safetensors"),
            ),
            &opts.student,
            (data, device),
            Some(&kd),
            &teacher_test,
        )?;
        pairs.push((alone_row, distilled_row));
    }
    let study = StudyReport {
        preset: *p,
        dataset: data.kind.title(),
        val: data.val.len(),
        device: device.to_string(),
        teacher: teacher_row,
        pairs,
    };
    write_report(&opts.out_dir, &study)?;
    Ok(study)
}

/// One student run from a fresh network of `seed`: the same seed gives both runs of a
/// pair the same initial parameters and (through `opts.seed`) the same batch order.
fn student_run(
    run: &'static str,
    opts: &TrainOptions,
    spec: &NetworkSpec,
    (data, device): (&Mnist, &Device),
    kd: Option<&Distillation>,
    teacher_test: &Predictions,
) -> Result<RunSummary> {
    let student = Network::new(spec, opts.seed, device)?;
    let report = train::train(opts, &student, data, device, kd)?;
    let test = final_predictions(&report, &student, data, device)?;
    let fidelity = calibration::fidelity(&teacher_test.logits, &test.logits, test.classes);
    Ok(summarize(
        run,
        opts.seed,
        &student,
        &report,
        (&test, data),
        Some(fidelity),
    ))
}

/// The test logits the run ended with (computed here if it ran no epoch).
fn final_predictions(
    report: &TrainReport,
    module: &dyn Module,
    data: &Mnist,
    device: &Device,
) -> Result<Predictions> {
    match &report.test {
        Some(test) => Ok(test.clone()),
        None => train::predict(module, &data.test, 1000, device),
    }
}

fn summarize(
    run: &'static str,
    seed: u64,
    network: &Network,
    report: &TrainReport,
    (test, data): (&Predictions, &Mnist),
    fidelity: Option<Fidelity>,
) -> RunSummary {
    let eval = test.evaluate(&data.test);
    let (train_steps, gpu_queue) = report.queue();
    RunSummary {
        run,
        seed,
        model: network.name().to_string(),
        parameters: network.parameter_count(),
        val_errors: report
            .epochs
            .last()
            .and_then(|m| m.val.as_ref())
            .map_or(0, |v| v.errors),
        test_accuracy: eval.accuracy,
        test_errors: eval.errors,
        reliability: Reliability::from_logits(&test.logits, test.classes, data.test.labels(), BINS),
        fidelity,
        train_seconds: report.epochs.iter().map(|m| m.epoch_seconds).sum(),
        inference_us_per_image: 1e6 * test.seconds / eval.total.max(1) as f64,
        val_accuracy_per_epoch: report
            .epochs
            .iter()
            .filter_map(|m| m.val.as_ref().map(|v| v.accuracy))
            .collect(),
        train_steps,
        gpu_queue,
    }
}

impl StudyReport {
    /// The students alone, seed by seed.
    pub fn alone(&self) -> impl Iterator<Item = &RunSummary> {
        self.pairs.iter().map(|(a, _)| a)
    }

    /// The distilled students, seed by seed.
    pub fn distilled(&self) -> impl Iterator<Item = &RunSummary> {
        self.pairs.iter().map(|(_, d)| d)
    }

    /// Distilled − alone test errors, seed by seed, summarized.
    pub fn test_difference(&self) -> Summary {
        let d: Vec<f64> = self
            .pairs
            .iter()
            .map(|(a, d)| d.test_errors as f64 - a.test_errors as f64)
            .collect();
        stats::summarize(&d)
    }

    /// Distilled − alone validation errors, seed by seed, summarized.
    pub fn val_difference(&self) -> Summary {
        let d: Vec<f64> = self
            .pairs
            .iter()
            .map(|(a, d)| d.val_errors as f64 - a.val_errors as f64)
            .collect();
        stats::summarize(&d)
    }

    /// The headline: the paired test difference in one sentence.
    pub fn verdict(&self) -> String {
        stats::verdict(&self.test_difference(), "test errors")
    }

    /// The reliability bins of a run kind, pooled over seeds.
    fn pooled<'a>(runs: impl Iterator<Item = &'a RunSummary>) -> Reliability {
        let mut pooled = Reliability::new(BINS);
        for r in runs {
            pooled.merge(&r.reliability);
        }
        pooled
    }
}

/// `comparison.md`, `comparison.json`, `accuracy.svg` and `reliability.svg` in `dir`,
/// each written atomically.
pub fn write_report(dir: &Path, study: &StudyReport) -> Result<()> {
    write_atomic(&dir.join("comparison.md"), markdown(study).as_bytes())?;
    let text = serde_json::to_string_pretty(&to_json(study)).unwrap_or_default() + "\n";
    write_atomic(&dir.join("comparison.json"), text.as_bytes())?;
    write_atomic(&dir.join("accuracy.svg"), accuracy_svg(study).as_bytes())?;
    let panels = [
        ("teacher".to_string(), study.teacher.reliability.clone()),
        (
            "student alone".to_string(),
            StudyReport::pooled(study.alone()),
        ),
        (
            "student distilled".to_string(),
            StudyReport::pooled(study.distilled()),
        ),
    ];
    let panels: Vec<(String, &Reliability)> = panels.iter().map(|(l, r)| (l.clone(), r)).collect();
    write_atomic(
        &dir.join("reliability.svg"),
        plot::reliability_diagram(&panels).as_bytes(),
    )
}

fn recipe_line(r: &Recipe) -> String {
    let warmup = match r.schedule.warmup_epochs {
        w if w > 0.0 => format!(" after {w} warm-up epochs"),
        _ => String::new(),
    };
    format!(
        "{} epochs, batch {}, {} lr {}, {} schedule{warmup}{}",
        r.epochs,
        r.batch,
        r.optimizer,
        r.lr,
        r.schedule.kind,
        if r.jitter { ", jitter" } else { "" }
    )
}

/// `mean ± sd`, or the one value alone: one seed has no spread to show.
fn mean_sd(values: impl Iterator<Item = f64>, digits: usize) -> String {
    let v: Vec<f64> = values.collect();
    let s = stats::summarize(&v);
    if v.len() < 2 {
        return format!("{:.digits$}", s.mean);
    }
    format!("{:.digits$} ± {:.digits$}", s.mean, s.sd)
}

fn ci_text(s: &Summary) -> String {
    match s.ci95 {
        Some((lo, hi)) => format!("{:+.1} (95 % CI {lo:+.1} to {hi:+.1})", s.mean),
        None => format!("{:+.1} (one seed: no CI)", s.mean),
    }
}

/// `comparison.md`: the recipe, the verdict, one row per run, the means and the paired
/// differences.
pub fn markdown(study: &StudyReport) -> String {
    let p = &study.preset;
    let seeds = study.pairs.len();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Preset `{}` on {} ({} training images held out for validation), on {}.\n",
        p.name, study.dataset, study.val, study.device
    );
    let _ = writeln!(
        s,
        "- teacher {}: {}, seed {}",
        study.teacher.model,
        recipe_line(&p.teacher_recipe),
        study.teacher.seed
    );
    let _ = writeln!(
        s,
        "- students {}: {}; distilled with {} at T = {}, alpha = {}; {seeds} seed{} ({}), \
         each pair from the same initial parameters and batch order\n",
        study.pairs.first().map_or("-", |(a, _)| a.model.as_str()),
        recipe_line(&p.student_recipe),
        p.loss.describe(),
        p.temperature,
        p.alpha,
        if seeds == 1 { "" } else { "s" },
        study
            .alone()
            .map(|r| r.seed.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        s,
        "**Over {seeds} paired seed{}, {}.**\n",
        if seeds == 1 { "" } else { "s" },
        study.verdict()
    );
    let _ = writeln!(
        s,
        "| run | seed | val errors | test errors | test accuracy | ECE | agreement | KL(t‖s) | train time | inference |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let rows = std::iter::once(&study.teacher).chain(study.pairs.iter().flat_map(|(a, d)| [a, d]));
    for r in rows {
        let (agree, kl) = match r.fidelity {
            Some(f) => (
                format!("{:.2} %", 100.0 * f.agreement),
                format!("{:.4}", f.mean_kl),
            ),
            None => ("-".into(), "-".into()),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {:.2} % | {:.2} % | {agree} | {kl} | {:.1} s | {:.1} µs/image |",
            r.run,
            r.seed,
            r.val_errors,
            r.test_errors,
            100.0 * r.test_accuracy,
            100.0 * r.reliability.ece(),
            r.train_seconds,
            r.inference_us_per_image
        );
    }
    let _ = writeln!(
        s,
        "\nMean ± standard deviation over seeds (agreement and KL: with the teacher, on the \
         test set; ECE: {BINS} equal-width bins):\n"
    );
    let _ = writeln!(
        s,
        "| run | parameters | val errors | test errors | ECE (%) | agreement (%) | KL(t‖s) |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|");
    let t = &study.teacher;
    let _ = writeln!(
        s,
        "| teacher | {} | {} | {} | {:.2} | - | - |",
        t.parameters,
        t.val_errors,
        t.test_errors,
        100.0 * t.reliability.ece()
    );
    for (name, runs) in [
        ("student alone", study.alone().collect::<Vec<_>>()),
        ("student distilled", study.distilled().collect::<Vec<_>>()),
    ] {
        let fid =
            |f: fn(&Fidelity) -> f64| runs.iter().filter_map(move |r| r.fidelity.as_ref().map(f));
        let _ = writeln!(
            s,
            "| {name} | {} | {} | {} | {} | {} | {} |",
            runs.first().map_or(0, |r| r.parameters),
            mean_sd(runs.iter().map(|r| r.val_errors as f64), 1),
            mean_sd(runs.iter().map(|r| r.test_errors as f64), 1),
            mean_sd(runs.iter().map(|r| 100.0 * r.reliability.ece()), 2),
            mean_sd(fid(|f| 100.0 * f.agreement), 2),
            mean_sd(fid(|f| f.mean_kl), 4)
        );
    }
    let _ = writeln!(
        s,
        "\nPaired difference, distilled − alone (negative: distillation helped): test errors \
         {}; validation errors {}.",
        ci_text(&study.test_difference()),
        ci_text(&study.val_difference())
    );
    s
}

fn run_json(r: &RunSummary) -> serde_json::Value {
    json!({
        "run": r.run,
        "seed": r.seed,
        "model": r.model,
        "parameters": r.parameters,
        "val_errors": r.val_errors,
        "test_accuracy": r.test_accuracy,
        "test_errors": r.test_errors,
        "ece": r.reliability.ece(),
        "agreement": r.fidelity.map(|f| f.agreement),
        "kl_teacher_student": r.fidelity.map(|f| f.mean_kl),
        "train_seconds": r.train_seconds,
        "inference_us_per_image": r.inference_us_per_image,
        "val_accuracy_per_epoch": r.val_accuracy_per_epoch,
        "reliability": r.reliability.bins.iter().map(|b| json!({
            "count": b.count, "confidence_sum": b.confidence_sum, "correct": b.correct,
        })).collect::<Vec<_>>(),
    })
}

/// `comparison.json`: everything in the Markdown, and each run's reliability bins.
pub fn to_json(study: &StudyReport) -> serde_json::Value {
    let p = &study.preset;
    json!({
        "preset": p.name,
        "dataset": study.dataset,
        "val_images": study.val,
        "device": study.device,
        "teacher_recipe": p.teacher_recipe.to_json(),
        "student_recipe": p.student_recipe.to_json(),
        "temperature": json_f32(p.temperature),
        "alpha": json_f32(p.alpha),
        "loss": p.loss.to_json(),
        "verdict": study.verdict(),
        "test_errors_difference": study.test_difference().to_json(),
        "val_errors_difference": study.val_difference().to_json(),
        "teacher": run_json(&study.teacher),
        "pairs": study.pairs.iter().map(|(a, d)| json!({
            "seed": a.seed,
            "alone": run_json(a),
            "distilled": run_json(d),
        })).collect::<Vec<_>>(),
    })
}

/// Validation accuracy per epoch: the teacher, and the students' mean over seeds.
pub fn accuracy_svg(study: &StudyReport) -> String {
    let curve = |label: String, runs: Vec<&RunSummary>| {
        let epochs = runs
            .iter()
            .map(|r| r.val_accuracy_per_epoch.len())
            .min()
            .unwrap_or(0);
        Series {
            label,
            points: (0..epochs)
                .map(|e| {
                    let sum: f64 = runs.iter().map(|r| r.val_accuracy_per_epoch[e]).sum();
                    ((e + 1) as f64, 100.0 * sum / runs.len() as f64)
                })
                .collect(),
        }
    };
    let seeds = study.pairs.len();
    let series = [
        curve(
            format!("teacher ({})", study.teacher.model),
            vec![&study.teacher],
        ),
        curve(
            format!("student alone (mean of {seeds})"),
            study.alone().collect(),
        ),
        curve(
            format!("student distilled (mean of {seeds})"),
            study.distilled().collect(),
        ),
    ];
    plot::line_chart(
        &Axes {
            title: "Validation accuracy per epoch",
            x_label: "epoch",
            y_label: "validation accuracy (%)",
            log_x: false,
        },
        &series,
    )
}

/// `.NAME.TAG-PID` in the folder of `path` (NAME its file name): a temporary name
/// beside it, on the same file system, so that a rename onto `path` is atomic.
fn beside(path: &Path, tag: &str) -> std::path::PathBuf {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dir.join(format!(".{name}.{tag}-{}", std::process::id()))
}

/// Writes `path` through a temporary file in the same folder and a rename, so that a
/// crash never leaves a half-written file in its place.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let tmp = beside(path, "tmp");
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io(path))
}

/// Whether `dir` may become a folder [`write_folder_atomic`] writes: it has a name
/// (not `.` or `..`) and is absent, an empty folder, or (with `force`) any folder. Returns
/// whether it exists.
pub fn check_folder_target(dir: &Path, force: bool) -> Result<bool> {
    use crate::error::DistillError;
    let refuse = |why: &str| Err(DistillError::Config(format!("{}: {why}", dir.display())));
    if dir.file_name().is_none() {
        return refuse("names no folder of its own (give the folder to write, e.g. `web`)");
    }
    if !dir.exists() {
        return Ok(false);
    }
    if !dir.is_dir() {
        return refuse("exists and is not a folder");
    }
    let empty = std::fs::read_dir(dir).map_err(io(dir))?.next().is_none();
    if !empty && !force {
        return refuse("exists and is not empty: pass --force to replace it");
    }
    Ok(true)
}

/// Writes the folder `dir` holding `files` (relative paths and their bytes) as a
/// temporary folder beside it, synced, then renamed into place: a crash leaves either
/// the old folder or the whole new one (at worst, in the moment between the two renames,
/// the old one under `.NAME.old-PID` beside it), never a half-written one. `dir` must
/// pass [`check_folder_target`]; an existing one is replaced only once the new folder is
/// complete.
pub fn write_folder_atomic(dir: &Path, files: &[(String, Vec<u8>)], force: bool) -> Result<()> {
    use std::io::Write;
    let exists = check_folder_target(dir, force)?;
    let (tmp, old) = (beside(dir, "tmp"), beside(dir, "old"));
    let result = (|| {
        if let Some(parent) = dir.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        // NOTE: one left by a killed run of the same process id is not ours to merge.
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir(&tmp)?;
        for (file, bytes) in files {
            let path = tmp.join(file);
            if let Some(folder) = path.parent() {
                std::fs::create_dir_all(folder)?;
            }
            let mut out = std::fs::File::create(&path)?;
            out.write_all(bytes)?;
            out.sync_all()?;
        }
        if exists {
            std::fs::rename(dir, &old)?;
        }
        if let Err(e) = std::fs::rename(&tmp, dir) {
            if exists {
                let _ = std::fs::rename(&old, dir);
            }
            return Err(e);
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&tmp);
    let _ = std::fs::remove_dir_all(&old);
    result.map_err(io(dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::presets;

    fn row(run: &'static str, seed: u64, val: usize, test: usize) -> RunSummary {
        let mut reliability = Reliability::new(BINS);
        reliability.add(0.99, true);
        RunSummary {
            run,
            seed,
            model: "student-cnn".to_string(),
            parameters: 10,
            val_errors: val,
            test_accuracy: 1.0 - test as f64 / 10_000.0,
            test_errors: test,
            reliability,
            fidelity: (run != "teacher").then_some(Fidelity {
                agreement: 0.99,
                mean_kl: 0.01,
            }),
            train_seconds: 1.5,
            inference_us_per_image: 2.0,
            val_accuracy_per_epoch: vec![0.97, 0.98],
            train_steps: 2,
            gpu_queue: None,
        }
    }

    fn study() -> StudyReport {
        StudyReport {
            preset: *presets::find("default").unwrap(),
            dataset: "MNIST",
            val: 5000,
            device: "cpu".into(),
            teacher: row("teacher", 0, 40, 80),
            pairs: (0..5)
                .map(|k| {
                    (
                        row("student alone", k, 60, 150 + 5 * k as usize),
                        row("student distilled", k, 50, 130 + k as usize),
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn report_files_hold_every_run_and_the_paired_difference() {
        let dir = std::env::temp_dir().join(format!("kd-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let study = study();
        // Differences -20, -24, -28, -32, -36: mean -28, sd 6.3246, half-width 7.853.
        let d = study.test_difference();
        assert_eq!(d.mean, -28.0);
        let (lo, hi) = d.ci95.unwrap();
        assert!(
            (lo + 35.853).abs() < 1e-2 && (hi + 20.147).abs() < 1e-2,
            "{lo} {hi}"
        );
        write_report(&dir, &study).unwrap();
        let md = std::fs::read_to_string(dir.join("comparison.md")).unwrap();
        assert!(
            md.contains("distillation made 28.0 fewer test errors (95 % CI 20.1 to 35.9 fewer)"),
            "{md}"
        );
        assert!(
            md.contains("| student distilled | 4 | 50 | 134 | 98.66 % |"),
            "{md}"
        );
        assert!(
            md.contains("| student alone | 10 | 60.0 ± 0.0 | 160.0 ± 7.9 |"),
            "{md}"
        );
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("comparison.json")).unwrap())
                .unwrap();
        assert_eq!(json["pairs"][1]["alone"]["test_errors"], 155);
        assert_eq!(json["test_errors_difference"]["mean"], -28.0);
        // The settings as typed, not widened from f32 (0.0010000000474974513).
        assert_eq!(json["student_recipe"]["lr"], 0.001);
        assert_eq!(json["temperature"], 4.0);
        assert_eq!(train::json_f32(f32::NAN), serde_json::Value::Null);
        for svg in ["accuracy.svg", "reliability.svg"] {
            let text = std::fs::read_to_string(dir.join(svg)).unwrap();
            assert!(text.starts_with("<svg") && text.trim_end().ends_with("</svg>"));
        }
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names.len(),
            4,
            "no temporary file is left behind: {names:?}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn one_seed_shows_its_values_without_a_spread() {
        let mut study = study();
        study.pairs.truncate(1);
        let md = markdown(&study);
        assert!(md.contains("| student alone | 10 | 60.0 | 150.0 |"), "{md}");
        assert!(!md.contains("± 0.0"), "{md}");
    }

    #[test]
    fn write_atomic_keeps_the_old_file_when_it_cannot_write() {
        let dir = std::env::temp_dir().join(format!("kd-atomic-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.md");
        write_atomic(&path, b"old").unwrap();
        // A directory where the file should go: the rename fails, the temp file goes.
        let blocked = dir.join("sub");
        std::fs::create_dir_all(blocked.join("x")).unwrap();
        assert!(write_atomic(&blocked, b"new").is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
