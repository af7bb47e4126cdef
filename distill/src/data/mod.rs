//! MNIST: the IDX files on disk, verified against the official hashes, as pixel bytes
//! and digit labels, cut into seeded shuffled batches (pixels `b / 255` in `[0, 1]`) with
//! optional jitter.
//!
//! `Mnist::load(dir)` = for each file, `read_file` (`NAME`, else `NAME.gz`, decompressed)
//! -> `parse_idx_images` / `parse_idx_labels` -> `verify_sha256` -> `Dataset`. Each step
//! is public so tests can feed it synthetic bytes that no official hash would accept.

mod batch;
mod download;
mod idx;

pub use batch::{epoch_order, jitter_shift, Batch, Batches, Batching, JITTER_MAX};
pub use download::{
    download, download_files, mirrors, save_verified, FASHION_MIRRORS, MIRRORS, MIRROR_ENV,
};
pub use idx::{
    find_file, gunzip, parse_idx_images, parse_idx_labels, read_file, sha256_hex, verify_sha256,
};

use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};

/// Height and width of an MNIST image, in pixels.
pub const IMAGE_SIDE: usize = 28;
/// Pixels per image: 28 · 28 = 784.
pub const IMAGE_PIXELS: usize = IMAGE_SIDE * IMAGE_SIDE;
/// The digits 0 to 9.
pub const NUM_CLASSES: usize = 10;

/// Where `Dataset::from_parts` data "lives", for error messages.
const IN_MEMORY: &str = "(in-memory dataset)";

/// One of the four official files: its name without `.gz`, and the SHA-256 of its
/// decompressed bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MnistFile {
    /// The file name without `.gz`, e.g. `train-images-idx3-ubyte`.
    pub name: &'static str,
    /// SHA-256 of the decompressed bytes, as lowercase hex.
    pub sha256: &'static str,
}

/// MNIST's 60 000 training images.
pub const TRAIN_IMAGES: MnistFile = MnistFile {
    name: "train-images-idx3-ubyte",
    sha256: "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
};
/// MNIST's 60 000 training labels.
pub const TRAIN_LABELS: MnistFile = MnistFile {
    name: "train-labels-idx1-ubyte",
    sha256: "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
};
/// MNIST's 10 000 test images.
pub const TEST_IMAGES: MnistFile = MnistFile {
    name: "t10k-images-idx3-ubyte",
    sha256: "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
};
/// MNIST's 10 000 test labels.
pub const TEST_LABELS: MnistFile = MnistFile {
    name: "t10k-labels-idx1-ubyte",
    sha256: "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
};
/// MNIST's four files, in the order `download` fetches them.
pub const FILES: [MnistFile; 4] = [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS];

/// Fashion-MNIST's four files: MNIST's names, their own hashes.
pub const FASHION_FILES: [MnistFile; 4] = [
    MnistFile {
        name: TRAIN_IMAGES.name,
        sha256: "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    },
    MnistFile {
        name: TRAIN_LABELS.name,
        sha256: "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    },
    MnistFile {
        name: TEST_IMAGES.name,
        sha256: "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    },
    MnistFile {
        name: TEST_LABELS.name,
        sha256: "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    },
];

/// Training images in either data set's official training split.
pub const OFFICIAL_TRAIN_LEN: usize = 60_000;

/// Which data set: both are 28×28 grey images in 10 classes, in the same IDX files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DatasetKind {
    /// Handwritten digits (LeCun et al. 1998).
    Mnist,
    /// Zalando's clothing images (Xiao, Rasul, Vollgraf 2017).
    FashionMnist,
}

impl DatasetKind {
    /// Every kind, in the order `from_str` tries their names.
    pub const ALL: [DatasetKind; 2] = [DatasetKind::Mnist, DatasetKind::FashionMnist];

    /// What `--dataset` takes and checkpoints record: `mnist`, `fashion-mnist`.
    pub fn name(self) -> &'static str {
        match self {
            DatasetKind::Mnist => "mnist",
            DatasetKind::FashionMnist => "fashion-mnist",
        }
    }

    /// The name in messages and reports.
    pub fn title(self) -> &'static str {
        match self {
            DatasetKind::Mnist => "MNIST",
            DatasetKind::FashionMnist => "Fashion-MNIST",
        }
    }

    /// The four files with their SHA-256, in the order `download` fetches them.
    pub fn files(self) -> [MnistFile; 4] {
        match self {
            DatasetKind::Mnist => FILES,
            DatasetKind::FashionMnist => FASHION_FILES,
        }
    }

    /// Public mirrors, tried in order; each serves `NAME.gz` for the four names.
    pub fn mirrors(self) -> &'static [&'static str] {
        match self {
            DatasetKind::Mnist => &MIRRORS,
            DatasetKind::FashionMnist => &FASHION_MIRRORS,
        }
    }

    /// The training split's pixel mean and standard deviation, in `[0, 1]` units: what
    /// a built-in network standardises its input with on this data set.
    pub fn normalize(self) -> (f32, f32) {
        match self {
            DatasetKind::Mnist => (0.1307, 0.3081),
            DatasetKind::FashionMnist => (0.2860, 0.3530),
        }
    }

    /// The class names, by label.
    pub fn classes(self) -> [&'static str; NUM_CLASSES] {
        match self {
            DatasetKind::Mnist => ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"],
            DatasetKind::FashionMnist => [
                "T-shirt/top",
                "Trouser",
                "Pullover",
                "Dress",
                "Coat",
                "Sandal",
                "Shirt",
                "Sneaker",
                "Bag",
                "Ankle boot",
            ],
        }
    }

    /// The environment variable naming its folder: `MNIST_DIR`, `FASHION_MNIST_DIR`.
    pub fn env_var(self) -> &'static str {
        match self {
            DatasetKind::Mnist => "MNIST_DIR",
            DatasetKind::FashionMnist => "FASHION_MNIST_DIR",
        }
    }

    /// The folder used when neither `--data` nor the environment names one.
    pub fn default_dir(self) -> &'static str {
        match self {
            DatasetKind::Mnist => "data/mnist",
            DatasetKind::FashionMnist => "data/fashion-mnist",
        }
    }
}

impl std::fmt::Display for DatasetKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for DatasetKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        DatasetKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| format!("unknown dataset `{s}` (expected one of: mnist, fashion-mnist)"))
    }
}

/// Why MNIST could not be read, verified, downloaded or batched.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// Neither `file` nor `file.gz` is in `dir`.
    #[error(
        "{title} file {file} (or {file}.gz) not found in {dir}; \
         run `distill download {flag}--data {dir}` to fetch it",
        title = dataset.title(),
        flag = match dataset {
            DatasetKind::Mnist => "",
            DatasetKind::FashionMnist => "--dataset fashion-mnist ",
        }
    )]
    Missing {
        /// The data set whose file it is.
        dataset: DatasetKind,
        /// The directory searched.
        dir: PathBuf,
        /// The file name without `.gz`.
        file: String,
    },
    /// The file ends before the size its IDX header (or the header itself) needs.
    #[error("{file}: truncated: the header promises {expected} bytes, the file holds {actual}")]
    Truncated {
        /// The path of the file, as shown.
        file: String,
        /// Bytes the file needs: what the header promises, or the header's own size.
        expected: usize,
        /// Bytes the file holds.
        actual: usize,
    },
    /// The first word is not the IDX magic number of the expected kind (images or labels).
    #[error("{file}: bad magic number 0x{actual:08x}, expected 0x{expected:08x}")]
    BadMagic {
        /// The path of the file, as shown.
        file: String,
        /// The magic number of the expected kind.
        expected: u32,
        /// The first word of the file.
        actual: u32,
    },
    /// The data does not have MNIST's shape: bytes past the payload, images other than
    /// 28×28, or (in memory) a pixel count that does not match the labels.
    #[error("{file}: bad shape: {detail}")]
    BadShape {
        /// The path of the file, as shown, or `(in-memory dataset)`.
        file: String,
        /// What is wrong, with the sizes found.
        detail: String,
    },
    /// The images and labels files disagree on the number of examples.
    #[error("{images_file} holds {images} images but {labels_file} holds {labels} labels")]
    CountMismatch {
        /// The path of the images file, as shown.
        images_file: String,
        /// Images in it.
        images: usize,
        /// The path of the labels file, as shown.
        labels_file: String,
        /// Labels in it.
        labels: usize,
    },
    /// A label outside `0..10`.
    #[error("{file}: label {label} at index {index} is not a digit 0-9")]
    BadLabel {
        /// The path of the file, as shown.
        file: String,
        /// Index of the example whose label it is.
        index: usize,
        /// The label found.
        label: u8,
    },
    /// The decompressed bytes do not have the official SHA-256.
    #[error(
        "{file}: SHA-256 of the decompressed data is {actual}, expected {expected} \
         (corrupt, or not the official MNIST file)"
    )]
    HashMismatch {
        /// The path of the file, as shown.
        file: String,
        /// The official SHA-256, as hex.
        expected: String,
        /// The SHA-256 of the bytes read, as hex.
        actual: String,
    },
    /// Reading, writing or decompressing a file failed.
    #[error("{file}: {source}")]
    Io {
        /// The path of the file, as shown.
        file: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A mirror, or every mirror, failed to serve a file that verifies.
    #[error("could not download {file}: {detail}")]
    Download {
        /// The file name without `.gz`, or the one URL that failed.
        file: String,
        /// Why: the HTTP error, or for a whole file each URL tried and its error.
        detail: String,
    },
    /// A batch size of 0 was asked for.
    #[error("batch size must be at least 1")]
    ZeroBatchSize,
}

impl DataError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        DataError::Io {
            file: path.display().to_string(),
            source,
        }
    }
}

/// The data folder of a caller with no `--data` working from `root` (the tests and
/// examples of a checkout): `$MNIST_DIR` (`$FASHION_MNIST_DIR`) if set and non-empty,
/// else `root/data/mnist` (`root/data/fashion-mnist`). A file it lacks is downloaded
/// into it first, as the program does.
pub fn find_or_fetch(kind: DatasetKind, root: &Path) -> Result<PathBuf, DataError> {
    let dir = match std::env::var_os(kind.env_var()) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => root.join(kind.default_dir()),
    };
    fetch_missing(kind, &dir)?;
    Ok(dir)
}

/// Downloads into `dir` the files of `kind` it lacks (saying which, on stderr); nothing
/// when it has them all.
pub fn fetch_missing(kind: DatasetKind, dir: &Path) -> Result<(), DataError> {
    let missing = missing_files(kind, dir);
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!(
        "{} lacks {} of {}'s files ({}): downloading them (--no-download to refuse)",
        dir.display(),
        missing.len(),
        kind.title(),
        missing.join(", ")
    );
    download(kind, dir)
}

/// The names of `kind`'s files that `dir` holds neither raw nor gzipped.
fn missing_files(kind: DatasetKind, dir: &Path) -> Vec<&'static str> {
    kind.files()
        .iter()
        .filter(|f| find_file(dir, f.name).is_err())
        .map(|f| f.name)
        .collect()
}

/// The data directory: `--data DIR` if given, else `$MNIST_DIR` (`$FASHION_MNIST_DIR`)
/// if set and non-empty, else `./data/mnist` (`./data/fashion-mnist`).
pub fn resolve_data_dir(kind: DatasetKind, cli: Option<&Path>) -> PathBuf {
    if let Some(dir) = cli {
        return dir.to_path_buf();
    }
    match std::env::var_os(kind.env_var()) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(kind.default_dir()),
    }
}

/// `n` images of `IMAGE_PIXELS` pixels and their labels `0..10`. A pixel is kept as its
/// byte `b` (a quarter of the memory of `f32`, and the file's payload as it is); batches
/// carry it as `b / 255` in `[0, 1]` ([`pixel`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Dataset {
    // pixels: (n, 28, 28) row-major; labels: (n,)
    pixels: Vec<u8>,
    labels: Vec<u8>,
}

/// A pixel byte as the networks see it: `b / 255`, in `[0, 1]`.
#[inline]
pub fn pixel(b: u8) -> f32 {
    f32::from(b) / 255.0
}

impl Dataset {
    /// Parses an images and a labels IDX file (decompressed bytes; no hash check) and
    /// checks that they agree on the count. `*_file` names them in errors.
    pub fn from_idx(
        images: &[u8],
        images_file: &str,
        labels: &[u8],
        labels_file: &str,
    ) -> Result<Self, DataError> {
        let pixels = parse_idx_images(images, images_file)?;
        let labels_vec = parse_idx_labels(labels, labels_file)?;
        if pixels.len() / IMAGE_PIXELS != labels_vec.len() {
            return Err(DataError::CountMismatch {
                images_file: images_file.to_string(),
                images: pixels.len() / IMAGE_PIXELS,
                labels_file: labels_file.to_string(),
                labels: labels_vec.len(),
            });
        }
        Ok(Dataset {
            pixels,
            labels: labels_vec,
        })
    }

    /// A dataset from pixel bytes (`labels.len() * IMAGE_PIXELS` of them, each standing
    /// for `b / 255`) and labels `0..10`: for tests and synthetic data.
    pub fn from_parts(images: Vec<u8>, labels: Vec<u8>) -> Result<Self, DataError> {
        if images.len() != labels.len() * IMAGE_PIXELS {
            return Err(DataError::BadShape {
                file: IN_MEMORY.to_string(),
                detail: format!(
                    "{} pixels for {} labels, expected {} ({}x{} per image)",
                    images.len(),
                    labels.len(),
                    labels.len() * IMAGE_PIXELS,
                    IMAGE_SIDE,
                    IMAGE_SIDE
                ),
            });
        }
        if let Some(index) = labels.iter().position(|&l| l as usize >= NUM_CLASSES) {
            let label = labels[index];
            return Err(DataError::BadLabel {
                file: IN_MEMORY.to_string(),
                index,
                label,
            });
        }
        Ok(Dataset {
            pixels: images,
            labels,
        })
    }

    /// The number of examples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the dataset holds no examples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// All pixel bytes, `(len, 28, 28)` row-major.
    pub fn pixels(&self) -> &[u8] {
        &self.pixels
    }

    /// All images as the networks see them, `(len, 28, 28)` values in `[0, 1]`.
    pub fn images(&self) -> Vec<f32> {
        self.pixels.iter().map(|&b| pixel(b)).collect()
    }

    /// All labels, one digit `0..10` per example.
    pub fn labels(&self) -> &[u8] {
        &self.labels
    }

    /// Image `i` as its `IMAGE_PIXELS` pixel bytes, or `None` past the end.
    pub fn image(&self, i: usize) -> Option<&[u8]> {
        self.pixels.get(i * IMAGE_PIXELS..(i + 1) * IMAGE_PIXELS)
    }

    /// The label of example `i`, or `None` past the end.
    pub fn label(&self, i: usize) -> Option<u8> {
        self.labels.get(i).copied()
    }

    /// How many examples carry each digit.
    pub fn label_counts(&self) -> [usize; NUM_CLASSES] {
        let mut counts = [0; NUM_CLASSES];
        for &l in &self.labels {
            counts[l as usize] += 1;
        }
        counts
    }

    /// A copy of the examples at `indices`, in that order; indices past the end are
    /// skipped.
    pub fn select(&self, indices: &[usize]) -> Dataset {
        let mut out = Dataset::default();
        for &i in indices {
            if let (Some(image), Some(label)) = (self.image(i), self.label(i)) {
                out.pixels.extend_from_slice(image);
                out.labels.push(label);
            }
        }
        out
    }

    /// A copy of the examples in `range`, clipped to the dataset: `subset(..1000)` is the
    /// first 1000 (or fewer) examples, `subset(50_000..)` the tail.
    pub fn subset(&self, range: impl RangeBounds<usize>) -> Dataset {
        let start = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => s.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&e) => e.saturating_add(1),
            Bound::Excluded(&e) => e,
            Bound::Unbounded => self.len(),
        };
        let end = end.min(self.len());
        let start = start.min(end);
        Dataset {
            pixels: self.pixels[start * IMAGE_PIXELS..end * IMAGE_PIXELS].to_vec(),
            labels: self.labels[start..end].to_vec(),
        }
    }
}

/// A data set's splits: the official training split less the held-out validation
/// images, those images, and the official test split.
#[derive(Clone, Debug)]
pub struct Mnist {
    /// Which data set the images come from.
    pub kind: DatasetKind,
    /// The training examples: 60 000 less those in `val`.
    pub train: Dataset,
    /// Training examples held out to judge epochs and recipes ([`Mnist::hold_out`]);
    /// empty until then.
    pub val: Dataset,
    /// The 10 000 test examples.
    pub test: Dataset,
}

/// Seeds the choice of validation images: fixed, so that every run of every study holds
/// out the same ones.
pub const VAL_SEED: u64 = 0x7A11_DA7E;

impl Mnist {
    /// Loads and verifies MNIST's four files in `dir` (see `resolve_data_dir`).
    pub fn load(dir: &Path) -> Result<Mnist, DataError> {
        Mnist::load_dataset(DatasetKind::Mnist, dir)
    }

    /// Loads and verifies the four files of `kind` in `dir`; nothing held out.
    pub fn load_dataset(kind: DatasetKind, dir: &Path) -> Result<Mnist, DataError> {
        let [train_images, train_labels, test_images, test_labels] = kind.files();
        // The splits are independent: decompress and hash them on two threads.
        let (train, test) = std::thread::scope(|s| {
            let train = s.spawn(|| load_split(dir, train_images, train_labels));
            let test = load_split(dir, test_images, test_labels);
            (train.join(), test)
        });
        let train = train.unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        let named = |e| match e {
            DataError::Missing { dir, file, .. } => DataError::Missing {
                dataset: kind,
                dir,
                file,
            },
            e => e,
        };
        Ok(Mnist {
            kind,
            train: train.map_err(named)?,
            val: Dataset::default(),
            test: test.map_err(named)?,
        })
    }

    /// Moves `n` training examples, chosen by [`validation_split`], into `val`; an error
    /// when `n` would leave no training example, or when some are held out already (the
    /// split is of the official training split). Holding out 0 changes nothing.
    pub fn hold_out(self, n: usize) -> Result<Mnist, DataError> {
        if n == 0 {
            return Ok(self);
        }
        if !self.val.is_empty() {
            return Err(DataError::BadShape {
                file: IN_MEMORY.to_string(),
                detail: format!("{} images are held out already", self.val.len()),
            });
        }
        let all = self.train;
        if n >= all.len() {
            return Err(DataError::BadShape {
                file: IN_MEMORY.to_string(),
                detail: format!(
                    "--val {n} leaves no training example of the {} there are",
                    all.len()
                ),
            });
        }
        let (train, val) = validation_split(all.len(), n);
        Ok(Mnist {
            kind: self.kind,
            train: all.select(&train),
            val: all.select(&val),
            test: self.test,
        })
    }
}

/// Splits `0..len` into training and `n` validation indices, each in ascending order:
/// the validation ones are the first `n` of a permutation seeded by [`VAL_SEED`] alone,
/// so the split depends on `len` and `n`, never on a run's seed.
pub fn validation_split(len: usize, n: usize) -> (Vec<usize>, Vec<usize>) {
    let order = epoch_order(len, VAL_SEED, 0);
    let n = n.min(len);
    let mut val = order[..n].to_vec();
    let mut train = order[n..].to_vec();
    val.sort_unstable();
    train.sort_unstable();
    (train, val)
}

/// Reads, parses and verifies one images + labels pair.
pub fn load_split(dir: &Path, images: MnistFile, labels: MnistFile) -> Result<Dataset, DataError> {
    let (images_path, image_bytes) = read_file(dir, images.name)?;
    let (labels_path, label_bytes) = read_file(dir, labels.name)?;
    let (images_file, labels_file) = (
        images_path.display().to_string(),
        labels_path.display().to_string(),
    );
    // Parse before hashing: a truncated or mislabelled file gets the more telling error.
    let data = Dataset::from_idx(&image_bytes, &images_file, &label_bytes, &labels_file)?;
    verify_sha256(&images_file, &image_bytes, images.sha256)?;
    verify_sha256(&labels_file, &label_bytes, labels.sha256)?;
    Ok(data)
}
