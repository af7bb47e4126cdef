//! IDX files: find, decompress, verify, parse.
//!
//! Layout (big-endian u32s): magic, count, [rows, cols,] then the bytes, row-major.

use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;
use sha2::{Digest, Sha256};

use super::{DataError, IMAGE_PIXELS, IMAGE_SIDE, NUM_CLASSES};

const IMAGES_MAGIC: u32 = 0x0000_0803;
const LABELS_MAGIC: u32 = 0x0000_0801;
const IMAGES_HEADER: usize = 16;
const LABELS_HEADER: usize = 8;

/// `dir/NAME` if it exists, else `dir/NAME.gz`.
pub fn find_file(dir: &Path, name: &str) -> Result<PathBuf, DataError> {
    let raw = dir.join(name);
    if raw.is_file() {
        return Ok(raw);
    }
    let gz = dir.join(format!("{name}.gz"));
    if gz.is_file() {
        return Ok(gz);
    }
    Err(DataError::Missing {
        // NOTE: `Mnist::load_dataset` names the other data set when it is that one's file.
        dataset: super::DatasetKind::Mnist,
        dir: dir.to_path_buf(),
        file: name.to_string(),
    })
}

/// Finds `name` in `dir` and returns its path and its decompressed bytes.
pub fn read_file(dir: &Path, name: &str) -> Result<(PathBuf, Vec<u8>), DataError> {
    let path = find_file(dir, name)?;
    let bytes = std::fs::read(&path).map_err(|e| DataError::io(&path, e))?;
    if path.extension().is_some_and(|ext| ext == "gz") {
        let raw = gunzip(&bytes, &path.display().to_string())?;
        Ok((path, raw))
    } else {
        Ok((path, bytes))
    }
}

/// Decompresses a whole `.gz` file; `file` names it in errors.
pub fn gunzip(gz: &[u8], file: &str) -> Result<Vec<u8>, DataError> {
    // MNIST compresses about 5x; one reservation avoids most regrowth.
    let mut raw = Vec::with_capacity(gz.len().saturating_mul(5));
    match GzDecoder::new(gz).read_to_end(&mut raw) {
        Ok(_) => Ok(raw),
        // NOTE: a cut-off .gz ends the stream early. `read_to_end` keeps what it decoded,
        // so report the sizes from the IDX header as for a cut-off raw file.
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => match idx_total_len(&raw) {
            Some(expected) if expected > raw.len() => Err(DataError::Truncated {
                file: file.to_string(),
                expected,
                actual: raw.len(),
            }),
            _ => Err(DataError::Io {
                file: file.to_string(),
                source: e,
            }),
        },
        Err(e) => Err(DataError::Io {
            file: file.to_string(),
            source: e,
        }),
    }
}

/// The size an IDX file's header promises, if its header is complete and its magic known.
fn idx_total_len(bytes: &[u8]) -> Option<usize> {
    let magic = be_u32(bytes, 0)?;
    let count = be_u32(bytes, 4)? as usize;
    match magic {
        LABELS_MAGIC => count.checked_add(LABELS_HEADER),
        IMAGES_MAGIC => {
            let pixels = (be_u32(bytes, 8)? as usize).checked_mul(be_u32(bytes, 12)? as usize)?;
            count.checked_mul(pixels)?.checked_add(IMAGES_HEADER)
        }
        _ => None,
    }
}

fn be_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let word = bytes.get(at..at + 4)?;
    Some(u32::from_be_bytes([word[0], word[1], word[2], word[3]]))
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Checks that the (decompressed) `bytes` of `file` hash to `expected` (lowercase hex).
pub fn verify_sha256(file: &str, bytes: &[u8], expected: &str) -> Result<(), DataError> {
    let actual = sha256_hex(bytes);
    if actual == expected.to_ascii_lowercase() {
        Ok(())
    } else {
        Err(DataError::HashMismatch {
            file: file.to_string(),
            expected: expected.to_string(),
            actual,
        })
    }
}

/// Reads the `N` big-endian u32s of an IDX header, checking the magic (the first).
fn header<const N: usize>(bytes: &[u8], file: &str, magic: u32) -> Result<[u32; N], DataError> {
    let mut words = [0; N];
    for (i, word) in words.iter_mut().enumerate() {
        *word = be_u32(bytes, 4 * i).ok_or_else(|| DataError::Truncated {
            file: file.to_string(),
            expected: 4 * N,
            actual: bytes.len(),
        })?;
        if i == 0 && *word != magic {
            let file = file.to_string();
            return Err(DataError::BadMagic {
                file,
                expected: magic,
                actual: *word,
            });
        }
    }
    Ok(words)
}

/// The `len` bytes after the header, which must end the file.
fn payload<'a>(
    bytes: &'a [u8],
    file: &str,
    header: usize,
    len: usize,
) -> Result<&'a [u8], DataError> {
    let expected = header.saturating_add(len);
    if bytes.len() < expected {
        let file = file.to_string();
        return Err(DataError::Truncated {
            file,
            expected,
            actual: bytes.len(),
        });
    }
    if bytes.len() > expected {
        return Err(DataError::BadShape {
            file: file.to_string(),
            detail: format!(
                "{} bytes past the {expected} the header promises",
                bytes.len() - expected
            ),
        });
    }
    Ok(&bytes[header..])
}

/// Parses an images IDX file (decompressed) into `count * 784` pixels `byte / 255`.
pub fn parse_idx_images(bytes: &[u8], file: &str) -> Result<Vec<u8>, DataError> {
    let [_, count, rows, cols] = header::<4>(bytes, file, IMAGES_MAGIC)?;
    if (rows as usize, cols as usize) != (IMAGE_SIDE, IMAGE_SIDE) {
        return Err(DataError::BadShape {
            file: file.to_string(),
            detail: format!("images are {rows}x{cols}, expected {IMAGE_SIDE}x{IMAGE_SIDE}"),
        });
    }
    let len = (count as usize).saturating_mul(IMAGE_PIXELS);
    Ok(payload(bytes, file, IMAGES_HEADER, len)?.to_vec())
}

/// Parses a labels IDX file (decompressed); every label must be a digit `0..10`.
pub fn parse_idx_labels(bytes: &[u8], file: &str) -> Result<Vec<u8>, DataError> {
    let [_, count] = header::<2>(bytes, file, LABELS_MAGIC)?;
    let labels = payload(bytes, file, LABELS_HEADER, count as usize)?;
    if let Some(index) = labels.iter().position(|&l| l as usize >= NUM_CLASSES) {
        let label = labels[index];
        return Err(DataError::BadLabel {
            file: file.to_string(),
            index,
            label,
        });
    }
    Ok(labels.to_vec())
}
