//! `distill export --format web`: a trained student and teacher (and a network of a
//! description with what those two lack) exported side by side,
//! the folder served from 127.0.0.1 by a small server here, opened by headless Chromium
//! on WebGPU (SwiftShader, Chromium's CPU adapter, so no GPU is needed) with
//! `?selftest`, which runs the 100 exported test images through each network on our
//! WGSL kernels and POSTs the logits back: they must match ours on the CPU within 1e-3.
//! And the export's bad input.
//!
//! Chromium comes from `$KD_CHROMIUM`, else `chromium`, `chromium-browser` or
//! `google-chrome` on the PATH; without one the browser check skips loudly, and with
//! `KD_REQUIRE_GPU=1` (as `.ci/run` sets) it fails instead.

mod common;

use distill::data::Mnist;
use engine::{no_grad, Device, Tensor};
use models::{checkpoint, Mode, Module};
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const TOL: f32 = 1e-3;
const SAMPLES: usize = 100;

const ODD: &str = r#"{"name": "odd", "layers": [
    {"type": "conv2d", "name": "c1", "in_channels": 1, "out_channels": 4, "kernel": 5,
     "stride": 2, "padding": 2},
    {"type": "leaky_relu", "negative_slope": 0.2},
    {"type": "max_pool2d", "kernel": 3, "stride": 2},
    {"type": "flatten"},
    {"type": "dropout", "p": 0.3},
    {"type": "linear", "name": "fc", "in_features": 144, "out_features": 10}]}"#;

fn scratch(test: &str) -> PathBuf {
    common::scratch(&format!("web-{test}"))
}

use common::distill;

fn chromium() -> Option<String> {
    let candidates = match std::env::var("KD_CHROMIUM") {
        Ok(path) => vec![path],
        Err(_) => ["chromium", "chromium-browser", "google-chrome"]
            .map(String::from)
            .to_vec(),
    };
    let found = candidates.into_iter().find(|c| {
        Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if found.is_none() {
        if std::env::var("KD_REQUIRE_GPU").is_ok_and(|v| v == "1") {
            panic!("KD_REQUIRE_GPU=1 but no Chromium was found (set $KD_CHROMIUM)");
        }
        eprintln!(
            "\n*** SKIPPED: no Chromium (chromium, chromium-browser, google-chrome or \
             $KD_CHROMIUM) to open the web export in; KD_REQUIRE_GPU=1 fails instead ***\n"
        );
    }
    found
}

/// Serves `root` on 127.0.0.1 (a free port, returned) until the page POSTs to
/// `/result`, whose body goes to the channel.
fn serve(root: PathBuf) -> (u16, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            // One thread a connection: one the browser opens ahead and leaves idle must
            // not hold up the others.
            let (root, tx) = (root.clone(), tx.clone());
            std::thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
                if let Some(body) = answer(stream, &root) {
                    let _ = tx.send(body);
                }
            });
        }
    });
    (port, rx)
}

/// Answers one request: a file of `root`, or a POST whose body it returns.
fn answer(mut stream: TcpStream, root: &Path) -> Option<String> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next()?.to_string(), parts.next()?.to_string());
    let mut length = 0;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        if header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let path = target
        .split('?')
        .next()
        .unwrap_or("/")
        .trim_start_matches('/');
    if method == "POST" {
        let mut body = vec![0; length];
        reader.read_exact(&mut body).ok()?;
        let _ =
            stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return Some(String::from_utf8_lossy(&body).into_owned());
    }
    let file = root.join(if path.is_empty() { "index.html" } else { path });
    let (status, body) = match fs::read(&file) {
        Ok(bytes) if !path.contains("..") => ("200 OK", bytes),
        _ => ("404 Not Found", Vec::new()),
    };
    let kind = match file.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript",
        Some("json") => "application/json",
        Some("wgsl") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&body);
    None
}

/// Kills the browser however the test ends.
struct Browser(Child);

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Our CPU logits of the first `SAMPLES` test images under the checkpoint at `path`.
fn cpu_logits(path: &Path, mnist: &Mnist) -> Vec<f32> {
    let (net, _) = checkpoint::load_network(path, &Device::Cpu).unwrap();
    let images: Vec<f32> = mnist.test.images()[..SAMPLES * 784].to_vec();
    let x = Tensor::from_vec(images, &[SAMPLES, 1, 28, 28], &Device::Cpu).unwrap();
    let _guard = no_grad();
    net.forward(&x, Mode::Eval).unwrap().to_vec().unwrap()
}

#[test]
fn the_page_runs_student_and_teacher_on_webgpu_as_the_cpu_does() {
    let Some(browser) = chromium() else { return };
    let dir = scratch("page");
    let data = common::mnist_dir();
    // And a description the built-in networks do not cover: a strided, padded conv
    // (no fused block), a leaky ReLU, an overlapping pool, dropout.
    let odd = dir.join("odd.json");
    fs::write(&odd, ODD).unwrap();
    let mut checkpoints = Vec::new();
    for (name, model) in [
        ("student", "student-cnn"),
        ("teacher", "teacher-cnn"),
        ("odd", odd.to_str().unwrap()),
    ] {
        let path = dir.join(format!("{name}.safetensors"));
        common::trained(model, &data, &path);
        checkpoints.push(path);
    }
    let site = dir.join("site");
    let [student, teacher, odd] = [0, 1, 2].map(|i| checkpoints[i].to_str().unwrap());
    let out = distill(&[
        "export",
        "--format",
        "web",
        "--checkpoint",
        student,
        "--checkpoint",
        teacher,
        "--checkpoint",
        odd,
        "--out",
        site.to_str().unwrap(),
        "--samples",
        "100",
        "--no-download",
        &format!("--data={}", data.display()),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let (port, results) = serve(site.clone());
    let child = Command::new(&browser)
        .args([
            "--headless=new",
            "--enable-unsafe-webgpu",
            "--use-webgpu-adapter=swiftshader",
            "--no-sandbox",
            "--no-first-run",
            &format!("--user-data-dir={}", dir.join("profile").display()),
            &format!("http://127.0.0.1:{port}/index.html?selftest"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _browser = Browser(child);
    let body = results
        .recv_timeout(Duration::from_secs(240))
        .expect("the page POSTed no result within 240 s");
    let result: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        result.get("error").is_none(),
        "the page failed: {}",
        result["error"]
    );

    let mnist = Mnist::load(&data).unwrap();
    for (i, name) in ["student", "teacher", "odd"].iter().enumerate() {
        let page = &result["networks"][i];
        assert_eq!(page["name"], *name);
        let theirs: Vec<f32> = page["logits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        let ours = cpu_logits(&checkpoints[i], &mnist);
        assert_eq!(
            theirs.len(),
            ours.len(),
            "{name}: {SAMPLES} images of 10 logits"
        );
        let worst = ours
            .iter()
            .zip(&theirs)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        eprintln!(
            "{name} on {}: max |webgpu - cpu| = {worst:.2e} over {SAMPLES} images, {:.1} ms an image",
            result["adapter"],
            page["ms_per_image"].as_f64().unwrap_or(f64::NAN)
        );
        assert!(
            worst <= TOL,
            "{name}: the page's logits differ from ours by {worst}"
        );
    }
    let _ = fs::remove_dir_all(&dir);
}

/// `distill export --format web --checkpoint CKPT --out OUT` and `more`.
fn export_web(ckpt: &Path, out: &Path, more: &[&str]) -> std::process::Output {
    let (ckpt, out) = (ckpt.to_str().unwrap(), out.to_str().unwrap());
    let args = [
        "export",
        "--format",
        "web",
        "--checkpoint",
        ckpt,
        "--out",
        out,
    ];
    distill(&[&args[..], more].concat())
}

#[test]
fn bad_exports_are_refused_and_leave_nothing_behind() {
    let dir = scratch("bad");
    let data = common::mnist_dir();
    let student = dir.join("student.safetensors");
    common::trained("student-cnn", &data, &student);
    let ckpt = student.to_str().unwrap();
    let data_arg = format!("--data={}", data.display());

    // Not a checkpoint.
    let junk = dir.join("junk.safetensors");
    fs::write(&junk, b"not a checkpoint at all").unwrap();
    let site = dir.join("site");
    let site_arg = site.to_str().unwrap();
    let out = export_web(&junk, &site, &[&data_arg]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("junk.safetensors"), "{err}");
    assert!(!site.exists(), "nothing is written for a bad checkpoint");

    // An unknown format.
    let out = distill(&[
        "export",
        "--format",
        "tflite",
        "--checkpoint",
        ckpt,
        "--out",
        site_arg,
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("tflite"));

    // An output folder that exists and is not empty: refused, its file untouched.
    fs::create_dir_all(&site).unwrap();
    fs::write(site.join("mine.txt"), b"keep me").unwrap();
    let out = export_web(&student, &site, &[&data_arg]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not empty") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(fs::read(site.join("mine.txt")).unwrap(), b"keep me");

    // With --force it is replaced whole; no temporary folder is left beside it.
    let out = export_web(&student, &site, &[&data_arg, "--force"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!site.join("mine.txt").exists());
    for file in [
        "index.html",
        "host.js",
        "page.js",
        "manifest.json",
        "weights/student.bin",
        "samples.bin",
    ] {
        assert!(site.join(file).is_file(), "{file}");
    }
    let leftovers: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-") || n.contains(".old-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // A folder that holds the checkpoint is not replaced, even with --force.
    let inside = site.join("student.safetensors");
    fs::copy(&student, &inside).unwrap();
    let out = export_web(&inside, &site, &[&data_arg, "--force"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("inside"));
    assert!(inside.is_file());

    // `.` names no folder of its own.
    let out = export_web(&student, Path::new("."), &["--force"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("names no folder"));

    // ONNX takes one network.
    let onnx = dir.join("two.onnx");
    let out = distill(&[
        "export",
        "--format",
        "onnx",
        "--checkpoint",
        ckpt,
        "--checkpoint",
        ckpt,
        "--out",
        onnx.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("one network"));
    assert!(!onnx.exists());
    let _ = fs::remove_dir_all(&dir);
}
