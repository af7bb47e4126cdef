//! The root package of the workspace: it owns the cross-crate tests (`tests/`) and the
//! criterion benches (`benches/`). The stack itself lives in the member crates, re-exported
//! here so that a test or bench can name any layer.

pub use distill;
pub use engine;
pub use kernels;
pub use models;
