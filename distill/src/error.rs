//! The errors of the training programs: each names the file, flag or op at fault.

use crate::data::DataError;
use models::checkpoint::CheckpointError;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DistillError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Engine(#[from] engine::Error),
    /// A network description that does not fit (a file given to `--model`, ...).
    #[error(transparent)]
    Spec(#[from] models::SpecError),
    #[error(transparent)]
    Model(#[from] models::ModelError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A flag or combination of flags that cannot work (`--epochs 0`, `--T -1`, ...).
    #[error("{0}")]
    Config(String),
    /// `--resume` with a checkpoint that does not fit the run.
    #[error("cannot resume from {path}: {detail}")]
    Resume { path: PathBuf, detail: String },
}

pub type Result<T> = std::result::Result<T, DistillError>;

pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> DistillError {
    let path = path.into();
    move |source| DistillError::Io { path, source }
}
