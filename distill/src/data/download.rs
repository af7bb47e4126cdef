//! Fetching a data set: the four `.gz` files from a public mirror (or `$DISTILL_MIRROR`),
//! each verified against its official SHA-256 before it is stored under its final name.
//! `distill download` runs it; `train`, `distill`, `run`, `sweep` and `eval` run it for
//! a data folder that lacks a file (unless `--no-download`).

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::idx::{find_file, gunzip, read_file, verify_sha256};
use super::{DataError, DatasetKind, MnistFile};

/// MNIST's mirrors, tried in order; each serves `NAME.gz` for the four official names.
pub const MIRRORS: [&str; 2] = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
];

/// Fashion-MNIST's: Zalando's bucket, then the files in its GitHub repository.
pub const FASHION_MIRRORS: [&str; 2] = [
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
];

/// The largest `.gz` we accept (train images are about 10 MB).
const MAX_DOWNLOAD: u64 = 64 << 20;

/// The environment variable naming a mirror to use instead of the public ones: a base
/// URL laid out as the `data` folder, serving `mnist/NAME.gz` and
/// `fashion-mnist/NAME.gz` (a local copy served by any static server, a company proxy).
pub const MIRROR_ENV: &str = "DISTILL_MIRROR";

/// The mirrors to try for `kind`, in order: `$DISTILL_MIRROR/KIND/` alone when the
/// variable is set (and not empty), else the public ones.
pub fn mirrors(kind: DatasetKind) -> Vec<String> {
    match std::env::var(MIRROR_ENV) {
        Ok(url) if !url.is_empty() => {
            let slash = if url.ends_with('/') { "" } else { "/" };
            vec![format!("{url}{slash}{}/", kind.name())]
        }
        _ => kind.mirrors().iter().map(|m| m.to_string()).collect(),
    }
}

/// Fetches every file of `kind` not already present and valid in `dir` (created if
/// needed), printing progress to stderr.
pub fn download(kind: DatasetKind, dir: &Path) -> Result<(), DataError> {
    download_files(&kind.files(), &mirrors(kind), dir)
}

/// [`download`] of any `files` (their names and the SHA-256 of each one decompressed)
/// from `mirrors`, tried in order for each file.
pub fn download_files(
    files: &[MnistFile],
    mirrors: &[String],
    dir: &Path,
) -> Result<(), DataError> {
    // The folders made here, innermost first: on failure they go again if still empty.
    let made: Vec<&Path> = dir
        .ancestors()
        .take_while(|d| !d.as_os_str().is_empty() && !d.exists())
        .collect();
    fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    let fetched = fetch_all(files, mirrors, dir);
    if fetched.is_err() {
        for folder in made {
            // Best effort: `remove_dir` leaves a folder that is not empty.
            let _ = fs::remove_dir(folder);
        }
    }
    fetched
}

fn fetch_all(files: &[MnistFile], mirrors: &[String], dir: &Path) -> Result<(), DataError> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(300)))
        .build()
        .into();
    for &file in files {
        if present_and_valid(dir, file)? {
            eprintln!("{}: present and valid, skipped", file.name);
            continue;
        }
        let mut failures = Vec::new();
        for mirror in mirrors {
            let url = format!("{mirror}{}.gz", file.name);
            eprintln!("{}: fetching {url}", file.name);
            let saved = fetch(&agent, &url)
                .and_then(|gz| save_verified(dir, file.name, file.sha256, gz.as_slice()));
            match saved {
                Ok(path) => {
                    eprintln!("{}: verified, saved to {}", file.name, path.display());
                    failures.clear();
                    break;
                }
                Err(e) => {
                    eprintln!("{}: {e}", file.name);
                    failures.push(match e {
                        DataError::Download { detail, .. } => format!("{url}: {detail}"),
                        e => format!("{url}: {e}"),
                    });
                }
            }
        }
        if !failures.is_empty() {
            let detail = failures.join("; ");
            return Err(DataError::Download {
                file: file.name.to_string(),
                detail,
            });
        }
    }
    Ok(())
}

/// Whether `dir` already holds a valid copy of `file`. An invalid copy is removed, since
/// the loader would find it before the `.gz` about to be downloaded.
fn present_and_valid(dir: &Path, file: MnistFile) -> Result<bool, DataError> {
    if find_file(dir, file.name).is_err() {
        return Ok(false);
    }
    let checked = read_file(dir, file.name).and_then(|(path, bytes)| {
        verify_sha256(&path.display().to_string(), &bytes, file.sha256).map(|()| path)
    });
    match checked {
        Ok(_) => Ok(true),
        Err(e) => {
            let path = find_file(dir, file.name)?;
            eprintln!("{}: {e}; removing {}", file.name, path.display());
            fs::remove_file(&path).map_err(|e| DataError::io(&path, e))?;
            Ok(false)
        }
    }
}

/// The body at `url`, whole (a connection that ends early is an error, never a shorter
/// file), with its progress on stderr: an `indicatif` bar on a terminal (as the epochs'),
/// a line per quarter otherwise.
fn fetch(agent: &ureq::Agent, url: &str) -> Result<Vec<u8>, DataError> {
    use indicatif::{ProgressBar, ProgressStyle};
    use std::io::IsTerminal;
    let failed = |detail: String| DataError::Download {
        file: url.to_string(),
        detail,
    };
    let mut response = agent.get(url).call().map_err(|e| failed(e.to_string()))?;
    let total = response.body().content_length().filter(|&t| t > 0);
    let mut reader = response
        .body_mut()
        .with_config()
        .limit(MAX_DOWNLOAD)
        .reader();
    let bar = total.filter(|_| std::io::stderr().is_terminal()).map(|t| {
        let style =
            ProgressStyle::with_template("  [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
        ProgressBar::new(t).with_style(style)
    });
    let mut bytes = Vec::with_capacity(total.unwrap_or(0).min(MAX_DOWNLOAD) as usize);
    let mut chunk = vec![0u8; 1 << 16];
    let mut quarter = 0;
    loop {
        let n = reader.read(&mut chunk).map_err(|e| failed(e.to_string()))?;
        if n == 0 {
            break;
        }
        bytes.extend_from_slice(&chunk[..n]);
        let done = bytes.len() as u64;
        match (&bar, total) {
            (Some(bar), _) => bar.set_position(done),
            (None, Some(total)) if done * 4 >= (quarter + 1) * total => {
                quarter = done * 4 / total;
                eprintln!("  {done} of {total} bytes ({}%)", done * 100 / total);
            }
            _ => {}
        }
    }
    if let Some(bar) = bar {
        bar.finish();
    }
    match total {
        Some(total) if bytes.len() as u64 != total => Err(failed(format!(
            "the connection ended after {} of {total} bytes",
            bytes.len()
        ))),
        _ => Ok(bytes),
    }
}

/// Reads a `.gz` stream, checks that it decompresses to bytes hashing to `sha256`, and
/// only then stores it as `dir/NAME.gz`, through a temporary file in `dir` renamed into
/// place so that a reader never sees half a file. Returns the stored path.
pub fn save_verified(
    dir: &Path,
    name: &str,
    sha256: &str,
    mut gz: impl Read,
) -> Result<PathBuf, DataError> {
    let path = dir.join(format!("{name}.gz"));
    let shown = path.display().to_string();
    let mut bytes = Vec::new();
    gz.read_to_end(&mut bytes).map_err(|e| DataError::Io {
        file: shown.clone(),
        source: e,
    })?;
    verify_sha256(&shown, &gunzip(&bytes, &shown)?, sha256)?;

    let tmp = dir.join(format!(".{name}.gz.part-{}", std::process::id()));
    let written = fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(&bytes).and_then(|()| f.sync_all()))
        .and_then(|()| fs::rename(&tmp, &path));
    if let Err(e) = written {
        // Best effort: the temporary file may not exist, and the write error matters more.
        let _ = fs::remove_file(&tmp);
        return Err(DataError::io(&path, e));
    }
    Ok(path)
}
