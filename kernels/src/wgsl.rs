//! The WGSL sources, compiled into the binary, and how a kernel's source is put together.
//!
//! Each kernel has its own `wgsl/<name>.wgsl`. WGSL has no `#include`, so what several
//! kernels share lives in `wgsl/lib/` and is prepended to the kernel's file:
//!
//! - `lib/params.wgsl`: every params struct, the WGSL mirror of [`crate::params`], before
//!   every kernel;
//! - `lib/gemm_tile.wgsl`: the 64 × 64 tiled inner product of matmul and the three
//!   conv2d kernels;
//! - `lib/kl_rows.wgsl`: the row helpers of the softmax-KL and the KD loss.
//!
//! Outside the `gpu` feature, so that a test can parse and validate every kernel's
//! source with naga on any machine.

const PARAMS: &str = include_str!("../wgsl/lib/params.wgsl");
const GEMM_TILE: &str = include_str!("../wgsl/lib/gemm_tile.wgsl");
const KL_ROWS: &str = include_str!("../wgsl/lib/kl_rows.wgsl");

/// Every kernel: its name (the file `wgsl/<name>.wgsl` and the CPU function), the
/// libraries it needs after `lib/params.wgsl`, and its own source.
pub const KERNELS: [(&str, &[&str], &str); 26] = [
    ("matmul", &[GEMM_TILE], include_str!("../wgsl/matmul.wgsl")),
    (
        "conv2d_forward",
        &[GEMM_TILE],
        include_str!("../wgsl/conv2d_forward.wgsl"),
    ),
    (
        "conv2d_backward_input",
        &[GEMM_TILE],
        include_str!("../wgsl/conv2d_backward_input.wgsl"),
    ),
    (
        "conv2d_backward_weight",
        &[GEMM_TILE],
        include_str!("../wgsl/conv2d_backward_weight.wgsl"),
    ),
    (
        "bias_forward",
        &[],
        include_str!("../wgsl/bias_forward.wgsl"),
    ),
    (
        "bias_backward",
        &[],
        include_str!("../wgsl/bias_backward.wgsl"),
    ),
    (
        "max_pool2d_forward",
        &[],
        include_str!("../wgsl/max_pool2d_forward.wgsl"),
    ),
    (
        "max_pool2d_backward",
        &[],
        include_str!("../wgsl/max_pool2d_backward.wgsl"),
    ),
    (
        "relu_forward",
        &[],
        include_str!("../wgsl/relu_forward.wgsl"),
    ),
    (
        "relu_backward",
        &[],
        include_str!("../wgsl/relu_backward.wgsl"),
    ),
    (
        "dropout_forward",
        &[],
        include_str!("../wgsl/dropout_forward.wgsl"),
    ),
    (
        "dropout_backward",
        &[],
        include_str!("../wgsl/dropout_backward.wgsl"),
    ),
    ("add", &[], include_str!("../wgsl/add.wgsl")),
    ("mul", &[], include_str!("../wgsl/mul.wgsl")),
    ("scale", &[], include_str!("../wgsl/scale.wgsl")),
    ("axpy", &[], include_str!("../wgsl/axpy.wgsl")),
    ("sum_axis", &[], include_str!("../wgsl/sum_axis.wgsl")),
    (
        "sum_axis_backward",
        &[],
        include_str!("../wgsl/sum_axis_backward.wgsl"),
    ),
    (
        "log_softmax_forward",
        &[],
        include_str!("../wgsl/log_softmax_forward.wgsl"),
    ),
    (
        "log_softmax_backward",
        &[],
        include_str!("../wgsl/log_softmax_backward.wgsl"),
    ),
    (
        "cross_entropy_forward",
        &[],
        include_str!("../wgsl/cross_entropy_forward.wgsl"),
    ),
    (
        "softmax_kl_forward",
        &[KL_ROWS],
        include_str!("../wgsl/softmax_kl_forward.wgsl"),
    ),
    (
        "kd_loss_forward",
        &[KL_ROWS],
        include_str!("../wgsl/kd_loss_forward.wgsl"),
    ),
    ("argmax_rows", &[], include_str!("../wgsl/argmax_rows.wgsl")),
    ("sgd_step", &[], include_str!("../wgsl/sgd_step.wgsl")),
    ("adam_step", &[], include_str!("../wgsl/adam_step.wgsl")),
];

/// The whole source of kernel `name`: `lib/params.wgsl`, its libraries, then its file;
/// `None` for an unknown name.
pub fn source(name: &str) -> Option<String> {
    let (_, libraries, own) = KERNELS.iter().find(|(n, _, _)| *n == name)?;
    let parts = std::iter::once(PARAMS).chain(libraries.iter().copied());
    Some(parts.chain([*own]).collect::<Vec<_>>().join("\n"))
}
