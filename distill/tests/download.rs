//! The download path against a local HTTP server on 127.0.0.1: a small IDX set fetched
//! and verified; a corrupt file refused and not left behind; a connection cut midway
//! refused without a partial file under the final name, then fetched whole on a restart;
//! the next mirror tried when one fails; and `train` on an empty folder fetching the
//! official files from a mirror named by `$DISTILL_MIRROR`.

mod common;

use distill::data::{self, DataError, MnistFile};
use flate2::{write::GzEncoder, Compression};
use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

/// How the server answers a request for one file.
#[derive(Clone)]
enum Answer {
    /// 200 with these bytes.
    Whole(Vec<u8>),
    /// 200 announcing these bytes, then only the first half of them and a closed
    /// connection.
    Cut(Vec<u8>),
}

/// A server on an ephemeral port of 127.0.0.1 answering `GET /NAME` from `files` (404
/// for any other), in a thread that lives as long as the test process. Returns its
/// base URL; the answers can be changed through the map.
fn serve(files: HashMap<String, Answer>) -> (String, Arc<Mutex<HashMap<String, Answer>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}/", listener.local_addr().unwrap());
    let files = Arc::new(Mutex::new(files));
    let shared = files.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            // The headers, up to the empty line.
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let path = request.split_whitespace().nth(1).unwrap_or("/");
            let answer = shared
                .lock()
                .unwrap()
                .get(path.trim_start_matches('/'))
                .cloned();
            let (body, sent) = match &answer {
                Some(Answer::Whole(b)) => (b.as_slice(), b.len()),
                Some(Answer::Cut(b)) => (b.as_slice(), b.len() / 2),
                None => {
                    let _ = stream.write_all(
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                    continue;
                }
            };
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/gzip\r\n\
                 Connection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body[..sent]);
        }
    });
    (base, files)
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

/// A small IDX set: `n` 28×28 images and their labels for each split, as the four
/// files' names, their gzipped bytes and the hash of each decompressed.
fn small_set(n: u32) -> (Vec<MnistFile>, HashMap<String, Answer>) {
    let images = |n: u32| {
        let mut b = [2051u32, n, 28, 28].map(u32::to_be_bytes).concat();
        b.extend((0..n * 784).map(|i| (i % 251) as u8));
        b
    };
    let labels = |n: u32| {
        let mut b = [2049u32, n].map(u32::to_be_bytes).concat();
        b.extend((0..n).map(|i| (i % 10) as u8));
        b
    };
    let raw = [
        ("train-images-idx3-ubyte", images(n)),
        ("train-labels-idx1-ubyte", labels(n)),
        ("t10k-images-idx3-ubyte", images(n / 2 + 1)),
        ("t10k-labels-idx1-ubyte", labels(n / 2 + 1)),
    ];
    let files = raw
        .iter()
        .map(|(name, bytes)| MnistFile {
            name,
            sha256: Box::leak(data::sha256_hex(bytes).into_boxed_str()),
        })
        .collect();
    let served = raw
        .iter()
        .map(|(name, bytes)| (format!("{name}.gz"), Answer::Whole(gzip(bytes))))
        .collect();
    (files, served)
}

fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kd-download-{test}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    dir
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn whole(answer: &Answer) -> &[u8] {
    match answer {
        Answer::Whole(b) | Answer::Cut(b) => b,
    }
}

#[test]
fn a_small_set_is_fetched_verified_and_stored_as_served() {
    let (files, served) = small_set(5);
    let (base, _) = serve(served.clone());
    let dir = scratch("fetch");
    data::download_files(&files, &[base], &dir).unwrap();
    let mut want: Vec<String> = served.keys().cloned().collect();
    want.sort();
    assert_eq!(listing(&dir), want);
    for (name, answer) in &served {
        assert_eq!(fs::read(dir.join(name)).unwrap(), whole(answer), "{name}");
    }
    // They read back as a data set with those hashes.
    let split = data::load_split(&dir, files[0], files[1]).unwrap();
    assert_eq!(split.len(), 5);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_corrupt_file_is_refused_and_not_left_behind() {
    let (files, mut served) = small_set(4);
    // The labels of another set: a valid gzip whose contents hash to something else.
    let (_, other) = small_set(6);
    let name = "train-labels-idx1-ubyte.gz".to_string();
    served.insert(name.clone(), other[&name].clone());
    let (base, _) = serve(served);
    let dir = scratch("corrupt");
    let err = data::download_files(&files, &[base], &dir).unwrap_err();
    assert!(matches!(err, DataError::Download { .. }), "{err}");
    assert!(err.to_string().contains("SHA-256"), "{err}");
    // The image file before it verified and stays; nothing of the labels, no temporary.
    assert_eq!(listing(&dir), ["train-images-idx3-ubyte.gz"]);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_cut_connection_leaves_no_partial_file_and_a_restart_fetches_it_whole() {
    let (files, served) = small_set(8);
    let (base, answers) = serve(served.clone());
    let name = "t10k-images-idx3-ubyte.gz".to_string();
    let good = served[&name].clone();
    answers
        .lock()
        .unwrap()
        .insert(name.clone(), Answer::Cut(whole(&good).to_vec()));
    let dir = scratch("cut");
    let err = data::download_files(&files, std::slice::from_ref(&base), &dir).unwrap_err();
    assert!(matches!(err, DataError::Download { .. }), "{err}");
    let left = listing(&dir);
    assert!(!left.contains(&name), "a partial {name}: {left:?}");
    assert!(left.iter().all(|f| !f.contains("part")), "{left:?}");
    // The restart skips what it has and fetches the rest.
    answers.lock().unwrap().insert(name.clone(), good.clone());
    data::download_files(&files, &[base], &dir).unwrap();
    assert_eq!(fs::read(dir.join(&name)).unwrap(), whole(&good));
    assert_eq!(listing(&dir).len(), 4);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn the_next_mirror_serves_what_the_first_lacks_and_a_failure_names_every_url() {
    let (files, served) = small_set(3);
    let (empty, _) = serve(HashMap::new());
    let (full, _) = serve(served);
    let dir = scratch("mirrors");
    data::download_files(&files, &[empty.clone(), full], &dir).unwrap();
    assert_eq!(listing(&dir).len(), 4);
    let _ = fs::remove_dir_all(&dir);
    // Only the empty one: the error names each URL tried, and no folder is left.
    let err = data::download_files(&files, std::slice::from_ref(&empty), &dir).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains(&format!("{empty}train-images-idx3-ubyte.gz")),
        "{message}"
    );
    assert!(message.contains("404"), "{message}");
    assert!(!dir.exists(), "{} was left", dir.display());
}

/// The official files, as `.gz`, from where the other program tests read them, as a
/// mirror lays them out (`mnist/NAME.gz`).
fn official_gz() -> HashMap<String, Answer> {
    let dir = common::mnist_dir();
    data::DatasetKind::Mnist
        .files()
        .iter()
        .map(|f| {
            let name = format!("{}.gz", f.name);
            let bytes = fs::read(dir.join(&name)).unwrap();
            (format!("mnist/{name}"), Answer::Whole(bytes))
        })
        .collect()
}

#[test]
fn train_on_an_empty_folder_downloads_mnist_from_the_mirror_it_is_given() {
    let (base, _) = serve(official_gz());
    let dir = scratch("train");
    let data_dir = dir.join("data");
    fs::create_dir_all(&dir).unwrap();
    let run = |extra: &[&str]| {
        common::quick_train("student-cnn", &data_dir, &dir.join("s.safetensors"))
            .arg("--force")
            .args(extra)
            .env(data::MIRROR_ENV, &base)
            .output()
            .unwrap()
    };
    // --no-download: the missing files are an error, and nothing is fetched.
    let refused = run(&["--no-download"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("distill download"));
    assert!(!data_dir.exists());
    let out = run(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("downloading them"), "{stderr}");
    assert_eq!(listing(&data_dir).len(), 4);
    // A second run finds them and fetches nothing.
    let again = run(&[]);
    assert!(again.status.success());
    assert!(!String::from_utf8_lossy(&again.stderr).contains("downloading"));
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn no_network_is_a_message_saying_where_to_put_the_files() {
    // Port 1 on 127.0.0.1: nothing listens, the connection is refused at once.
    let dir = scratch("offline");
    fs::create_dir_all(&dir).unwrap();
    let data_dir = dir.join("data");
    let out = Command::new(env!("CARGO_BIN_EXE_distill"))
        .args(["eval", "--checkpoint", "x.safetensors", "--device", "cpu"])
        .arg(format!("--data={}", data_dir.display()))
        .env(data::MIRROR_ENV, "http://127.0.0.1:1/")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    for part in [
        "could not be downloaded",
        &data_dir.display().to_string(),
        "MNIST_DIR",
        "DISTILL_MIRROR",
    ] {
        assert!(stderr.contains(part), "`{part}` not in: {stderr}");
    }
    assert!(!data_dir.exists(), "a folder was left for nothing");
    let _ = fs::remove_dir_all(&dir);
}
