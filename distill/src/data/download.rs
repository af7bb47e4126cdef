//! `distill download`: fetch the four `.gz` files from a public mirror, verify, store.

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

/// Fetches every file of `kind` not already present and valid in `dir` (created if
/// needed), printing progress to stderr.
pub fn download(kind: DatasetKind, dir: &Path) -> Result<(), DataError> {
    fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(300)))
        .build()
        .into();
    for file in kind.files() {
        if present_and_valid(dir, file)? {
            eprintln!("{}: present and valid, skipped", file.name);
            continue;
        }
        let mut failures = Vec::new();
        for mirror in kind.mirrors() {
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
                    failures.push(format!("{url}: {e}"));
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

fn fetch(agent: &ureq::Agent, url: &str) -> Result<Vec<u8>, DataError> {
    let failed = |detail: String| DataError::Download {
        file: url.to_string(),
        detail,
    };
    let mut response = agent.get(url).call().map_err(|e| failed(e.to_string()))?;
    response
        .body_mut()
        .with_config()
        .limit(MAX_DOWNLOAD)
        .read_to_vec()
        .map_err(|e| failed(e.to_string()))
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
