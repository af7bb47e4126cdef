//! `distill train` killed with SIGKILL at many moments: each time the weights file and
//! the training state beside it load (the previous epoch's or the new one's, never a
//! torn file; the state at most one epoch ahead), the metrics file holds whole lines of
//! distinct epochs in order, and `--resume` then finishes with the very parameters,
//! optimizer state and metrics lines of a run that was never stopped.
//!
//! A small network (a description: 784-64-10) on 1,000 training images (`--val 59000`
//! holds out the rest), 2 epochs, from raw IDX copies of the official files (the same
//! hashes, no gunzip): a run takes a fraction of a second, so 24 kill points take seconds.

mod common;

use models::checkpoint;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Evenly spread kill points over an uninterrupted run's wall time.
const TIMED_KILLS: usize = 20;
const EPOCHS: u64 = 2;

/// The network every run trains.
const NETWORK: &str = r#"{"name": "kill-mlp", "layers": [
    {"type": "flatten"},
    {"type": "linear", "name": "fc1", "in_features": 784, "out_features": 64},
    {"type": "relu"},
    {"type": "linear", "name": "fc2", "in_features": 64, "out_features": 10}]}"#;

/// A fresh folder holding `net.json` and `data/`: the official MNIST files, raw.
fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kd-kill-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.join("data")).unwrap();
    fs::write(dir.join("net.json"), NETWORK).unwrap();
    for file in distill::data::DatasetKind::Mnist.files() {
        let (_, raw) = distill::data::read_file(&common::mnist_dir(), file.name).unwrap();
        fs::write(dir.join("data").join(file.name), raw).unwrap();
    }
    dir
}

/// `distill train` into `out` (in a [`scratch`] folder), `--resume` or `--force`, its
/// output thrown away.
fn start(out: &Path, resume: bool) -> Child {
    let dir = out.parent().unwrap();
    Command::new(env!("CARGO_BIN_EXE_distill"))
        .arg("train")
        .arg(format!("--model={}", dir.join("net.json").display()))
        .args(["--epochs", &EPOCHS.to_string()])
        .args(["--val", "59000", "--device", "cpu", "--quiet"])
        .arg(format!("--data={}", dir.join("data").display()))
        .arg(format!("--out={}", out.display()))
        .arg(if resume { "--resume" } else { "--force" })
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting the distill binary")
}

fn finish(mut child: Child, what: &str) {
    let status = child.wait().unwrap();
    assert!(status.success(), "{what}: {status}");
}

/// The epochs of the metrics file's lines, after checking that each is whole JSON.
fn metrics_epochs(path: &Path) -> Vec<u64> {
    let text = fs::read_to_string(path).unwrap_or_default();
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "a torn last line:\n{text}"
    );
    text.lines()
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("a line that is not JSON ({e}): {line}"));
            value["epoch"].as_u64().expect("a line without its epoch")
        })
        .collect()
}

/// The epoch of the checkpoint at `path`, 0 when there is none; it must load.
fn epoch_of(path: &Path, when: &str) -> u64 {
    match path.exists() {
        true => {
            let ckpt = checkpoint::read(path).unwrap_or_else(|e| panic!("{when}: {e}"));
            ckpt.metadata["epoch"].parse::<u64>().unwrap()
        }
        false => 0,
    }
}

/// What a killed run left: the weights and the state load, the state is the weights'
/// epoch or the next, and the metrics file has epochs 1, 2, ... once each, at most up to
/// the weights' epoch and at least the one before it.
fn check_left(out: &Path, metrics: &Path, when: &str) {
    let epochs = metrics_epochs(metrics);
    let expected: Vec<u64> = (1..=epochs.len() as u64).collect();
    assert_eq!(epochs, expected, "{when}: the metrics file's epochs");
    let saved = epoch_of(out, when);
    let state = epoch_of(&checkpoint::state_path(out), when);
    assert!(
        state == saved || state == saved + 1,
        "{when}: a training state of epoch {state} beside weights of epoch {saved}"
    );
    let lines = epochs.len() as u64;
    assert!(
        lines == saved || lines + 1 == saved,
        "{when}: {lines} metrics lines beside a checkpoint of epoch {saved}"
    );
}

/// Resumes `out` to the end and checks it against the uninterrupted run, and that no
/// temporary file of a killed write is left beside it.
fn resume_and_compare(out: &Path, metrics: &Path, reference: &Reference, when: &str) {
    finish(start(out, true), &format!("{when}: the resume"));
    let state = checkpoint::state_path(out);
    let prefixes =
        [out, &state].map(|p| format!("{}.tmp-", p.file_name().unwrap().to_string_lossy()));
    let left: Vec<String> = fs::read_dir(out.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| prefixes.iter().any(|p| name.starts_with(p)))
        .collect();
    assert!(left.is_empty(), "{when}: left after the resume: {left:?}");
    assert!(
        checkpoint::read(out).unwrap().tensors == reference.weights,
        "{when}: the resumed run ended with other parameters"
    );
    assert!(
        checkpoint::read(&state).unwrap().tensors == reference.state,
        "{when}: the resumed run ended with another optimizer state"
    );
    let lines = fs::read_to_string(metrics).unwrap();
    let without_times = |text: &str| -> Vec<serde_json::Value> {
        text.lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                let fields = v.as_object_mut().unwrap();
                fields.retain(|k, _| !k.contains("seconds") && !k.starts_with("samples_per"));
                v
            })
            .collect()
    };
    assert_eq!(
        without_times(&lines),
        without_times(&reference.metrics),
        "{when}: the metrics lines after the resume"
    );
}

struct Reference {
    weights: Vec<(String, Vec<usize>, Vec<f32>)>,
    state: Vec<(String, Vec<usize>, Vec<f32>)>,
    metrics: String,
    wall: Duration,
}

#[test]
fn a_run_killed_at_any_moment_resumes_to_the_uninterrupted_result() {
    let dir = scratch();
    let reference_out = dir.join("reference.safetensors");
    let t0 = Instant::now();
    finish(start(&reference_out, false), "the uninterrupted run");
    let reference = Reference {
        weights: checkpoint::read(&reference_out).unwrap().tensors,
        state: checkpoint::read(&checkpoint::state_path(&reference_out))
            .unwrap()
            .tensors,
        metrics: fs::read_to_string(dir.join("reference.metrics.jsonl")).unwrap(),
        wall: t0.elapsed(),
    };
    let all: Vec<u64> = (1..=EPOCHS).collect();
    assert_eq!(metrics_epochs(&dir.join("reference.metrics.jsonl")), all);

    for i in 0..TIMED_KILLS {
        let out = dir.join(format!("timed{i}.safetensors"));
        let metrics = dir.join(format!("timed{i}.metrics.jsonl"));
        let at = reference
            .wall
            .mul_f64((i as f64 + 0.5) / TIMED_KILLS as f64);
        let mut child = start(&out, false);
        std::thread::sleep(at);
        let _ = child.kill();
        child.wait().unwrap();
        let when = format!("killed after {at:?}");
        check_left(&out, &metrics, &when);
        resume_and_compare(&out, &metrics, &reference, &when);
    }

    // Killed while a file is being written, the state or the weights: as soon as its
    // temporary file shows.
    for (epoch, file) in (1..=EPOCHS).flat_map(|e| [(e, "optim.safetensors"), (e, "safetensors")]) {
        let stem = format!("saving{epoch}-{}", file.len());
        let out = dir.join(format!("{stem}.safetensors"));
        let metrics = dir.join(format!("{stem}.metrics.jsonl"));
        let mut child = start(&out, false);
        // The temporary file the write goes through (models::checkpoint::save): one
        // `stat` a poll, so that even a write of a millisecond is seen.
        let tmp = dir.join(format!("{stem}.{file}.tmp-{}", child.id()));
        // NOTE: generous: on a busy machine a run may take many times the reference's.
        let deadline = Instant::now() + (reference.wall * 4).max(Duration::from_secs(60));
        let mut seen = 0;
        while Instant::now() < deadline && seen < epoch {
            if tmp.exists() {
                seen += 1;
                if seen == epoch {
                    let _ = child.kill();
                    break;
                }
                // Past this epoch's write before looking for the next one.
                while tmp.exists() {}
            }
        }
        child.wait().unwrap();
        assert_eq!(seen, epoch, "never saw the write of epoch {epoch}'s {file}");
        let when = format!("killed while writing epoch {epoch}'s {file}");
        check_left(&out, &metrics, &when);
        resume_and_compare(&out, &metrics, &reference, &when);
    }
    let _ = fs::remove_dir_all(&dir);
}
