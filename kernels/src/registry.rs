//! Every kernel, declared once.
//!
//! Each entry of the table at the end of this file names a kernel, its params struct,
//! the WGSL it is made of, its buffer arguments (in the order of the CPU function, of
//! the GPU launcher and of the shader's `@binding(1..)`, each with the words it spans)
//! and how its GPU grid is sized. Everything else derives from that entry:
//!
//! - [`KernelId`]: its variant, [`KernelId::ALL`], [`KernelId::name`] (the CPU function,
//!   the pipeline and the `--profile` row) and [`KernelId::file`] (its WGSL file,
//!   `wgsl/<name>.wgsl` unless the entry names another, as the activations' pairs do);
//! - [`KernelId::source`]: the composed WGSL (`lib/params.wgsl`, the libraries, the file);
//! - a type of the same name as the variant implementing [`Kernel`], through which the
//!   engine runs the kernel on either device without knowing which one it is;
//! - for a kernel on a plain grid, its typed GPU launcher `kernels::gpu::<name>`.
//!
//! ```
//! use kernels::registry::{Kernel, KernelId, ReluForward};
//! use kernels::params::ElementwiseParams;
//!
//! assert_eq!(ReluForward::ID, KernelId::ReluForward);
//! assert_eq!(KernelId::ReluForward.name(), "relu_forward");
//! // Run it through the registry, as the engine does: reads, then writes.
//! let p = ElementwiseParams::new(3).unwrap();
//! let mut out = [0.0; 3];
//! ReluForward::cpu(&[&[-1.0, 0.5, 2.0]], &mut [&mut out], &p).unwrap();
//! assert_eq!(out, [0.0, 0.5, 2.0]);
//! // A short argument is the same error on either device.
//! let err = ReluForward::cpu(&[&[-1.0]], &mut [&mut out], &p).unwrap_err();
//! assert_eq!(err.to_string(), "relu_forward: `x` holds 1 values, the params need 3");
//! ```
//!
//! A new kernel is one entry here, its CPU function in `cpu/` and its WGSL in `wgsl/`.
//! A new pointwise activation needs only `fn forward` and `fn backward` in its WGSL file:
//! `wgsl/lib/pointwise_{forward,backward}.wgsl` supply the bindings and `main`.

use crate::error::KernelError;
use crate::params::*;

/// How a kernel uses a buffer argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Only read (`var<storage, read>`).
    Read,
    /// Written, and possibly read first (`var<storage, read_write>`): a value updated in
    /// place such as an optimizer's parameter, or an output the kernel adds into.
    Write,
    /// An output written whole before anything of it is read (`var<storage,
    /// read_write>` too): the engine may hand the CPU kernel a reused buffer holding
    /// stale values instead of zeroing it (`engine::storage`'s pool).
    Out,
}

impl Access {
    /// Whether the kernel writes the argument: [`Access::Write`] or [`Access::Out`].
    pub fn writes(self) -> bool {
        self != Access::Read
    }
}

/// The element type of a buffer argument. Both are 4-byte words, so one buffer type
/// (a `Vec<f32>` of bits on the CPU, a `GpuBuffer` on the GPU) carries either.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Word {
    /// Values.
    F32,
    /// Indices: class labels, row indices, a max-pool's argmax.
    U32,
}

/// One buffer argument of a kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arg {
    /// As in the CPU function and the shader (`x`, `grad_out`, `argmax`).
    pub name: &'static str,
    /// Read only, or written.
    pub access: Access,
    /// What its words hold.
    pub word: Word,
}

/// A kernel as the engine sees it: the same call on either device.
///
/// `reads` are the [`Access::Read`] arguments in declaration order and `writes` the
/// others ([`Access::Write`] and [`Access::Out`]); each slice or buffer must hold at
/// least the words [`Kernel::lens`] gives, and only those are touched: on either device
/// a shorter one is [`KernelError::TooShort`]. On the CPU every argument is a slice of
/// `f32` words; a [`Word::U32`] argument is reinterpreted bit for bit.
pub trait Kernel {
    /// The `#[repr(C)]` params struct: the CPU function's last argument and the
    /// shader's uniform at `@binding(0)`.
    type Params: bytemuck::Pod + std::fmt::Debug;
    /// Its variant of [`KernelId`].
    const ID: KernelId;
    /// Its buffer arguments, in order.
    const ARGS: &'static [Arg];
    /// The words each argument spans under `p`, in [`Kernel::ARGS`] order.
    fn lens(p: &Self::Params) -> Vec<usize>;
    /// Runs the rayon function of `kernels::cpu`.
    fn cpu(
        reads: &[&[f32]],
        writes: &mut [&mut [f32]],
        p: &Self::Params,
    ) -> Result<(), KernelError>;
    /// The GPU commands of a call under `p`: what [`Kernel::gpu`] records, as data; an
    /// error when its pieces would not fit (see [`crate::plan`]).
    fn plan(p: &Self::Params) -> Result<crate::plan::Plan, KernelError>;
    /// Records the dispatch (or dispatches) on the GPU; does not wait.
    #[cfg(feature = "gpu")]
    fn gpu(
        ctx: &crate::gpu::GpuContext,
        reads: &[&crate::gpu::GpuBuffer],
        writes: &[&crate::gpu::GpuBuffer],
        p: &Self::Params,
    ) -> Result<(), crate::gpu::GpuError>;
}

/// [`KernelError::BadParams`] unless `reads` and `writes` arguments are what `args`
/// declares.
fn check_counts(
    op: &'static str,
    args: &[Arg],
    reads: usize,
    writes: usize,
) -> Result<(), KernelError> {
    let declared = args.iter().filter(|a| a.access.writes()).count();
    match (reads + writes, writes) == (args.len(), declared) {
        true => Ok(()),
        false => Err(KernelError::BadParams {
            op,
            message: format!(
                "{reads} read and {writes} written arguments given; it takes {} and {declared}",
                args.len() - declared
            ),
        }),
    }
}

/// A Rust type for the words of a [`Word`].
pub trait WordType: bytemuck::Pod {
    /// Which word it is.
    const WORD: Word;
}

impl WordType for f32 {
    const WORD: Word = Word::F32;
}

impl WordType for u32 {
    const WORD: Word = Word::U32;
}

/// `words` as `T` values, bit for bit.
pub fn view<T: WordType>(words: &[f32]) -> &[T] {
    bytemuck::cast_slice(words)
}

/// `words` as mutable `T` values, bit for bit.
pub fn view_mut<T: WordType>(words: &mut [f32]) -> &mut [T] {
    bytemuck::cast_slice_mut(words)
}

/// Every params struct, before every kernel: the WGSL mirror of [`crate::params`].
const PARAMS: &str = include_str!("../wgsl/lib/params.wgsl");
/// The 64 × 64 tiled inner product of matmul and the six conv kernels.
const GEMM_TILE: &str = include_str!("../wgsl/lib/gemm_tile.wgsl");
/// The im2col gather through which the conv kernels read their input.
const CONV_INPUT: &str = include_str!("../wgsl/lib/conv_input.wgsl");
/// The implicit GEMM of the conv input gradients; the kernel file gives `grad_at`.
const CONV_BACKWARD_INPUT: &str = include_str!("../wgsl/lib/conv_backward_input.wgsl");
/// The implicit GEMM of the conv weight gradients; the kernel file gives `grad_at`.
const CONV_BACKWARD_WEIGHT: &str = include_str!("../wgsl/lib/conv_backward_weight.wgsl");
/// A conv output's gradient read through the 2×2 max-pool after it (`unpooled`).
const UNPOOL: &str = include_str!("../wgsl/lib/unpool.wgsl");
/// The row helpers of the softmax-KL and the distillation losses.
const KL_ROWS: &str = include_str!("../wgsl/lib/kl_rows.wgsl");
/// Bindings and `main` of a pointwise activation's forward: `out[i] = forward(x[i], alpha)`.
const POINTWISE_FORWARD: &str = include_str!("../wgsl/lib/pointwise_forward.wgsl");
/// Bindings and `main` of its backward: `grad_x[i] = backward(x[i], grad_out[i], alpha)`.
const POINTWISE_BACKWARD: &str = include_str!("../wgsl/lib/pointwise_backward.wgsl");

/// The table's grammar, one entry per kernel:
///
/// ```text
/// /// docs
/// Id name(p: Params) wgsl [LIBRARY, ...] ("file")? {
///     arg: read|write|out f32|u32 [words], ...
/// } grid (workgroups) | launcher (path);
/// ```
///
/// `grid (n)` launches `n` workgroups through the generated launcher; `launcher (path)`
/// names a hand-written one (for kernels that split their work into several dispatches).
/// The WGSL file is `wgsl/<name>.wgsl` unless a file stem is given.
macro_rules! kernels {
    ($(
        $(#[$doc:meta])*
        $id:ident $name:ident ($p:ident: $params:ty) wgsl [$($lib:ident),*] $(($file:literal))? {
            $($arg:ident: $access:ident $word:ident [$len:expr]),* $(,)?
        } $how:ident $launch:tt;
    )*) => {
        /// One variant per kernel, named as its entry in the registry.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum KernelId {
            $($(#[$doc])* $id,)*
        }

        impl KernelId {
            /// How many kernels there are.
            pub const COUNT: usize = [$(stringify!($id)),*].len();

            /// Every kernel, in registry order.
            pub const ALL: [KernelId; KernelId::COUNT] = [$(KernelId::$id),*];

            /// The name of the CPU function, the pipeline and the profile row; the shader
            /// file is [`KernelId::file`].
            pub fn name(self) -> &'static str {
                match self {
                    $(KernelId::$id => stringify!($name),)*
                }
            }

            /// The whole WGSL source as compiled: `lib/params.wgsl`, the kernel's
            /// libraries, then its own file.
            pub fn source(self) -> String {
                let (libraries, own): (&[&str], &str) = match self {
                    $(KernelId::$id => (&[$($lib),*], kernels!(@file $name $($file)?)),)*
                };
                let mut parts = vec![PARAMS];
                parts.extend_from_slice(libraries);
                parts.push(own);
                parts.join("\n")
            }

            /// The kernel's buffer arguments: [`Kernel::ARGS`] of its type.
            pub fn args(self) -> &'static [Arg] {
                match self {
                    $(KernelId::$id => <$id as Kernel>::ARGS,)*
                }
            }

            /// The file stem of the kernel's own WGSL (`relu` for `relu_forward`).
            pub fn file(self) -> &'static str {
                match self {
                    $(KernelId::$id => kernels!(@stem $name $($file)?),)*
                }
            }
        }

        $(
            $(#[$doc])*
            #[derive(Clone, Copy, Debug, Default)]
            pub struct $id;

            impl Kernel for $id {
                type Params = $params;
                const ID: KernelId = KernelId::$id;
                const ARGS: &'static [Arg] = &[$(Arg {
                    name: stringify!($arg),
                    access: kernels!(@access $access),
                    word: <$word as WordType>::WORD,
                }),*];

                fn lens($p: &$params) -> Vec<usize> {
                    vec![$($len),*]
                }

                fn cpu(
                    reads: &[&[f32]],
                    writes: &mut [&mut [f32]],
                    $p: &$params,
                ) -> Result<(), KernelError> {
                    check_counts(stringify!($name), Self::ARGS, reads.len(), writes.len())?;
                    // NOTE: a kernel with no read (max_norm_rows) leaves `reads` unused.
                    #[allow(unused_mut, unused_variables)]
                    let (mut reads, mut writes) = (reads.iter(), writes.iter_mut());
                    crate::cpu::$name($(kernels!(@cpu $access $word reads writes),)* $p)
                }

                fn plan($p: &$params) -> Result<crate::plan::Plan, KernelError> {
                    #[allow(unused_imports)]
                    use crate::plan::{elements, row_groups, tiles};
                    kernels!(@plan $how $launch $name $p)
                }

                #[cfg(feature = "gpu")]
                fn gpu(
                    ctx: &crate::gpu::GpuContext,
                    reads: &[&crate::gpu::GpuBuffer],
                    writes: &[&crate::gpu::GpuBuffer],
                    $p: &$params,
                ) -> Result<(), crate::gpu::GpuError> {
                    check_counts(stringify!($name), Self::ARGS, reads.len(), writes.len())?;
                    #[allow(unused_mut, unused_variables)]
                    let (mut reads, mut writes) = (reads.iter(), writes.iter());
                    kernels!(@launch $how $launch $name)(
                        ctx,
                        $(kernels!(@gpu $access reads writes),)*
                        $p,
                    )
                }
            }
        )*

        /// The GPU launchers of the kernels on a plain grid: check the buffers against
        /// the params, then record one dispatch.
        #[cfg(feature = "gpu")]
        pub mod launchers {
            use super::*;
            #[allow(unused_imports)]
            use crate::plan::{elements, row_groups, tiles};
            use crate::gpu::{GpuBuffer, GpuContext, GpuError};
            $(kernels!(@launcher $how $launch [$(#[$doc])*] $id $name ($p: $params) {
                $($arg: $access [$len]),*
            });)*
        }
    };

    (@file $name:ident) => { include_str!(concat!("../wgsl/", stringify!($name), ".wgsl")) };
    (@file $name:ident $file:literal) => { include_str!(concat!("../wgsl/", $file, ".wgsl")) };
    (@stem $name:ident) => { stringify!($name) };
    (@stem $name:ident $file:literal) => { $file };

    (@access read) => { Access::Read };
    (@access write) => { Access::Write };
    (@access out) => { Access::Out };

    // NOTE: `check_counts` held, so `next` always has one.
    (@cpu read $word:ident $reads:ident $writes:ident) => {
        view::<$word>($reads.next().expect("a read argument"))
    };
    (@cpu write $word:ident $reads:ident $writes:ident) => {
        view_mut::<$word>($writes.next().expect("a write argument"))
    };
    (@cpu out $word:ident $reads:ident $writes:ident) => {
        view_mut::<$word>($writes.next().expect("a write argument"))
    };
    (@gpu read $reads:ident $writes:ident) => { *$reads.next().expect("a read argument") };
    (@gpu write $reads:ident $writes:ident) => { *$writes.next().expect("a write argument") };
    (@gpu out $reads:ident $writes:ident) => { *$writes.next().expect("a write argument") };

    (@plan grid $groups:tt $name:ident $p:ident) => { Ok(crate::plan::Plan::single::<Self>($p, $groups)) };
    (@plan launcher $path:tt $name:ident $p:ident) => { crate::plan::$name($p) };
    (@launch grid $groups:tt $name:ident) => { launchers::$name };
    (@launch launcher $path:tt $name:ident) => { $path };

    (@launcher launcher $path:tt [$($doc:tt)*] $($rest:tt)*) => {};
    (@launcher grid $groups:tt [$(#[$doc:meta])*] $id:ident $name:ident ($p:ident: $params:ty) {
        $($arg:ident: $access:ident [$len:expr]),*
    }) => {
        $(#[$doc])*
        pub fn $name(
            ctx: &GpuContext,
            $($arg: &GpuBuffer,)*
            $p: &$params,
        ) -> Result<(), GpuError> {
            let args = [$(kernels!(@bind $access $arg [$len])),*];
            crate::gpu::launch::launch(ctx, KernelId::$id, $p, &args, $groups)
        }
    };
    (@bind read $arg:ident [$len:expr]) => { crate::gpu::launch::r(stringify!($arg), $arg, $len) };
    (@bind write $arg:ident [$len:expr]) => { crate::gpu::launch::w(stringify!($arg), $arg, $len) };
    (@bind out $arg:ident [$len:expr]) => { crate::gpu::launch::w(stringify!($arg), $arg, $len) };
}

kernels! {
    /// `c (m, n) = op(a) · op(b)`, or `c +=` with `accumulate`; see [`MatmulParams`].
    Matmul matmul(p: MatmulParams) wgsl [GEMM_TILE] {
        a: read f32 [p.a_len()], b: read f32 [p.b_len()], c: write f32 [p.c_len()],
    } launcher (crate::gpu::matmul);

    /// `out (n, c_out, h_out, w_out) = conv2d(x (n, c_in, h, w), weight)`; see
    /// [`Conv2dParams`].
    Conv2dForward conv2d_forward(p: Conv2dParams) wgsl [GEMM_TILE, CONV_INPUT] {
        x: read f32 [p.input_len()], weight: read f32 [p.weight_len()],
        out: out f32 [p.output_len()],
    } grid (tiles(p.c_out, p.n * p.h_out * p.w_out));

    /// `out, argmax (n, c_out, h_out / 2, w_out / 2)`: conv2d, `+ bias`, ReLU and a
    /// 2×2 max-pool of stride 2 in one pass that never stores the conv's output;
    /// `argmax` indexes each `(h_out, w_out)` plane, as `max_pool2d_forward`'s does.
    Conv2dReluPoolForward conv2d_relu_pool_forward(p: Conv2dParams) wgsl [GEMM_TILE, CONV_INPUT] {
        x: read f32 [p.input_len()], weight: read f32 [p.weight_len()],
        bias: read f32 [p.c_out as usize],
        out: out f32 [p.pooled_len()], argmax: out u32 [p.pooled_len()],
    } grid (tiles(p.c_out, 4 * p.n * (p.h_out / 2) * (p.w_out / 2)));

    /// `grad_x (n, c_in, h, w)`, overwritten, from `grad_out` and `weight`.
    Conv2dBackwardInput conv2d_backward_input(p: Conv2dParams) wgsl [GEMM_TILE, CONV_BACKWARD_INPUT] {
        grad_out: read f32 [p.output_len()], weight: read f32 [p.weight_len()],
        grad_x: out f32 [p.input_len()],
    } grid (tiles(p.c_in, p.n * p.h * p.w));

    /// `grad_weight (c_out, c_in, kh, kw)`, overwritten, summed over the batch.
    Conv2dBackwardWeight conv2d_backward_weight(p: Conv2dParams) wgsl [GEMM_TILE, CONV_INPUT, CONV_BACKWARD_WEIGHT] {
        x: read f32 [p.input_len()], grad_out: read f32 [p.output_len()],
        grad_weight: out f32 [p.weight_len()],
    } launcher (crate::gpu::conv2d_backward_weight);

    /// The backward of the fused conv block through its 2×2 pool: `grad_x (n, c_in, h,
    /// w)`, overwritten, is `conv2d_backward_input` of the gradient `max_pool2d_backward`
    /// makes from the pool's `grad_out` and `argmax` `(n, c_out, h_out / 2, w_out / 2)`,
    /// up to rounding; that gradient is never stored (the CPU kernel sums only its
    /// non-zero values, the pool's winners; the WGSL one reads it through the argmax).
    Conv2dPoolBackwardInput conv2d_pool_backward_input(p: Conv2dParams) wgsl [GEMM_TILE, UNPOOL, CONV_BACKWARD_INPUT] {
        grad_out: read f32 [p.pooled_len()], argmax: read u32 [p.pooled_len()],
        weight: read f32 [p.weight_len()], grad_x: out f32 [p.input_len()],
    } grid (tiles(p.c_in, p.n * p.h * p.w));

    /// `grad_weight (c_out, c_in, kh, kw)` and `grad_bias (c_out)`, overwritten:
    /// `conv2d_backward_weight` and `bias_backward` of the same never-stored gradient as
    /// `conv2d_pool_backward_input`'s, up to rounding.
    Conv2dPoolBackwardWeight conv2d_pool_backward_weight(p: Conv2dParams) wgsl [GEMM_TILE, CONV_INPUT, UNPOOL, CONV_BACKWARD_WEIGHT] {
        x: read f32 [p.input_len()], grad_out: read f32 [p.pooled_len()],
        argmax: read u32 [p.pooled_len()], grad_weight: out f32 [p.weight_len()],
        grad_bias: out f32 [p.c_out as usize],
    } launcher (crate::gpu::conv2d_pool_backward_weight);

    /// `out[o, c, i] = x[o, c, i] + bias[c]`; see [`AxisParams`].
    BiasForward bias_forward(p: AxisParams) wgsl [] {
        x: read f32 [p.len()], bias: read f32 [p.channels as usize], out: out f32 [p.len()],
    } grid (elements(p.len()));

    /// `grad_bias[c] = Σ_{o, i} grad_out[o, c, i]`, overwritten; one workgroup a channel.
    BiasBackward bias_backward(p: AxisParams) wgsl [] {
        grad_out: read f32 [p.len()], grad_bias: out f32 [p.channels as usize],
    } grid (p.channels as u64);

    /// `out, argmax (n, c, h_out, w_out)` from `x (n, c, h, w)`; `argmax` indexes each
    /// `(h, w)` plane. See [`Pool2dParams`].
    MaxPool2dForward max_pool2d_forward(p: Pool2dParams) wgsl [] {
        x: read f32 [p.input_len()], out: out f32 [p.output_len()],
        argmax: out u32 [p.output_len()],
    } grid (elements(p.output_len()));

    /// `grad_x (n, c, h, w)`, overwritten: each `grad_out` value added to its winner.
    MaxPool2dBackward max_pool2d_backward(p: Pool2dParams) wgsl [] {
        grad_out: read f32 [p.output_len()], argmax: read u32 [p.output_len()],
        grad_x: out f32 [p.input_len()],
    } grid (elements(p.input_len()));

    /// `out = max(x, 0)`.
    ReluForward relu_forward(p: ElementwiseParams) wgsl [POINTWISE_FORWARD] ("relu") {
        x: read f32 [p.elements()], out: out f32 [p.elements()],
    } grid (elements(p.elements()));

    /// `grad_x = grad_out` where `x > 0`, else 0 (relu'(0) = 0, as PyTorch).
    ReluBackward relu_backward(p: ElementwiseParams) wgsl [POINTWISE_BACKWARD] ("relu") {
        x: read f32 [p.elements()], grad_out: read f32 [p.elements()],
        grad_x: out f32 [p.elements()],
    } grid (elements(p.elements()));

    /// `out = x` where `x > 0`, else `alpha · x` (PyTorch's `LeakyReLU(negative_slope)`).
    LeakyReluForward leaky_relu_forward(p: ElementwiseParams) wgsl [POINTWISE_FORWARD] ("leaky_relu") {
        x: read f32 [p.elements()], out: out f32 [p.elements()],
    } grid (elements(p.elements()));

    /// `grad_x = grad_out` where `x > 0`, else `alpha · grad_out`.
    LeakyReluBackward leaky_relu_backward(p: ElementwiseParams) wgsl [POINTWISE_BACKWARD] ("leaky_relu") {
        x: read f32 [p.elements()], grad_out: read f32 [p.elements()],
        grad_x: out f32 [p.elements()],
    } grid (elements(p.elements()));

    /// `mask = scale` where `dropout_hash(seed, i) >= threshold`, else 0; `out = x · mask`.
    DropoutForward dropout_forward(p: DropoutParams) wgsl [] {
        x: read f32 [p.len as usize], out: out f32 [p.len as usize],
        mask: out f32 [p.len as usize],
    } grid (elements(p.len as usize));

    /// `grad_x = grad_out · mask`.
    DropoutBackward dropout_backward(p: DropoutParams) wgsl [] {
        grad_out: read f32 [p.len as usize], mask: read f32 [p.len as usize],
        grad_x: out f32 [p.len as usize],
    } grid (elements(p.len as usize));

    /// `out = a + b`.
    Add add(p: ElementwiseParams) wgsl [] {
        a: read f32 [p.elements()], b: read f32 [p.elements()], out: out f32 [p.elements()],
    } grid (elements(p.elements()));

    /// `out = alpha · x`.
    Scale scale(p: ElementwiseParams) wgsl [] {
        x: read f32 [p.elements()], out: out f32 [p.elements()],
    } grid (elements(p.elements()));

    /// `y += alpha · x`, in place: how gradients accumulate.
    Axpy axpy(p: ElementwiseParams) wgsl [] {
        x: read f32 [p.elements()], y: write f32 [p.elements()],
    } grid (elements(p.elements()));

    /// `out[o, i] = Σ_c x[o, c, i]`, overwritten.
    SumAxis sum_axis(p: AxisParams) wgsl [] {
        x: read f32 [p.len()], out: out f32 [p.outer as usize * p.inner as usize],
    } launcher (crate::gpu::sum_axis);

    /// `grad_x[o, c, i] = grad_out[o, i]`, overwritten.
    SumAxisBackward sum_axis_backward(p: AxisParams) wgsl [] {
        grad_out: read f32 [p.outer as usize * p.inner as usize], grad_x: out f32 [p.len()],
    } grid (elements(p.len()));

    /// `out = log softmax(x)` per row; see [`RowParams`].
    LogSoftmaxForward log_softmax_forward(p: RowParams) wgsl [] {
        x: read f32 [p.elements()], out: out f32 [p.elements()],
    } grid (row_groups(p));

    /// `grad_x = grad_out - exp(out) · Σ grad_out` per row, `out` the saved log-softmax.
    LogSoftmaxBackward log_softmax_backward(p: RowParams) wgsl [] {
        out: read f32 [p.elements()], grad_out: read f32 [p.elements()],
        grad_x: out f32 [p.elements()],
    } grid (row_groups(p));

    /// Per row: `loss = -log softmax(logits)[label]`, `grad = softmax(logits) -
    /// onehot(label)`. NOTE: a label `>= cols` gives a NaN loss on the GPU.
    CrossEntropyForward cross_entropy_forward(p: RowParams) wgsl [] {
        logits: read f32 [p.elements()], labels: read u32 [p.rows as usize],
        loss: out f32 [p.rows as usize], grad: out f32 [p.elements()],
    } grid (row_groups(p));

    /// Per row: `loss = T²·KL(softmax(t/T) ‖ softmax(s/T))`, `grad = T (softmax(s/T) -
    /// softmax(t/T))`.
    SoftmaxKlForward softmax_kl_forward(p: RowParams) wgsl [KL_ROWS] {
        student: read f32 [p.elements()], teacher: read f32 [p.elements()],
        loss: out f32 [p.rows as usize], grad: out f32 [p.elements()],
    } grid (row_groups(p));

    /// Per row: `loss[2r] = CE(y, s)`, `loss[2r + 1] = T²·KL`, `grad = (1 - α)(softmax(s) -
    /// onehot(y)) + α·T·(softmax(s/T) - softmax(t/T))`.
    KdLossForward kd_loss_forward(p: RowParams) wgsl [KL_ROWS] {
        student: read f32 [p.elements()], teacher: read f32 [p.elements()],
        labels: read u32 [p.rows as usize], loss: out f32 [2 * p.rows as usize],
        grad: out f32 [p.elements()],
    } grid (row_groups(p));

    /// Per row: `loss[3r] = CE(y, s)`, `loss[3r + 1] = T²·TCKD`, `loss[3r + 2] = T²·NCKD`
    /// (decoupled KD, Zhao et al. 2022), `grad` the derivative of `ce + α·tckd + β·nckd`.
    /// At least two classes.
    DkdLossForward dkd_loss_forward(p: RowParams) wgsl [KL_ROWS] {
        student: read f32 [p.elements()], teacher: read f32 [p.elements()],
        labels: read u32 [p.rows as usize], loss: out f32 [3 * p.rows as usize],
        grad: out f32 [p.elements()],
    } grid (row_groups(p));

    /// The mean over rows of per-row losses `(rows, cols)`: `means[c]`, and `loss` =
    /// `means[0]` (one column), `(1 - α)·means[0] + α·means[1]` (the distillation loss's
    /// two) or `means[0] + α·means[1] + β·means[2]` (decoupled KD's three). One workgroup.
    RowLossMean row_loss_mean(p: RowParams) wgsl [] {
        losses: read f32 [p.elements()], loss: out f32 [1],
        means: out f32 [p.cols as usize],
    } grid (1);

    /// `grad = grad_rows · upstream[0] · alpha` (`alpha = 1 / rows`): the backward of
    /// [`RowLossMean`], whose per-row gradients the loss kernels wrote.
    RowLossBackward row_loss_backward(p: ElementwiseParams) wgsl [] {
        grad_rows: read f32 [p.elements()], upstream: read f32 [1],
        grad: out f32 [p.elements()],
    } grid (elements(p.elements()));

    /// `out[r] = x[index[r]]`, rows of `cols` values; see [`GatherParams`].
    GatherRows gather_rows(p: GatherParams) wgsl [] {
        x: read f32 [p.src_rows as usize * p.cols as usize], index: read u32 [p.rows as usize],
        out: out f32 [p.rows as usize * p.cols as usize],
    } grid (elements(p.rows as usize * p.cols as usize));

    /// `out[r]` = the column of the largest value of row `r`, the first one on ties.
    ArgmaxRows argmax_rows(p: RowParams) wgsl [] {
        x: read f32 [p.elements()], out: out u32 [p.rows as usize],
    } grid (row_groups(p));

    /// PyTorch's SGD, in place: `g = grad + wd·param; v = momentum·v + g; param -= lr·v`.
    SgdStep sgd_step(p: SgdParams) wgsl [] {
        param: write f32 [p.len as usize], grad: read f32 [p.len as usize],
        velocity: write f32 [p.len as usize],
    } grid (elements(p.len as usize));

    /// PyTorch's Adam (or AdamW), in place on the parameter and its moments `m`, `v`.
    AdamStep adam_step(p: AdamParams) wgsl [] {
        param: write f32 [p.len as usize], grad: read f32 [p.len as usize],
        m: write f32 [p.len as usize], v: write f32 [p.len as usize],
    } grid (elements(p.len as usize));

    /// The max-norm constraint, in place: rows of `param` longer than `p.max_norm` (L2)
    /// are scaled onto it.
    MaxNormRows max_norm_rows(p: MaxNormParams) wgsl [] {
        param: write f32 [p.len()],
    } grid (elements(p.rows as usize));
}
