//! Checkpoints: safetensors files holding a network's `state_dict`, optionally extra
//! state (an optimizer's), and metadata.
//!
//! Layout: every tensor F32, little-endian, under its PyTorch `state_dict` name
//! (`conv1.weight: (out, in, kh, kw)`, `fc1.weight: (out, in)`, `fc1.bias: (out)`),
//! so `safetensors.torch.load_file` gives a dict that a PyTorch module of the same
//! architecture loads as is, `strict=True`. Extra state, when a caller saves some, sits
//! beside it under [`EXTRA_PREFIX`] (`optim.fc1.weight.m`): the training program keeps
//! it out of the weights file, in its own file at [`state_path`].
//!
//! `__metadata__` holds string pairs: `format` = [`FORMAT`], `epoch`, `seed` (decimal
//! integers), `metrics` (a JSON document); for a module with a description, `network`
//! (its [`NetworkSpec`] as JSON: any network is rebuilt from the file alone) and, read
//! from it, `input_shape` (`[channels, height, width]`), `input_mean` and `input_std`
//! (the `(x - mean) / std` the network applies itself to `[0, 1]` pixels first) and
//! `classes`; and whatever else the caller adds.
//!
//! Files of the previous format, `kd-stack/1`, name a built-in network under `arch`
//! instead of a description; they still load.

use crate::builtin;
use crate::module::Module;
use crate::network::{ModelError, Network};
use crate::spec::{NetworkSpec, SpecError};
use engine::{Device, Tensor};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The value of the `format` metadata key.
pub const FORMAT: &str = "kd-stack/2";

/// The previous format: a built-in network's name under `arch`, no description.
pub const FORMAT_1: &str = "kd-stack/1";

/// Tensors whose names start with this are state saved beside the parameters
/// (optimizer moments, ...); any other name must be a parameter of the network.
pub const EXTRA_PREFIX: &str = "optim.";

/// The file beside the weights file `path` that holds a run's whole training state (the
/// parameters and the optimizer's tensors): `NAME.optim.safetensors` for
/// `NAME.safetensors`, `NAME.optim` for any other name.
pub fn state_path(path: &Path) -> PathBuf {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let state = match name.strip_suffix(".safetensors") {
        Some(stem) => format!("{stem}.optim.safetensors"),
        None => format!("{name}.optim"),
    };
    path.with_file_name(state)
}

/// A checkpoint file read into memory.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    /// The file it was read from; errors name it.
    pub path: PathBuf,
    /// The network it holds, when the module that saved it had a description.
    pub spec: Option<NetworkSpec>,
    /// All of `__metadata__`, the required keys included.
    pub metadata: BTreeMap<String, String>,
    /// `(name, shape, values)`: the parameters in `state_dict` order, then the extra
    /// tensors by name.
    pub tensors: Vec<(String, Vec<usize>, Vec<f32>)>,
}

impl Checkpoint {
    /// The shape and values of the tensor called `name`.
    pub fn tensor(&self, name: &str) -> Option<(&[usize], &[f32])> {
        self.tensors
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, shape, values)| (shape.as_slice(), values.as_slice()))
    }

    /// The tensors saved beside the parameters (names under [`EXTRA_PREFIX`]).
    pub fn extra(&self) -> impl Iterator<Item = &(String, Vec<usize>, Vec<f32>)> {
        self.tensors
            .iter()
            .filter(|(name, _, _)| name.starts_with(EXTRA_PREFIX))
    }

    /// The network's name: the description's, else `a module without a description`.
    pub fn name(&self) -> &str {
        self.spec
            .as_ref()
            .map_or("a module without a description", |s| s.name.as_str())
    }

    /// The `epoch` metadata, a count of epochs done.
    pub fn epoch(&self) -> Option<u64> {
        self.metadata.get("epoch")?.parse().ok()
    }

    /// The `seed` metadata.
    pub fn seed(&self) -> Option<u64> {
        self.metadata.get("seed")?.parse().ok()
    }

    /// The `metrics` JSON document, as text.
    pub fn metrics(&self) -> Option<&str> {
        self.metadata.get("metrics").map(String::as_str)
    }
}

/// What went wrong with a checkpoint file; every variant but `Engine` names the file.
#[derive(Debug)]
pub enum CheckpointError {
    /// Reading or writing the file failed.
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// Not a safetensors file: truncated, corrupt, or something else entirely.
    NotSafetensors {
        /// The file.
        path: PathBuf,
        /// What the safetensors parser said.
        detail: String,
    },
    /// A required `__metadata__` key is absent.
    MissingMetadata {
        /// The file.
        path: PathBuf,
        /// The missing key.
        key: String,
    },
    /// A metadata value of the wrong form (`epoch` not an integer, `metrics` not JSON,
    /// another `format`), or one the caller passed that contradicts the network.
    BadMetadata {
        /// The file.
        path: PathBuf,
        /// The key whose value is wrong.
        key: String,
        /// What is wrong with it.
        detail: String,
    },
    /// The `network` description (or a `kd-stack/1` file's `arch` name) is not one.
    BadNetwork {
        /// The file.
        path: PathBuf,
        /// Why it does not describe a network (boxed: it is large, and rare).
        error: Box<SpecError>,
    },
    /// The file holds another network than the one it is loaded into.
    WrongNetwork {
        /// The file.
        path: PathBuf,
        /// The name of the network loaded into (with a note when only the layers differ).
        expected: String,
        /// The name of the network the file holds.
        found: String,
    },
    /// The file was saved from a module without a description, so it cannot be rebuilt
    /// from the file alone.
    NoDescription {
        /// The file.
        path: PathBuf,
    },
    /// A parameter of the network has no tensor in the file.
    MissingTensor {
        /// The file.
        path: PathBuf,
        /// The parameter's `state_dict` name.
        name: String,
    },
    /// A tensor that is neither a parameter of the architecture nor extra state.
    UnexpectedTensor {
        /// The file.
        path: PathBuf,
        /// The tensor's name.
        name: String,
    },
    /// Two tensors given to `save` under the same name.
    DuplicateTensor {
        /// The file.
        path: PathBuf,
        /// The tensor's name.
        name: String,
    },
    /// A tensor stored as another dtype than F32.
    WrongDtype {
        /// The file.
        path: PathBuf,
        /// The tensor's name.
        name: String,
        /// The dtype found.
        dtype: String,
    },
    /// A tensor whose shape differs from its parameter's.
    ShapeMismatch {
        /// The file.
        path: PathBuf,
        /// The tensor's name.
        name: String,
        /// The parameter's shape.
        expected: Vec<usize>,
        /// The tensor's shape in the file.
        found: Vec<usize>,
    },
    /// The engine failed: building the network, or reading or assigning a parameter.
    Engine(engine::Error),
}

impl fmt::Display for CheckpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use CheckpointError as E;
        let file = |path: &PathBuf| format!("checkpoint {}", path.display());
        match self {
            E::Io { path, source } => write!(f, "{}: {source}", file(path)),
            E::NotSafetensors { path, detail } => {
                write!(f, "{}: not a valid safetensors file: {detail}", file(path))
            }
            E::MissingMetadata { path, key } => {
                write!(f, "{}: metadata key `{key}` is missing", file(path))
            }
            E::BadMetadata { path, key, detail } => {
                write!(f, "{}: metadata key `{key}`: {detail}", file(path))
            }
            E::BadNetwork { path, error } => write!(f, "{}: {error}", file(path)),
            E::WrongNetwork {
                path,
                expected,
                found,
            } => write!(
                f,
                "{}: holds a {found} network, expected {expected}",
                file(path)
            ),
            E::NoDescription { path } => write!(
                f,
                "{}: holds no network description (saved from a custom module); build the \
                 module in code and load the file into it with `checkpoint::load_into`",
                file(path)
            ),
            E::MissingTensor { path, name } => {
                write!(f, "{}: missing tensor `{name}`", file(path))
            }
            E::UnexpectedTensor { path, name } => write!(
                f,
                "{}: unexpected tensor `{name}` (not a parameter, nor extra state under \
                 `{EXTRA_PREFIX}`)",
                file(path)
            ),
            E::DuplicateTensor { path, name } => {
                write!(f, "{}: tensor `{name}` given twice", file(path))
            }
            E::WrongDtype { path, name, dtype } => write!(
                f,
                "{}: tensor `{name}` has dtype {dtype}, expected F32",
                file(path)
            ),
            E::ShapeMismatch {
                path,
                name,
                expected,
                found,
            } => write!(
                f,
                "{}: tensor `{name}` has shape {found:?}, expected {expected:?}",
                file(path)
            ),
            E::Engine(e) => write!(f, "checkpoint: {e}"),
        }
    }
}

impl std::error::Error for CheckpointError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CheckpointError::Io { source, .. } => Some(source),
            CheckpointError::Engine(e) => Some(e),
            _ => None,
        }
    }
}

impl From<engine::Error> for CheckpointError {
    fn from(e: engine::Error) -> Self {
        CheckpointError::Engine(e)
    }
}

impl CheckpointError {
    fn from_model(path: &Path, e: ModelError) -> CheckpointError {
        match e {
            ModelError::Spec(error) => CheckpointError::BadNetwork {
                path: path.to_path_buf(),
                error: Box::new(error),
            },
            ModelError::Engine(e) => CheckpointError::Engine(e),
        }
    }
}

/// Writes `network`'s parameters, the `extra` tensors (names under [`EXTRA_PREFIX`])
/// and the metadata to `path`, atomically: the bytes go to `<path>.tmp-<pid>` in the
/// same directory, are synced, and the temporary file is renamed over `path`, so a
/// failed or interrupted save leaves any existing `path` as it was.
///
/// `metadata` must hold `epoch`, `seed` (integers) and `metrics` (JSON); `format` and,
/// for a module with a description, `network` are written here (the caller may pass
/// them only with the same values).
pub fn save(
    path: &Path,
    module: &dyn Module,
    metadata: &BTreeMap<String, String>,
    extra: &[(String, Tensor)],
) -> Result<(), CheckpointError> {
    let mut header = metadata.clone();
    let mut written = vec![("format", FORMAT.to_string())];
    if let Some(spec) = module.spec() {
        let [c, h, w] = spec.input;
        let classes: usize = spec
            .output_shape()
            .map_or(0, |shape| shape.iter().product());
        written.extend([
            ("network", spec.to_json()),
            ("input_shape", format!("[{c}, {h}, {w}]")),
            ("input_mean", spec.normalize.mean.to_string()),
            ("input_std", spec.normalize.std.to_string()),
            ("classes", classes.to_string()),
        ]);
    }
    for (key, value) in written {
        match header.insert(key.to_string(), value.clone()) {
            Some(given) if given != value => {
                return Err(CheckpointError::BadMetadata {
                    path: path.to_path_buf(),
                    key: key.to_string(),
                    detail: format!("given `{given}`, but this checkpoint is `{value}`"),
                })
            }
            _ => {}
        }
    }
    check_metadata(path, &header)?;

    // Check every name before reading any values back from the device.
    let parameters = module.parameters();
    let mut seen = HashSet::new();
    for (name, _) in parameters.iter().chain(extra) {
        if !seen.insert(name.as_str()) {
            return Err(CheckpointError::DuplicateTensor {
                path: path.to_path_buf(),
                name: name.clone(),
            });
        }
    }
    if let Some((name, _)) = extra
        .iter()
        .find(|(name, _)| !name.starts_with(EXTRA_PREFIX))
    {
        return Err(CheckpointError::UnexpectedTensor {
            path: path.to_path_buf(),
            name: name.clone(),
        });
    }
    let mut tensors = Vec::with_capacity(parameters.len() + extra.len());
    for (name, tensor) in parameters.iter().chain(extra) {
        let bytes: Vec<u8> = tensor
            .to_vec()?
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        tensors.push((name.as_str(), tensor.shape().to_vec(), bytes));
    }

    let not_safetensors = |e: safetensors::SafeTensorError| CheckpointError::NotSafetensors {
        path: path.to_path_buf(),
        detail: e.to_string(),
    };
    let views = tensors
        .iter()
        .map(|(name, shape, bytes)| Ok((*name, TensorView::new(Dtype::F32, shape.clone(), bytes)?)))
        .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()
        .map_err(not_safetensors)?;
    let bytes = safetensors::serialize(views, Some(header.into_iter().collect()))
        .map_err(not_safetensors)?;
    write_atomically(path, &bytes)
}

/// Removes the `NAME.tmp-PID` files that writes of `path` killed midway left beside it
/// (this process's own was just renamed). Best effort: a file that cannot be listed or
/// removed is left.
fn remove_stale_temporaries(path: &Path, file_name: &std::ffi::OsStr) {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let prefix = format!("{}.tmp-", file_name.to_string_lossy());
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let stale = name
            .to_string_lossy()
            .strip_prefix(&prefix)
            .is_some_and(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()));
        if stale {
            let _ = fs::remove_file(entry.path());
        }
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
    let io = |source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file_name = path.file_name().ok_or_else(|| {
        io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the path names no file",
        ))
    })?;
    let mut tmp_name = file_name.to_os_string();
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);

    let written = (|| {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        // NOTE: fails harmlessly when `tmp` was never created (or is not ours to
        // remove, e.g. a directory); the error to report is the first one.
        let _ = fs::remove_file(&tmp);
        return Err(io(e));
    }
    // Make the rename itself durable. NOTE: some filesystems cannot sync a directory;
    // the file is in place either way, so that is not an error.
    #[cfg(unix)]
    {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        if let Ok(dir) = File::open(dir) {
            let _ = dir.sync_all();
        }
    }
    remove_stale_temporaries(path, file_name);
    Ok(())
}

/// Reads and validates a checkpoint: a safetensors file with the required metadata, F32
/// tensors, and, when it describes its network, every parameter of that network with its
/// shape and no other tensors but extra state.
pub fn read(path: &Path) -> Result<Checkpoint, CheckpointError> {
    let bytes = fs::read(path).map_err(|source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&bytes, path)
}

/// [`read`] of a file's bytes already in memory; `path` only names it in errors. Any
/// bytes give a checkpoint or an error, never a panic (fuzzed: `fuzz/`).
pub fn parse(bytes: &[u8], path: &Path) -> Result<Checkpoint, CheckpointError> {
    let not_safetensors = |e: safetensors::SafeTensorError| CheckpointError::NotSafetensors {
        path: path.to_path_buf(),
        detail: e.to_string(),
    };
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(not_safetensors)?;
    let metadata: BTreeMap<String, String> = header
        .metadata()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let spec = check_metadata(path, &metadata)?;

    // Parameters in state_dict order, then the rest by name, so that every check below
    // reports the same tensor first whatever the file's order.
    let expected = spec
        .as_ref()
        .map(NetworkSpec::parameter_shapes)
        .unwrap_or_default();
    let order: HashMap<&str, usize> = expected
        .iter()
        .enumerate()
        .map(|(i, (name, _))| (name.as_str(), i))
        .collect();
    let rank = |name: &str| order.get(name).copied().unwrap_or(usize::MAX);
    let file = SafeTensors::deserialize(bytes).map_err(not_safetensors)?;
    let mut views = file.tensors();
    views.sort_by(|(a, _), (b, _)| rank(a).cmp(&rank(b)).then_with(|| a.cmp(b)));
    let mut tensors = Vec::with_capacity(views.len());
    for (name, view) in views {
        if view.dtype() != Dtype::F32 {
            return Err(CheckpointError::WrongDtype {
                path: path.to_path_buf(),
                name,
                dtype: view.dtype().to_string(),
            });
        }
        // NOTE: the data need not be 4-byte aligned in the file, so no cast in place.
        let values = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        tensors.push((name, view.shape().to_vec(), values));
    }
    if spec.is_some() {
        check_tensors(path, &expected, &tensors)?;
    }
    Ok(Checkpoint {
        path: path.to_path_buf(),
        spec,
        metadata,
        tensors,
    })
}

/// Reads the checkpoint at `path` and builds its network on `device` from the
/// description it holds.
pub fn load_network(
    path: &Path,
    device: &Device,
) -> Result<(Network, Checkpoint), CheckpointError> {
    let ckpt = read(path)?;
    let Some(spec) = &ckpt.spec else {
        return Err(CheckpointError::NoDescription {
            path: path.to_path_buf(),
        });
    };
    let network =
        Network::new(spec, 0, device).map_err(|e| CheckpointError::from_model(path, e))?;
    load_into(&network, &ckpt)?;
    Ok((network, ckpt))
}

/// Overwrites `module`'s parameters in place with the checkpoint's. Checks everything
/// first (the network, names, shapes), so on error the module is unchanged.
pub fn load_into(module: &dyn Module, ckpt: &Checkpoint) -> Result<(), CheckpointError> {
    if let (Some(expected), Some(found)) = (module.spec(), &ckpt.spec) {
        if expected != found {
            let (expected, found) = (expected.name.clone(), found.name.clone());
            let (expected, found) = match expected == found {
                // Same name, other layers: say so rather than "x, expected x".
                true => (
                    format!("{expected} as described now"),
                    format!("another {found}"),
                ),
                false => (expected, found),
            };
            return Err(CheckpointError::WrongNetwork {
                path: ckpt.path.clone(),
                expected,
                found,
            });
        }
    }
    let parameters = module.parameters();
    let expected: Vec<(String, Vec<usize>)> = parameters
        .iter()
        .map(|(name, t)| (name.clone(), t.shape().to_vec()))
        .collect();
    check_tensors(&ckpt.path, &expected, &ckpt.tensors)?;
    for (name, tensor) in &parameters {
        // Present by check_tensors.
        if let Some((_, values)) = ckpt.tensor(name) {
            tensor.assign(values.to_vec())?;
        }
    }
    Ok(())
}

/// The required keys are there and well formed; returns the network's description.
fn check_metadata(
    path: &Path,
    metadata: &BTreeMap<String, String>,
) -> Result<Option<NetworkSpec>, CheckpointError> {
    let get = |key: &str| {
        metadata
            .get(key)
            .ok_or_else(|| CheckpointError::MissingMetadata {
                path: path.to_path_buf(),
                key: key.to_string(),
            })
    };
    let bad = |key: &str, detail: String| CheckpointError::BadMetadata {
        path: path.to_path_buf(),
        key: key.to_string(),
        detail,
    };
    let bad_network = |error: SpecError| CheckpointError::BadNetwork {
        path: path.to_path_buf(),
        error: Box::new(error),
    };
    let spec = match get("format")?.as_str() {
        FORMAT => match metadata.get("network") {
            Some(json) => Some(NetworkSpec::from_json(json).map_err(bad_network)?),
            None => None,
        },
        FORMAT_1 => {
            let name = get("arch")?;
            let spec = builtin::builtin(name).ok_or_else(|| {
                bad_network(SpecError {
                    file: None,
                    network: name.clone(),
                    layer: None,
                    message: format!("not a built-in network ({})", builtin::NAMES.join(", ")),
                })
            })?;
            Some(spec)
        }
        format => {
            return Err(bad(
                "format",
                format!("expected `{FORMAT}` (or `{FORMAT_1}`), found `{format}`"),
            ))
        }
    };
    for key in ["epoch", "seed"] {
        let value = get(key)?;
        if value.parse::<u64>().is_err() {
            return Err(bad(key, format!("expected an integer, found `{value}`")));
        }
    }
    let metrics = get("metrics")?;
    if let Err(e) = serde_json::from_str::<serde_json::Value>(metrics) {
        return Err(bad("metrics", format!("not JSON ({e})")));
    }
    Ok(spec)
}

/// Every expected parameter is present with its shape; nothing else but extra state.
fn check_tensors(
    path: &Path,
    expected: &[(String, Vec<usize>)],
    found: &[(String, Vec<usize>, Vec<f32>)],
) -> Result<(), CheckpointError> {
    let shapes: HashMap<&str, &[usize]> = found
        .iter()
        .map(|(name, shape, _)| (name.as_str(), shape.as_slice()))
        .collect();
    for (name, shape) in expected {
        match shapes.get(name.as_str()) {
            None => {
                return Err(CheckpointError::MissingTensor {
                    path: path.to_path_buf(),
                    name: name.clone(),
                })
            }
            Some(&found) if found != shape.as_slice() => {
                return Err(CheckpointError::ShapeMismatch {
                    path: path.to_path_buf(),
                    name: name.clone(),
                    expected: shape.clone(),
                    found: found.to_vec(),
                })
            }
            Some(_) => {}
        }
    }
    let known: HashSet<&str> = expected.iter().map(|(name, _)| name.as_str()).collect();
    if let Some((name, _, _)) = found
        .iter()
        .find(|(name, _, _)| !known.contains(name.as_str()) && !name.starts_with(EXTRA_PREFIX))
    {
        return Err(CheckpointError::UnexpectedTensor {
            path: path.to_path_buf(),
            name: name.clone(),
        });
    }
    Ok(())
}
