//! The errors of the training programs: each names the file, flag or op at fault.

use crate::data::DataError;
use models::checkpoint::CheckpointError;
use std::path::PathBuf;

/// Why a training program stopped.
#[derive(Debug, thiserror::Error)]
pub enum DistillError {
    /// MNIST could not be read, verified or downloaded.
    #[error(transparent)]
    Data(#[from] DataError),
    /// A checkpoint could not be written, read or loaded.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// A tensor op or the device failed.
    #[error(transparent)]
    Engine(#[from] engine::Error),
    /// A network description that does not fit (a file given to `--model`, ...).
    #[error(transparent)]
    Spec(#[from] models::SpecError),
    /// A network could not be built from its description.
    #[error(transparent)]
    Model(#[from] models::ModelError),
    /// Writing an output (the metrics file, the study's directory and report) failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A flag or combination of flags that cannot work (`--epochs 0`, `--T -1`, ...).
    #[error("{0}")]
    Config(String),
    /// `--resume` with a checkpoint that does not fit the run.
    #[error("cannot resume from {path}: {detail}")]
    Resume {
        /// The checkpoint given by `--out`.
        path: PathBuf,
        /// What does not fit.
        detail: String,
    },
}

/// A `Result` whose error is a [`DistillError`].
pub type Result<T> = std::result::Result<T, DistillError>;

pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> DistillError {
    let path = path.into();
    move |source| DistillError::Io { path, source }
}
