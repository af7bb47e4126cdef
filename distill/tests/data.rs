//! MNIST loading against the official files in `../shared/data/mnist`, every bad-input
//! error on small synthetic IDX files, and the batching contract.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use distill::data::{
    epoch_order, gunzip, jitter_shift, load_split, parse_idx_images, parse_idx_labels, pixel,
    read_file, resolve_data_dir, save_verified, sha256_hex, validation_split, verify_sha256, Batch,
    Batching, DataError, Dataset, DatasetKind, Mnist, FILES, IMAGE_PIXELS, IMAGE_SIDE, JITTER_MAX,
    TEST_IMAGES, TEST_LABELS,
};
use proptest::prelude::*;

fn shared_mnist_dir() -> PathBuf {
    common::mnist_dir()
}

/// Loaded once for all the tests that read the official data.
fn mnist() -> &'static Mnist {
    static MNIST: OnceLock<Mnist> = OnceLock::new();
    MNIST.get_or_init(|| match Mnist::load(&shared_mnist_dir()) {
        Ok(m) => m,
        Err(e) => panic!("loading the official MNIST files: {e}"),
    })
}

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("distill-data-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn write(&self, name: &str, bytes: &[u8]) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, bytes).unwrap();
        path.display().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An images IDX file: `count` images of `rows x cols` bytes, image `i` filled with `i`.
fn images_idx(count: u32, rows: u32, cols: u32) -> Vec<u8> {
    let mut bytes = [0x0803, count, rows, cols].map(u32::to_be_bytes).concat();
    for i in 0..count {
        bytes.extend(std::iter::repeat_n(i as u8, (rows * cols) as usize));
    }
    bytes
}

fn labels_idx(labels: &[u8]) -> Vec<u8> {
    let mut bytes = [0x0801, labels.len() as u32].map(u32::to_be_bytes).concat();
    bytes.extend_from_slice(labels);
    bytes
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn assert_mentions(err: &DataError, parts: &[&str]) {
    let msg = err.to_string();
    for part in parts {
        assert!(msg.contains(part), "error {msg:?} should mention {part:?}");
    }
}

// ---- the official files ----

#[test]
fn official_mnist_loads_with_known_facts() {
    let m = mnist();
    assert_eq!((m.train.len(), m.test.len()), (60_000, 10_000));
    assert_eq!(m.train.pixels().len(), 60_000 * IMAGE_PIXELS);
    assert_eq!(m.test.pixels().len(), 10_000 * IMAGE_PIXELS);
    assert_eq!(m.train.label(0), Some(5));
    assert_eq!(m.test.label(0), Some(7));
    for data in [&m.train, &m.test] {
        let (lo, hi) = (data.pixels().iter().min(), data.pixels().iter().max());
        assert_eq!((lo, hi), (Some(&0), Some(&255)));
    }
    // Histograms from shared/data/mnist/README.md.
    let train = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949];
    let test = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009];
    assert_eq!(m.train.label_counts(), train);
    assert_eq!(m.test.label_counts(), test);
    assert_eq!(train.iter().sum::<usize>(), 60_000);
    assert_eq!(test.iter().sum::<usize>(), 10_000);
}

#[test]
fn pixels_are_bytes_over_255() {
    let (_, bytes) = read_file(&shared_mnist_dir(), TEST_IMAGES.name).unwrap();
    assert_eq!(
        mnist().test.image(0).unwrap(),
        &bytes[16..16 + IMAGE_PIXELS]
    );
    // A batch carries them as b / 255.
    let batch = mnist()
        .test
        .batches(Batching::eval(1), 0)
        .unwrap()
        .next()
        .unwrap();
    for (p, &b) in batch.images.iter().zip(&bytes[16..16 + IMAGE_PIXELS]) {
        assert_eq!(*p, f32::from(b) / 255.0);
    }
}

/// The files hash to the embedded hashes; so does the `SHA256SUMS` published beside
/// them, where the folder has one (`../shared/data/mnist` does; a folder the program
/// downloaded holds the four files alone).
#[test]
fn embedded_hashes_match_shared_sha256sums_and_the_files() {
    let sums = std::fs::read_to_string(shared_mnist_dir().join("SHA256SUMS"));
    if sums.is_err() {
        eprintln!(
            "no SHA256SUMS in {}: only the files are checked",
            shared_mnist_dir().display()
        );
    }
    for file in FILES {
        let line = format!("{}  {}", file.sha256, file.name);
        if let Ok(sums) = &sums {
            assert!(sums.lines().any(|l| l == line), "SHA256SUMS lacks {line:?}");
        }
        let (path, bytes) = read_file(&shared_mnist_dir(), file.name).unwrap();
        verify_sha256(&path.display().to_string(), &bytes, file.sha256).unwrap();
    }
}

#[test]
fn subset_copies_and_clips() {
    let test = &mnist().test;
    let head = test.subset(..1000);
    assert_eq!(head.len(), 1000);
    assert_eq!(head.label(0), Some(7));
    assert_eq!(head.image(999), test.image(999));
    let tail = test.subset(9_990..20_000);
    assert_eq!(tail.len(), 10);
    assert_eq!(tail.labels(), &test.labels()[9_990..]);
    assert!(test.subset(20_000..).is_empty());
}

#[test]
fn data_dir_resolution_order() {
    // The only test touching MNIST_DIR. NOTE: the other tests' folders are found first
    // (they read the variables once), and the variables are put back at the end.
    let (mnist, fashion) = (DatasetKind::Mnist, DatasetKind::FashionMnist);
    let _ = (common::data_dir(mnist), common::data_dir(fashion));
    let saved = ["MNIST_DIR", "FASHION_MNIST_DIR"].map(|v| (v, std::env::var_os(v)));
    std::env::set_var("MNIST_DIR", "/from/env");
    assert_eq!(
        resolve_data_dir(mnist, Some(Path::new("/from/cli"))),
        PathBuf::from("/from/cli")
    );
    assert_eq!(resolve_data_dir(mnist, None), PathBuf::from("/from/env"));
    // Each data set has its own variable and folder.
    std::env::remove_var("FASHION_MNIST_DIR");
    assert_eq!(
        resolve_data_dir(fashion, None),
        PathBuf::from("data/fashion-mnist")
    );
    std::env::set_var("MNIST_DIR", "");
    assert_eq!(resolve_data_dir(mnist, None), PathBuf::from("data/mnist"));
    std::env::remove_var("MNIST_DIR");
    assert_eq!(resolve_data_dir(mnist, None), PathBuf::from("data/mnist"));
    for (var, value) in saved {
        match value {
            Some(value) => std::env::set_var(var, value),
            None => std::env::remove_var(var),
        }
    }
}

#[test]
fn the_validation_split_is_disjoint_stable_and_independent_of_the_run_seed() {
    let (train, val) = validation_split(60_000, 5_000);
    assert_eq!((train.len(), val.len()), (55_000, 5_000));
    // Disjoint and covering: together they are 0..60000 exactly once.
    let mut all: Vec<usize> = train.iter().chain(&val).copied().collect();
    all.sort_unstable();
    assert!(all.iter().copied().eq(0..60_000));
    // The same every time (it depends on the data seed alone), and not a plain tail.
    assert_eq!(
        validation_split(60_000, 5_000),
        (train.clone(), val.clone())
    );
    assert!(val[0] < 1_000 && val[4_999] > 59_000, "spread out");
    // The split holds the images it names: nothing of val reaches train.
    let m = mnist().clone().hold_out(5_000).unwrap();
    assert_eq!(
        (m.train.len(), m.val.len(), m.test.len()),
        (55_000, 5_000, 10_000)
    );
    assert_eq!(m.val.image(0), mnist().train.image(val[0]));
    assert_eq!(m.train.image(0), mnist().train.image(train[0]));
    assert_eq!(m.val.labels()[4_999], mnist().train.labels()[val[4_999]]);
    // Every class is held out in about its share (10 % of 5,000 = 500 each, ± 100).
    let counts = m.val.label_counts();
    assert!(
        counts.iter().all(|&c| (400..600).contains(&c)),
        "{counts:?}"
    );
    // Once is all: a split set is not split again.
    assert!(m.clone().hold_out(100).is_err());
    // All of it, or more, leaves nothing to train on.
    assert!(mnist().clone().hold_out(60_000).is_err());
    assert_eq!(mnist().clone().hold_out(0).unwrap().val.len(), 0);
}

#[test]
fn fashion_mnist_loads_with_its_own_hashes() {
    let dir = common::data_dir(DatasetKind::FashionMnist);
    let f = Mnist::load_dataset(DatasetKind::FashionMnist, &dir).unwrap();
    assert_eq!(f.kind, DatasetKind::FashionMnist);
    assert_eq!((f.train.len(), f.test.len()), (60_000, 10_000));
    // Fashion-MNIST is balanced: 6,000 training and 1,000 test images per class.
    assert_eq!(f.train.label_counts(), [6_000; 10]);
    assert_eq!(f.test.label_counts(), [1_000; 10]);
    assert_eq!(DatasetKind::FashionMnist.classes()[9], "Ankle boot");
    // Its files are not MNIST's: loading them as MNIST fails on the hash.
    match Mnist::load(&dir) {
        Err(DataError::HashMismatch { .. }) => {}
        other => panic!("expected a hash mismatch, got {other:?}"),
    }
    // A missing file names the data set and the flag that fetches it.
    let empty = TempDir::new("no-fashion");
    let message = Mnist::load_dataset(DatasetKind::FashionMnist, &empty.0)
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("Fashion-MNIST file") && message.contains("--dataset fashion-mnist"),
        "{message}"
    );
}

// ---- bad input ----

#[test]
fn synthetic_idx_parses_in_both_raw_and_gz() {
    let dir = TempDir::new("good");
    dir.write("a-images", &images_idx(3, 28, 28));
    dir.write("a-labels.gz", &gzip(&labels_idx(&[4, 0, 9])));
    let (images_path, images) = read_file(&dir.0, "a-images").unwrap();
    let (labels_path, labels) = read_file(&dir.0, "a-labels").unwrap();
    assert!(labels_path.ends_with("a-labels.gz"));
    let data = Dataset::from_idx(
        &images,
        &images_path.display().to_string(),
        &labels,
        &labels_path.display().to_string(),
    )
    .unwrap();
    assert_eq!(data.labels(), &[4, 0, 9]);
    // Image 2 is filled with byte 2.
    assert!(data.image(2).unwrap().iter().all(|&p| p == 2));
}

#[test]
fn missing_file_names_dir_and_download_hint() {
    let dir = TempDir::new("missing");
    let err = Mnist::load(&dir.0).unwrap_err();
    assert!(matches!(err, DataError::Missing { .. }), "{err:?}");
    let shown = dir.0.display().to_string();
    assert_mentions(
        &err,
        &["-idx", &shown, &format!("distill download --data {shown}")],
    );
}

#[test]
fn truncated_raw_file_reports_sizes() {
    let dir = TempDir::new("truncated-raw");
    let images = images_idx(2, 28, 28);
    dir.write(TEST_IMAGES.name, &images[..1000]);
    dir.write(TEST_LABELS.name, &labels_idx(&[1, 2]));
    let err = load_split(&dir.0, TEST_IMAGES, TEST_LABELS).unwrap_err();
    let expected = 16 + 2 * IMAGE_PIXELS;
    assert!(
        matches!(err, DataError::Truncated { expected: e, actual: 1000, .. } if e == expected),
        "{err:?}"
    );
    assert_mentions(
        &err,
        &[TEST_IMAGES.name, "truncated", &expected.to_string(), "1000"],
    );
    // Shorter than the header.
    let err = parse_idx_labels(&labels_idx(&[])[..5], "short").unwrap_err();
    assert!(
        matches!(
            err,
            DataError::Truncated {
                expected: 8,
                actual: 5,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn truncated_gz_file_reports_sizes() {
    let gz = std::fs::read(shared_mnist_dir().join("t10k-labels-idx1-ubyte.gz")).unwrap();
    let dir = TempDir::new("truncated-gz");
    let file = dir.write("t10k-labels-idx1-ubyte.gz", &gz[..gz.len() / 2]);
    let err = read_file(&dir.0, TEST_LABELS.name).unwrap_err();
    match &err {
        DataError::Truncated {
            file: f,
            expected,
            actual,
        } => {
            assert_eq!((f, *expected), (&file, 10_008));
            assert!(*actual < 10_008, "{err}");
        }
        _ => panic!("expected Truncated, got {err:?}"),
    }
    assert_mentions(&err, &["t10k-labels-idx1-ubyte.gz", "10008"]);
    // Cut inside the gzip header: nothing decodes, so only gzip itself can complain.
    let err = gunzip(&gz[..5], "cut.gz").unwrap_err();
    assert!(matches!(err, DataError::Io { .. }), "{err:?}");
    assert_mentions(&err, &["cut.gz"]);
}

#[test]
fn wrong_magic_is_named() {
    let mut labels = labels_idx(&[1, 2, 3]);
    labels[3] = 0x03;
    let err = parse_idx_labels(&labels, "labels-file").unwrap_err();
    assert!(
        matches!(
            err,
            DataError::BadMagic {
                expected: 0x801,
                actual: 0x803,
                ..
            }
        ),
        "{err:?}"
    );
    assert_mentions(&err, &["labels-file", "0x00000803", "0x00000801"]);
    let err = parse_idx_images(&labels_idx(&[1]), "images-file").unwrap_err();
    assert!(matches!(err, DataError::BadMagic { .. }), "{err:?}");
}

#[test]
fn wrong_image_shape_is_named() {
    let err = parse_idx_images(&images_idx(2, 27, 28), "odd-images").unwrap_err();
    assert!(matches!(err, DataError::BadShape { .. }), "{err:?}");
    assert_mentions(&err, &["odd-images", "27x28", "28x28"]);
}

#[test]
fn trailing_bytes_are_rejected() {
    let mut labels = labels_idx(&[1, 2]);
    labels.push(3);
    let err = parse_idx_labels(&labels, "long-labels").unwrap_err();
    assert!(matches!(err, DataError::BadShape { .. }), "{err:?}");
    assert_mentions(&err, &["long-labels", "1 bytes past"]);
}

#[test]
fn label_out_of_range_is_named() {
    let err = parse_idx_labels(&labels_idx(&[1, 10, 3]), "labels-file").unwrap_err();
    assert!(
        matches!(
            err,
            DataError::BadLabel {
                index: 1,
                label: 10,
                ..
            }
        ),
        "{err:?}"
    );
    assert_mentions(&err, &["labels-file", "label 10", "index 1"]);
}

#[test]
fn image_and_label_counts_must_agree() {
    let dir = TempDir::new("count");
    let images = dir.write(TEST_IMAGES.name, &images_idx(3, 28, 28));
    let labels = dir.write(
        &format!("{}.gz", TEST_LABELS.name),
        &gzip(&labels_idx(&[1, 2])),
    );
    let err = load_split(&dir.0, TEST_IMAGES, TEST_LABELS).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::CountMismatch {
                images: 3,
                labels: 2,
                ..
            }
        ),
        "{err:?}"
    );
    assert_mentions(&err, &[&images, &labels, "3 images", "2 labels"]);
}

#[test]
fn one_changed_byte_fails_the_hash_naming_the_file() {
    let (_, mut labels) = read_file(&shared_mnist_dir(), TEST_LABELS.name).unwrap();
    // First test label: 7 -> 1, still a valid IDX file.
    assert_eq!(labels[8], 7);
    labels[8] = 1;
    let dir = TempDir::new("hash");
    let gz = std::fs::read(shared_mnist_dir().join("t10k-images-idx3-ubyte.gz")).unwrap();
    dir.write("t10k-images-idx3-ubyte.gz", &gz);
    let file = dir.write(TEST_LABELS.name, &labels);
    let err = load_split(&dir.0, TEST_IMAGES, TEST_LABELS).unwrap_err();
    match &err {
        DataError::HashMismatch {
            file: f,
            expected,
            actual,
        } => {
            assert_eq!(f, &file);
            assert_eq!(expected, TEST_LABELS.sha256);
            assert_eq!(actual, &sha256_hex(&labels));
        }
        _ => panic!("expected HashMismatch, got {err:?}"),
    }
    assert_mentions(&err, &[&file, TEST_LABELS.sha256, "SHA-256"]);
}

#[test]
fn sha256_of_known_input() {
    // FIPS 180-2 example: SHA-256("abc").
    let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    assert_eq!(sha256_hex(b"abc"), abc);
    verify_sha256("abc-file", b"abc", &abc.to_uppercase()).unwrap();
    let err = verify_sha256("abd-file", b"abd", abc).unwrap_err();
    assert_mentions(&err, &["abd-file", abc]);
}

#[test]
fn from_parts_rejects_bad_shapes_and_values() {
    let err = Dataset::from_parts(vec![0; IMAGE_PIXELS + 1], vec![1]).unwrap_err();
    assert!(matches!(err, DataError::BadShape { .. }), "{err:?}");
    let err = Dataset::from_parts(vec![128; IMAGE_PIXELS], vec![10]).unwrap_err();
    assert!(
        matches!(err, DataError::BadLabel { label: 10, .. }),
        "{err:?}"
    );
}

// ---- the download's verify-and-store step ----

#[test]
fn save_verified_stores_a_valid_file_atomically() {
    let gz = std::fs::read(shared_mnist_dir().join("t10k-labels-idx1-ubyte.gz")).unwrap();
    let dir = TempDir::new("save");
    let path = save_verified(&dir.0, TEST_LABELS.name, TEST_LABELS.sha256, gz.as_slice()).unwrap();
    assert_eq!(path, dir.0.join("t10k-labels-idx1-ubyte.gz"));
    assert_eq!(std::fs::read(&path).unwrap(), gz);
    let names: Vec<_> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names,
        ["t10k-labels-idx1-ubyte.gz"],
        "no temporary file is left"
    );
}

#[test]
fn save_verified_refuses_bad_data_and_writes_nothing() {
    let dir = TempDir::new("save-bad");
    let fake = gzip(&labels_idx(&[1, 2, 3]));
    let err = save_verified(
        &dir.0,
        TEST_LABELS.name,
        TEST_LABELS.sha256,
        fake.as_slice(),
    )
    .unwrap_err();
    assert!(matches!(err, DataError::HashMismatch { .. }), "{err:?}");
    assert_mentions(&err, &["t10k-labels-idx1-ubyte.gz"]);
    let gz = std::fs::read(shared_mnist_dir().join("t10k-labels-idx1-ubyte.gz")).unwrap();
    let cut = &gz[..gz.len() / 2];
    let err = save_verified(&dir.0, TEST_LABELS.name, TEST_LABELS.sha256, cut).unwrap_err();
    assert!(matches!(err, DataError::Truncated { .. }), "{err:?}");
    assert_eq!(std::fs::read_dir(&dir.0).unwrap().count(), 0);
}

// ---- batching ----

/// `n` images, each blank but for pixel `(x, y)` = 1 (byte 255), labelled `i % 10`.
fn single_pixel_dataset(n: usize, x: usize, y: usize) -> Dataset {
    let mut images = vec![0; n * IMAGE_PIXELS];
    for image in images.chunks_exact_mut(IMAGE_PIXELS) {
        image[y * IMAGE_SIDE + x] = 255;
    }
    Dataset::from_parts(images, (0..n).map(|i| (i % 10) as u8).collect()).unwrap()
}

#[test]
fn shuffle_is_deterministic_per_seed_and_epoch() {
    let a = epoch_order(1000, 42, 3);
    assert_eq!(a, epoch_order(1000, 42, 3));
    assert_ne!(a, epoch_order(1000, 43, 3));
    assert_ne!(a, epoch_order(1000, 42, 4));
    // Not `seed ^ epoch`: swapping them gives another order.
    assert_ne!(epoch_order(1000, 1, 0), epoch_order(1000, 0, 1));
    let mut sorted = a.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..1000).collect::<Vec<_>>());
    assert_ne!(a, sorted, "the order is shuffled");
}

#[test]
fn batches_cover_every_index_once_with_a_partial_last_batch() {
    let data = mnist().test.subset(..10);
    let batches: Vec<Batch> = data.batches(Batching::train(3, 7), 0).unwrap().collect();
    assert_eq!(
        batches.iter().map(Batch::len).collect::<Vec<_>>(),
        [3, 3, 3, 1]
    );
    let indices: Vec<usize> = batches.iter().flat_map(|b| b.indices.clone()).collect();
    assert_eq!(indices, epoch_order(10, 7, 0));
    for batch in &batches {
        for (k, &i) in batch.indices.iter().enumerate() {
            assert_eq!(batch.labels[k], u32::from(data.label(i).unwrap()));
            let image = &batch.images[k * IMAGE_PIXELS..(k + 1) * IMAGE_PIXELS];
            let want: Vec<f32> = data.image(i).unwrap().iter().map(|&b| pixel(b)).collect();
            assert_eq!(image, &want[..]);
        }
    }
    // Evaluation keeps dataset order; `next_into` refills one buffer.
    let mut eval = data.batches(Batching::eval(4), 0).unwrap();
    assert_eq!(eval.len(), 3);
    let mut batch = Batch::default();
    let mut seen = Vec::new();
    while eval.next_into(&mut batch) {
        seen.extend_from_slice(&batch.indices);
    }
    assert_eq!(seen, (0..10).collect::<Vec<_>>());
    assert_eq!(batch.len(), 2, "the last batch is the remainder");
    assert!(matches!(
        data.batches(Batching::eval(0), 0),
        Err(DataError::ZeroBatchSize)
    ));
}

#[test]
fn jitter_shift_moves_a_pixel_with_zero_fill() {
    let mut src = [0.0; IMAGE_PIXELS];
    src[7 * IMAGE_SIDE + 5] = 0.5; // (x 5, y 7)
    let mut dst = [9.0; IMAGE_PIXELS];
    jitter_shift(&src, &mut dst, 2, -1);
    let mut expected = [0.0; IMAGE_PIXELS];
    expected[6 * IMAGE_SIDE + 7] = 0.5; // (x 7, y 6)
    assert_eq!(dst, expected);
    jitter_shift(&src, &mut dst, -6, 0); // off the left edge
    assert!(dst.iter().all(|&p| p == 0.0));
    jitter_shift(&src, &mut dst, 0, 0);
    assert_eq!(dst, src);
}

#[test]
fn jittered_batches_move_pixels_by_at_most_two() {
    let data = single_pixel_dataset(200, 14, 14);
    let batching = Batching::train(64, 5).with_jitter(true);
    let batches: Vec<Batch> = data.batches(batching, 1).unwrap().collect();
    let mut moved = 0;
    for image in batches
        .iter()
        .flat_map(|b| b.images.chunks_exact(IMAGE_PIXELS))
    {
        let lit: Vec<usize> = (0..IMAGE_PIXELS).filter(|&p| image[p] != 0.0).collect();
        assert_eq!(lit.len(), 1);
        assert_eq!(image[lit[0]], 1.0);
        let (x, y) = ((lit[0] % IMAGE_SIDE) as i32, (lit[0] / IMAGE_SIDE) as i32);
        assert!(
            (x - 14).abs() <= JITTER_MAX && (y - 14).abs() <= JITTER_MAX,
            "({x}, {y})"
        );
        moved += usize::from((x, y) != (14, 14));
    }
    // 24 of the 25 shifts move the pixel.
    assert!(moved > 150, "only {moved} of 200 images moved");
    // Same seed and epoch: same jitter; jitter leaves the order alone.
    let again: Vec<Batch> = data.batches(batching, 1).unwrap().collect();
    assert_eq!(batches, again);
    let plain: Vec<Batch> = data.batches(Batching::train(64, 5), 1).unwrap().collect();
    for (j, p) in batches.iter().zip(&plain) {
        assert_eq!(j.indices, p.indices);
    }
}

#[test]
fn jittered_real_images_stay_in_unit_range() {
    let data = mnist().test.subset(..500);
    let batching = Batching::train(128, 3).with_jitter(true);
    for batch in data.batches(batching, 0).unwrap() {
        assert!(batch.images.iter().all(|p| (0.0..=1.0).contains(p)));
    }
}

proptest! {
    #[test]
    fn batches_partition_any_dataset(len in 0usize..40, batch_size in 1usize..17, seed: u64, epoch in 0u64..4) {
        let data = single_pixel_dataset(len, 0, 0);
        let batches: Vec<Batch> = data.batches(Batching::train(batch_size, seed), epoch).unwrap().collect();
        prop_assert_eq!(batches.len(), len.div_ceil(batch_size));
        for (b, batch) in batches.iter().enumerate() {
            let full = b + 1 < batches.len() || len % batch_size == 0;
            prop_assert_eq!(batch.len(), if full { batch_size } else { len % batch_size });
            prop_assert_eq!(batch.images.len(), batch.len() * IMAGE_PIXELS);
        }
        let mut indices: Vec<usize> = batches.iter().flat_map(|b| b.indices.clone()).collect();
        indices.sort_unstable();
        prop_assert_eq!(indices, (0..len).collect::<Vec<_>>());
    }

    #[test]
    fn jitter_shift_matches_the_reference(x in 0usize..28, y in 0usize..28, dx in -3i32..=3, dy in -3i32..=3) {
        let mut src = [0.0; IMAGE_PIXELS];
        src[y * IMAGE_SIDE + x] = 1.0;
        let mut dst = [0.0; IMAGE_PIXELS];
        jitter_shift(&src, &mut dst, dx, dy);
        let (nx, ny) = (x as i32 + dx, y as i32 + dy);
        let mut expected = [0.0; IMAGE_PIXELS];
        if (0..28).contains(&nx) && (0..28).contains(&ny) {
            expected[ny as usize * IMAGE_SIDE + nx as usize] = 1.0;
        }
        prop_assert_eq!(dst.to_vec(), expected.to_vec());
    }
}
