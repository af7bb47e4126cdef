//! Pure compute: slices (or GPU buffers) and a params struct in, results out.
//!
//! Every kernel exists twice: a rayon function in [`cpu`] and a WGSL shader in `wgsl/`
//! (put together by [`wgsl`]) launched from `gpu`. Both take the same `#[repr(C)]`
//! params struct from [`params`]; on the GPU it is the shader's uniform, so shapes never
//! enter shader text and one compiled pipeline serves every batch size.
//!
//! This crate never sees a tensor: layouts are documented at the top of each kernel.

pub mod cpu;
#[cfg(feature = "gpu")]
pub mod gpu;
pub mod params;
pub mod wgsl;

pub use params::*;
