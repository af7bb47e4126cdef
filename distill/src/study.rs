//! `distill run`: the whole study in one command. Train the teacher, train the student
//! alone, distill the student from the teacher with the same seed, epochs and
//! optimizer, then compare the three as Markdown, JSON and an SVG plot.

use crate::data::Mnist;
use crate::error::{io, Result};
use crate::optim::OptimizerConfig;
use crate::presets::Preset;
use crate::progress::{say, ProgressMode};
use crate::train::{self, Distillation, TrainOptions, TrainReport};
use engine::{Device, QueueStats};
use models::{Network, NetworkSpec};
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
    /// One seed for all three runs: the two students start from the same parameters.
    pub seed: u64,
    /// Where the three checkpoints, their metrics and the comparison go; created if needed.
    pub out_dir: PathBuf,
    /// What the runs print while they train.
    pub progress: ProgressMode,
}

/// One row of the comparison.
#[derive(Clone, Debug, PartialEq)]
pub struct RunSummary {
    /// Which run: `teacher`, `student alone` or `student distilled`.
    pub run: &'static str,
    /// The network's name.
    pub model: String,
    /// Trainable values in the network.
    pub parameters: usize,
    /// Fraction of the test set classified correctly after the last epoch, in `[0, 1]`.
    pub test_accuracy: f64,
    /// Test examples misclassified after the last epoch.
    pub test_errors: usize,
    /// Wall-clock seconds of the training steps of all epochs, evaluations not included.
    pub train_seconds: f64,
    /// Microseconds per test image of one evaluation pass in batches of 1000, no gradients.
    pub inference_us_per_image: f64,
    /// Test accuracy after each epoch, in `[0, 1]`.
    pub accuracy_per_epoch: Vec<f64>,
    /// Training steps run.
    pub train_steps: usize,
    /// On a GPU, the submits and dispatches of those steps.
    pub gpu_queue: Option<QueueStats>,
}

/// Trains the teacher, the student alone and the distilled student, writes the report to
/// `opts.out_dir`, and returns the three rows in that order.
pub fn run_study(opts: &StudyOptions, data: &Mnist, device: &Device) -> Result<Vec<RunSummary>> {
    let p = &opts.preset;
    let (teacher_spec, student_spec) = (&opts.teacher, &opts.student);
    std::fs::create_dir_all(&opts.out_dir).map_err(io(&opts.out_dir))?;
    let train_opts = |jitter: bool, file: &str| TrainOptions {
        epochs: p.epochs,
        batch_size: p.batch,
        optimizer: OptimizerConfig::new(p.optimizer, p.lr),
        seed: opts.seed,
        jitter,
        out: opts.out_dir.join(file),
        resume: false,
        progress: opts.progress,
    };
    let mut rows = Vec::new();
    say(
        opts.progress,
        &format!("[1/3] teacher {}", teacher_spec.name),
    );
    let teacher = Network::new(teacher_spec, opts.seed, device)?;
    let report = train::train(
        &train_opts(p.teacher_jitter, "teacher.safetensors"),
        &teacher,
        data,
        device,
        None,
    )?;
    rows.push(summarize("teacher", &teacher, &report, data, device)?);
    say(opts.progress, &format!("[2/3] {} alone", student_spec.name));
    let alone = Network::new(student_spec, opts.seed, device)?;
    let report = train::train(
        &train_opts(p.student_jitter, "student.safetensors"),
        &alone,
        data,
        device,
        None,
    )?;
    rows.push(summarize("student alone", &alone, &report, data, device)?);
    say(
        opts.progress,
        &format!(
            "[3/3] {} distilled at T = {}, alpha = {}",
            student_spec.name, p.temperature, p.alpha
        ),
    );
    // The same seed: the same initial parameters and batch order as the student alone.
    let distilled = Network::new(student_spec, opts.seed, device)?;
    let kd = Distillation::new(&teacher, p.temperature, p.alpha)?;
    let distilled_opts = train_opts(p.student_jitter, "student-distilled.safetensors");
    let report = train::train(&distilled_opts, &distilled, data, device, Some(&kd))?;
    rows.push(summarize(
        "student distilled",
        &distilled,
        &report,
        data,
        device,
    )?);
    write_report(&opts.out_dir, p, opts.seed, device, &rows)?;
    Ok(rows)
}

fn summarize(
    run: &'static str,
    network: &Network,
    report: &TrainReport,
    data: &Mnist,
    device: &Device,
) -> Result<RunSummary> {
    // Timed apart from training, at the evaluation batch size.
    let eval = train::evaluate(network, &data.test, 1000, device)?;
    let (train_steps, gpu_queue) = report.queue();
    Ok(RunSummary {
        train_steps,
        gpu_queue,
        run,
        model: network.name().to_string(),
        parameters: network.parameter_count(),
        test_accuracy: eval.accuracy,
        test_errors: eval.errors,
        train_seconds: report.epochs.iter().map(|m| m.epoch_seconds).sum(),
        inference_us_per_image: 1e6 * eval.seconds / eval.total.max(1) as f64,
        accuracy_per_epoch: report.epochs.iter().map(|m| m.test.accuracy).collect(),
    })
}

/// `comparison.md`, `comparison.json` and `accuracy.svg` in `dir`, each written atomically.
pub fn write_report(
    dir: &Path,
    p: &Preset,
    seed: u64,
    device: &Device,
    rows: &[RunSummary],
) -> Result<()> {
    write_atomic(
        &dir.join("comparison.md"),
        markdown(p, seed, device, rows).as_bytes(),
    )?;
    let json = json!({
        "preset": p.name,
        "seed": seed,
        "device": device.to_string(),
        "epochs": p.epochs,
        "batch": p.batch,
        "optimizer": p.optimizer.name(),
        "lr": p.lr,
        "temperature": p.temperature,
        "alpha": p.alpha,
        "runs": rows.iter().map(|r| json!({
            "run": r.run,
            "model": r.model,
            "parameters": r.parameters,
            "test_accuracy": r.test_accuracy,
            "test_errors": r.test_errors,
            "train_seconds": r.train_seconds,
            "inference_us_per_image": r.inference_us_per_image,
            "accuracy_per_epoch": r.accuracy_per_epoch,
        })).collect::<Vec<_>>(),
    });
    let text = serde_json::to_string_pretty(&json).unwrap_or_default() + "\n";
    write_atomic(&dir.join("comparison.json"), text.as_bytes())?;
    write_atomic(&dir.join("accuracy.svg"), svg_plot(rows).as_bytes())
}

/// `comparison.md`: a line naming the recipe, then a table with one row per run.
pub fn markdown(p: &Preset, seed: u64, device: &Device, rows: &[RunSummary]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Preset `{}`, seed {seed}, {} epochs, batch {}, {} lr {}, T = {}, alpha = {}, on {device}.\n",
        p.name, p.epochs, p.batch, p.optimizer, p.lr, p.temperature, p.alpha
    );
    let _ = writeln!(
        s,
        "| run | model | parameters | test accuracy | test errors | train time | inference |"
    );
    let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|");
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.2} % | {} | {:.1} s | {:.1} µs/image |",
            r.run,
            r.model,
            r.parameters,
            100.0 * r.test_accuracy,
            r.test_errors,
            r.train_seconds,
            r.inference_us_per_image
        );
    }
    s
}

/// Test accuracy per epoch, one line per run.
pub fn svg_plot(rows: &[RunSummary]) -> String {
    const COLORS: [&str; 3] = ["#1f77b4", "#d62728", "#2ca02c"];
    let (w, h, left, right, top, bottom) = (760.0, 400.0, 70.0, 260.0, 30.0, 50.0);
    let epochs = rows
        .iter()
        .map(|r| r.accuracy_per_epoch.len())
        .max()
        .unwrap_or(1)
        .max(1);
    let all = rows
        .iter()
        .flat_map(|r| r.accuracy_per_epoch.iter().copied());
    let lo = all.clone().fold(1.0f64, f64::min).min(0.99);
    let lo = (lo * 100.0).floor() / 100.0;
    let (pw, ph) = (w - left - right, h - top - bottom);
    let x = |e: usize| {
        left + if epochs == 1 {
            pw / 2.0
        } else {
            pw * (e - 1) as f64 / (epochs - 1) as f64
        }
    };
    let y = |a: f64| top + ph * (1.0 - (a - lo) / (1.0 - lo).max(1e-9));
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="18" text-anchor="middle" font-size="14">Test accuracy per epoch</text>"#,
        left + pw / 2.0
    );
    for i in 0..=5 {
        let a = lo + (1.0 - lo) * i as f64 / 5.0;
        let _ = writeln!(
            s,
            r##"<line x1="{left}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{:.1} %</text>"##,
            left + pw,
            left - 6.0,
            y(a) + 4.0,
            100.0 * a,
            y = y(a)
        );
    }
    for e in 1..=epochs {
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{e}</text>"#,
            x(e),
            top + ph + 18.0
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">epoch</text>"#,
        left + pw / 2.0,
        h - 8.0
    );
    let _ = writeln!(
        s,
        r#"<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="black"/>"#
    );
    for (i, r) in rows.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let points: Vec<String> = r
            .accuracy_per_epoch
            .iter()
            .enumerate()
            .map(|(e, a)| format!("{:.1},{:.1}", x(e + 1), y(*a)))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"/>"#,
            points.join(" ")
        );
        for p in &points {
            let (px, py) = p.split_once(',').unwrap_or(("0", "0"));
            let _ = writeln!(s, r#"<circle cx="{px}" cy="{py}" r="3" fill="{color}"/>"#);
        }
        let ly = top + 20.0 + 20.0 * i as f64;
        let _ = writeln!(
            s,
            r#"<line x1="{}" x2="{}" y1="{ly}" y2="{ly}" stroke="{color}" stroke-width="2"/><text x="{}" y="{}">{} ({})</text>"#,
            w - right + 10.0,
            w - right + 30.0,
            w - right + 35.0,
            ly + 4.0,
            r.run,
            r.model
        );
    }
    s.push_str("</svg>\n");
    s
}

/// Writes `path` through a temporary file in the same folder and a rename, so that a
/// crash never leaves a half-written file in its place.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::presets;

    fn rows() -> Vec<RunSummary> {
        let row = |run, model: &str, errors: usize, acc: Vec<f64>| RunSummary {
            run,
            model: model.to_string(),
            train_steps: 2,
            gpu_queue: None,
            parameters: 10,
            test_accuracy: 1.0 - errors as f64 / 10_000.0,
            test_errors: errors,
            train_seconds: 1.5,
            inference_us_per_image: 2.0,
            accuracy_per_epoch: acc,
        };
        vec![
            row("teacher", "teacher-cnn", 100, vec![0.98, 0.99]),
            row("student alone", "student-cnn", 200, vec![0.97, 0.98]),
            row("student distilled", "student-cnn", 150, vec![0.975, 0.985]),
        ]
    }

    #[test]
    fn report_files_hold_every_run() {
        let dir = std::env::temp_dir().join(format!("kd-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let preset = presets::find("default").unwrap();
        write_report(&dir, preset, 3, &Device::Cpu, &rows()).unwrap();
        let md = std::fs::read_to_string(dir.join("comparison.md")).unwrap();
        assert!(
            md.contains("| student distilled | student-cnn | 10 | 98.50 % | 150 |"),
            "{md}"
        );
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("comparison.json")).unwrap())
                .unwrap();
        assert_eq!(json["seed"], 3);
        assert_eq!(json["runs"][1]["test_errors"], 200);
        let svg = std::fs::read_to_string(dir.join("accuracy.svg")).unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 3);
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 3, "{names:?}");
        std::fs::remove_dir_all(&dir).unwrap();
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
