//! `distill sweep`: the grid a recipe is chosen from, judged on the validation split.
//!
//! One teacher is trained (or reused from the sweep's folder) and its logits for the
//! training set computed once. Then every cell runs for every seed: the student alone
//! and the student distilled at each `(T, alpha)`, or, with widths, the student-cnn family
//! at each width alone and distilled (the capacity curve). Each finished run leaves a
//! small result file; a sweep that is stopped and started again reads those instead of
//! training again, and resumes a run cut off mid-way from its last epoch.
//!
//! The test set plays no part: the files and figures hold validation errors only.

use crate::data::Mnist;
use crate::error::{io, DistillError, Result};
use crate::plot::{self, Axes, HeatMap, Series};
use crate::presets::{Preset, Recipe};
use crate::progress::{say, ProgressMode};
use crate::stats::{self, Summary};
use crate::study::write_atomic;
use crate::train::{self, json_f32, Distillation, Loss, TrainOptions};
use engine::Device;
use models::{Network, NetworkSpec};
use serde_json::json;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// What `distill sweep` tries, and where it writes.
pub struct SweepOptions {
    /// The recipe: the teacher's, and the students' (the same for every cell).
    pub preset: Preset,
    /// The teacher network.
    pub teacher: NetworkSpec,
    /// The student network of a grid sweep (a width sweep builds its own).
    pub student: NetworkSpec,
    /// Temperatures of the grid; a width sweep uses the first.
    pub temperatures: Vec<f32>,
    /// Distillation weights of the grid; a width sweep uses the first.
    pub alphas: Vec<f32>,
    /// Conv channels of the student-cnn family for a width sweep; empty for a grid.
    pub widths: Vec<usize>,
    /// The teacher's seed and the first student seed.
    pub seed: u64,
    /// Student seeds per cell, at least 1.
    pub seeds: usize,
    /// The teacher's checkpoint, the result of each run, and the report.
    pub out_dir: PathBuf,
    /// What the runs print while they train.
    pub progress: ProgressMode,
}

impl SweepOptions {
    /// Checks the lists before anything is loaded; names the flag at fault.
    pub fn check(&self) -> Result<()> {
        let config = |m: String| Err(DistillError::Config(m));
        if self.temperatures.is_empty() {
            return config("--T needs at least one temperature".into());
        }
        if self.alphas.is_empty() {
            return config("--alpha needs at least one weight".into());
        }
        for &t in &self.temperatures {
            for &a in &self.alphas {
                Distillation::check(t, a, self.preset.loss)?;
            }
        }
        if self.seeds == 0 {
            return config("--seeds must be at least 1".into());
        }
        if !self.widths.is_empty() && (self.temperatures.len() > 1 || self.alphas.len() > 1) {
            return config("--widths distils at one --T and one --alpha; give one of each".into());
        }
        if let Some(w) = self.widths.iter().find(|&&w| w == 0 || w > 4096) {
            return config(format!(
                "--widths must be between 1 and 4096 channels, got {w}"
            ));
        }
        Ok(())
    }
}

/// student-cnn with `width` conv channels and a hidden layer of `4 · width` (16 and 64 is
/// student-cnn itself), with `base`'s normalisation.
pub fn student_of_width(base: &NetworkSpec, width: usize) -> NetworkSpec {
    // 28 -conv3-> 26 -pool-> 13: width · 13 · 13 features
    let mut spec = NetworkSpec::new(&format!("student-cnn-w{width}"))
        .conv2d("conv1", 1, width, 3)
        .relu()
        .max_pool2d(2)
        .flatten()
        .linear("fc1", width * 13 * 13, 4 * width)
        .relu()
        .linear("fc2", 4 * width, 10);
    spec.normalize = base.normalize;
    spec
}

/// One run of the sweep.
#[derive(Clone, Debug, PartialEq)]
pub struct Cell {
    /// Its result file's stem: `alone-seed0`, `T4-a0.9-seed0`, `T4-a1-dkd-b8-seed0`,
    /// `w8-alone-seed0`.
    pub key: String,
    /// The student it trains.
    pub student: NetworkSpec,
    /// `(T, alpha)` when distilled.
    pub kd: Option<(f32, f32)>,
    /// Its seed.
    pub seed: u64,
}

/// What one finished run gave.
#[derive(Clone, Debug, PartialEq)]
pub struct CellResult {
    /// The run.
    pub cell: Cell,
    /// The student's trainable values.
    pub parameters: usize,
    /// Validation images misclassified after the last epoch.
    pub val_errors: usize,
}

/// The sweep's results.
pub struct SweepReport {
    /// Every run, in the order they were listed.
    pub results: Vec<CellResult>,
    /// Runs trained by this call (the rest were read from earlier result files).
    pub trained_now: usize,
}

fn cells(opts: &SweepOptions) -> Vec<Cell> {
    let mut out = Vec::new();
    let seeds = (0..opts.seeds as u64).map(|k| opts.seed + k);
    // Decoupled KD's runs carry their beta, so that sweeps of several betas can share a
    // folder (and its teacher, and the runs alone).
    let loss = opts.preset.loss.suffix();
    for seed in seeds {
        if opts.widths.is_empty() {
            let alone = Cell {
                key: format!("alone-seed{seed}"),
                student: opts.student.clone(),
                kd: None,
                seed,
            };
            out.push(alone);
            for &t in &opts.temperatures {
                for &a in &opts.alphas {
                    out.push(Cell {
                        key: format!("T{t}-a{a}{loss}-seed{seed}"),
                        student: opts.student.clone(),
                        kd: Some((t, a)),
                        seed,
                    });
                }
            }
        } else {
            let (t, a) = (opts.temperatures[0], opts.alphas[0]);
            for &w in &opts.widths {
                let student = student_of_width(&opts.student, w);
                out.push(Cell {
                    key: format!("w{w}-alone-seed{seed}"),
                    student: student.clone(),
                    kd: None,
                    seed,
                });
                out.push(Cell {
                    key: format!("w{w}-T{t}-a{a}{loss}-seed{seed}"),
                    student,
                    kd: Some((t, a)),
                    seed,
                });
            }
        }
    }
    out
}

/// A sweep's runs resume: a restarted sweep continues a cut-off run.
fn options(recipe: &Recipe, seed: u64, out: PathBuf, progress: ProgressMode) -> TrainOptions {
    TrainOptions {
        resume: true,
        ..recipe.options(seed, out, progress)
    }
}

/// Everything a run's result depends on: a result file with another fingerprint is
/// trained again.
fn fingerprint(opts: &SweepOptions, cell: &Cell, data: &Mnist) -> serde_json::Value {
    let mut v = json!({
        "dataset": data.kind.name(),
        "val": data.val.len(),
        "teacher": serde_json::to_value(&opts.teacher).unwrap_or_default(),
        "teacher_seed": opts.seed,
        "teacher_recipe": opts.preset.teacher_recipe.to_json(),
        "student": serde_json::to_value(&cell.student).unwrap_or_default(),
        "student_recipe": opts.preset.student_recipe.to_json(),
        "seed": cell.seed,
        "temperature": cell.kd.map(|(t, _)| json_f32(t)),
        "alpha": cell.kd.map(|(_, a)| json_f32(a)),
    });
    // Only decoupled KD's runs name their loss, so KD results from before it existed
    // (and every run alone) keep their fingerprints.
    if let (Some(_), Loss::Dkd { .. }) = (cell.kd, opts.preset.loss) {
        v["loss"] = opts.preset.loss.to_json();
    }
    v
}

/// Runs every cell not already done, writes the report, and returns the results.
pub fn run_sweep(opts: &SweepOptions, data: &Mnist, device: &Device) -> Result<SweepReport> {
    opts.check()?;
    let runs_dir = opts.out_dir.join("runs");
    std::fs::create_dir_all(&runs_dir).map_err(io(&runs_dir))?;
    let p = &opts.preset;
    let teacher = Network::new(&opts.teacher, opts.seed, device)?;
    say(
        opts.progress,
        &format!(
            "teacher {} (reused when already trained here)",
            opts.teacher.name
        ),
    );
    let teacher_out = opts.out_dir.join("teacher.safetensors");
    train::train(
        &options(&p.teacher_recipe, opts.seed, teacher_out, opts.progress),
        &teacher,
        data,
        device,
        None,
    )?;
    let mut logits = None;
    let all = cells(opts);
    let mut results = Vec::new();
    let mut trained_now = 0;
    for (i, cell) in all.iter().enumerate() {
        let result_file = runs_dir.join(format!("{}.json", cell.key));
        let expected = fingerprint(opts, cell, data);
        if let Some(done) = read_result(&result_file, &expected) {
            results.push(CellResult {
                cell: cell.clone(),
                parameters: done.0,
                val_errors: done.1,
            });
            continue;
        }
        say(
            opts.progress,
            &format!("[{}/{}] {}", i + 1, all.len(), cell.key),
        );
        let student = Network::new(&cell.student, cell.seed, device)?;
        let checkpoint = runs_dir.join(format!("{}.safetensors", cell.key));
        let run_opts = options(
            &p.student_recipe,
            cell.seed,
            checkpoint.clone(),
            opts.progress,
        );
        let report = match cell.kd {
            None => train::train(&run_opts, &student, data, device, None)?,
            Some((t, a)) => {
                let mut kd = Distillation::with_loss(p.loss, &teacher, t, a)?;
                if !run_opts.jitter {
                    if logits.is_none() {
                        say(
                            opts.progress,
                            "computing the teacher's logits once for the sweep",
                        );
                        logits = Some(train::logits_for(&teacher, &data.train, 1000, device)?);
                    }
                    kd.logits = logits.clone();
                }
                train::train(&run_opts, &student, data, device, Some(&kd))?
            }
        };
        let val_errors = match report.epochs.last().and_then(|m| m.val.as_ref()) {
            Some(v) => v.errors,
            // Every epoch was done already (a checkpoint left by a cut-off sweep).
            None => train::evaluate(&student, &data.val, 1000, device)?.errors,
        };
        let parameters = student.parameter_count();
        let record = json!({
            "fingerprint": expected,
            "parameters": parameters,
            "val_errors": val_errors,
        });
        write_atomic(&result_file, (record.to_string() + "\n").as_bytes())?;
        // The result file is what a restart reads; the checkpoint only served a resume.
        let _ = std::fs::remove_file(models::checkpoint::state_path(&checkpoint));
        let _ = std::fs::remove_file(&checkpoint);
        trained_now += 1;
        results.push(CellResult {
            cell: cell.clone(),
            parameters,
            val_errors,
        });
    }
    write_report(opts, &results, data)?;
    Ok(SweepReport {
        results,
        trained_now,
    })
}

/// `(parameters, val_errors)` of a result file written for the same fingerprint.
fn read_result(path: &Path, expected: &serde_json::Value) -> Option<(usize, usize)> {
    let text = std::fs::read_to_string(path).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    if v["fingerprint"] != *expected {
        return None;
    }
    Some((
        v["parameters"].as_u64()? as usize,
        v["val_errors"].as_u64()? as usize,
    ))
}

/// The summary of one cell over seeds: its validation errors, and its paired difference
/// from the student alone of the same seeds (and width).
struct CellStats {
    errors: Summary,
    difference: Option<Summary>,
    parameters: usize,
}

fn cell_stats(
    results: &[CellResult],
    pick: impl Fn(&Cell) -> bool,
    alone: impl Fn(&Cell) -> bool,
) -> CellStats {
    let mine: Vec<&CellResult> = results.iter().filter(|r| pick(&r.cell)).collect();
    let is_kd = mine.first().is_some_and(|r| r.cell.kd.is_some());
    let errors = stats::summarize(&mine.iter().map(|r| r.val_errors as f64).collect::<Vec<_>>());
    let diffs: Vec<f64> = mine
        .iter()
        .filter_map(|r| {
            let base = results
                .iter()
                .find(|b| alone(&b.cell) && b.cell.seed == r.cell.seed)?;
            Some(r.val_errors as f64 - base.val_errors as f64)
        })
        .collect();
    CellStats {
        errors,
        // The student alone has no difference from itself.
        difference: (is_kd && !diffs.is_empty()).then(|| stats::summarize(&diffs)),
        parameters: mine.first().map_or(0, |r| r.parameters),
    }
}

fn diff_text(d: &Option<Summary>) -> String {
    match d {
        Some(Summary {
            mean,
            ci95: Some((lo, hi)),
            ..
        }) => format!("{mean:+.1} ({lo:+.1} to {hi:+.1})"),
        Some(s) => format!("{:+.1}", s.mean),
        None => "-".into(),
    }
}

fn write_report(opts: &SweepOptions, results: &[CellResult], data: &Mnist) -> Result<()> {
    let p = &opts.preset;
    let mut md = String::new();
    let _ = writeln!(
        md,
        "Sweep of preset `{}` on {}, judged on the {} validation images; {} seed{} per cell \
         ({} to {}); distilled with {}; students: {} epochs, batch {}, {} lr {}, {} \
         schedule{}.\n",
        p.name,
        data.kind.title(),
        data.val.len(),
        opts.seeds,
        if opts.seeds == 1 { "" } else { "s" },
        opts.seed,
        opts.seed + opts.seeds as u64 - 1,
        p.loss.describe(),
        p.student_recipe.epochs,
        p.student_recipe.batch,
        p.student_recipe.optimizer,
        p.student_recipe.lr,
        p.student_recipe.schedule.kind,
        if p.student_recipe.jitter {
            ", jitter"
        } else {
            ""
        }
    );
    let mut json_cells = Vec::new();
    if opts.widths.is_empty() {
        let alone = |c: &Cell| c.kd.is_none();
        let base = cell_stats(results, alone, alone);
        let _ = writeln!(
            md,
            "Student alone: {:.1} ± {:.1} validation errors.\n",
            base.errors.mean, base.errors.sd
        );
        let _ = writeln!(
            md,
            "| T | alpha | val errors (mean ± sd) | distilled − alone (95 % CI) |"
        );
        let _ = writeln!(md, "|---:|---:|---:|---:|");
        let mut values = Vec::new();
        let mut labels = Vec::new();
        let mut best: Option<(f64, usize, usize)> = None;
        for (i, &t) in opts.temperatures.iter().enumerate() {
            let (mut vrow, mut lrow) = (Vec::new(), Vec::new());
            for (j, &a) in opts.alphas.iter().enumerate() {
                let s = cell_stats(results, |c| c.kd == Some((t, a)), alone);
                let _ = writeln!(
                    md,
                    "| {t} | {a} | {:.1} ± {:.1} | {} |",
                    s.errors.mean,
                    s.errors.sd,
                    diff_text(&s.difference)
                );
                if best.is_none_or(|(m, _, _)| s.errors.mean < m) {
                    best = Some((s.errors.mean, i, j));
                }
                vrow.push(Some(s.errors.mean));
                lrow.push(format!(
                    "{:.1}, Δ {}",
                    s.errors.mean,
                    diff_text(&s.difference)
                ));
                json_cells.push(json!({
                    "temperature": json_f32(t), "alpha": json_f32(a),
                    "val_errors": s.errors.to_json(),
                    "difference": s.difference.as_ref().map(Summary::to_json),
                }));
            }
            values.push(vrow);
            labels.push(lrow);
        }
        if let Some((mean, i, j)) = best {
            let _ = writeln!(
                md,
                "\nBest cell: T = {}, alpha = {} ({mean:.1} validation errors on average).",
                opts.temperatures[i], opts.alphas[j]
            );
        }
        let title = format!(
            "Mean validation errors, {} (Δ: distilled − alone, 95 % CI); alone {:.1}",
            p.loss.describe(),
            base.errors.mean
        );
        let map = HeatMap {
            title: &title,
            row_name: "T",
            rows: opts.temperatures.iter().map(|t| t.to_string()).collect(),
            col_name: "alpha",
            cols: opts.alphas.iter().map(|a| a.to_string()).collect(),
            values,
            labels,
            marked: best.map(|(_, i, j)| (i, j)),
        };
        write_atomic(
            &opts.out_dir.join("heatmap.svg"),
            plot::heat_map(&map).as_bytes(),
        )?;
        let json = json!({
            "preset": p.name, "dataset": data.kind.name(), "val_images": data.val.len(),
            "seeds": opts.seeds, "loss": p.loss.to_json(), "alone": base.errors.to_json(),
            "best": best.map(|(_, i, j)| json!({
                "temperature": json_f32(opts.temperatures[i]),
                "alpha": json_f32(opts.alphas[j]),
            })),
            "cells": json_cells,
        });
        write_atomic(
            &opts.out_dir.join("sweep.json"),
            (serde_json::to_string_pretty(&json).unwrap_or_default() + "\n").as_bytes(),
        )?;
    } else {
        let (t, a) = (opts.temperatures[0], opts.alphas[0]);
        let _ = writeln!(
            md,
            "| width | parameters | alone: val errors | distilled ({}, T = {t}, alpha = {a}) | \
             distilled − alone (95 % CI) |",
            p.loss.describe()
        );
        let _ = writeln!(md, "|---:|---:|---:|---:|---:|");
        let (mut alone_curve, mut kd_curve) = (Vec::new(), Vec::new());
        for &w in &opts.widths {
            let name = format!("student-cnn-w{w}");
            let is_alone = |c: &Cell| c.student.name == name && c.kd.is_none();
            let alone = cell_stats(results, is_alone, is_alone);
            let kd = cell_stats(
                results,
                |c| c.student.name == name && c.kd.is_some(),
                is_alone,
            );
            let _ = writeln!(
                md,
                "| {w} | {} | {:.1} ± {:.1} | {:.1} ± {:.1} | {} |",
                alone.parameters,
                alone.errors.mean,
                alone.errors.sd,
                kd.errors.mean,
                kd.errors.sd,
                diff_text(&kd.difference)
            );
            alone_curve.push((alone.parameters as f64, alone.errors.mean));
            kd_curve.push((kd.parameters as f64, kd.errors.mean));
            json_cells.push(json!({
                "width": w, "parameters": alone.parameters,
                "alone": alone.errors.to_json(), "distilled": kd.errors.to_json(),
                "difference": kd.difference.as_ref().map(Summary::to_json),
            }));
        }
        let chart = plot::line_chart(
            &Axes {
                title: "Validation errors against student size",
                x_label: "parameters (log scale)",
                y_label: "validation errors (mean over seeds)",
                log_x: true,
            },
            &[
                Series {
                    label: "student alone".into(),
                    points: alone_curve,
                },
                Series {
                    label: format!("distilled ({}), T = {t}, alpha = {a}", p.loss.describe()),
                    points: kd_curve,
                },
            ],
        );
        write_atomic(&opts.out_dir.join("capacity.svg"), chart.as_bytes())?;
        let json = json!({
            "preset": p.name, "dataset": data.kind.name(), "val_images": data.val.len(),
            "seeds": opts.seeds, "loss": p.loss.to_json(),
            "temperature": json_f32(t), "alpha": json_f32(a),
            "widths": json_cells,
        });
        write_atomic(
            &opts.out_dir.join("capacity.json"),
            (serde_json::to_string_pretty(&json).unwrap_or_default() + "\n").as_bytes(),
        )?;
    }
    let name = if opts.widths.is_empty() {
        "sweep.md"
    } else {
        "capacity.md"
    };
    write_atomic(&opts.out_dir.join(name), md.as_bytes())
}
