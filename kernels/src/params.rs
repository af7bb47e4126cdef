//! The params structs shared by the CPU kernels and the WGSL shaders.
//!
//! Each is `#[repr(C)]` and `bytemuck::Pod`: on the GPU the bytes are the shader's
//! uniform buffer as they are. Every struct is padded to a multiple of 16 bytes, as
//! WGSL's uniform address space wants, and the WGSL `struct` of the same name lists the
//! same fields in the same order.
//!
//! The constructors check what the fields can hold: a size, or the words an argument
//! spans, past `u32::MAX` is [`KernelError::TooLarge`], since the shaders index with
//! `u32`; a shape that makes no valid call is [`KernelError::BadParams`].

use crate::error::{KernelError, MAX_WORDS};
use bytemuck::{Pod, Zeroable};

/// `value` as the `u32` field `what` of `op`.
fn field(op: &'static str, what: &'static str, value: usize) -> Result<u32, KernelError> {
    u32::try_from(value).map_err(|_| KernelError::TooLarge {
        op,
        what,
        value: value as u128,
    })
}

/// Checks that an argument of `dims` (its words: their product) is one an index reaches.
fn spans(op: &'static str, what: &'static str, dims: &[u32]) -> Result<(), KernelError> {
    // NOTE: four u32 factors stay below 2^128.
    let value = dims.iter().map(|&d| d as u128).product::<u128>();
    match value > MAX_WORDS as u128 {
        true => Err(KernelError::TooLarge { op, what, value }),
        false => Ok(()),
    }
}

/// Params built by hand whose derived fields disagree with their sizes.
fn inconsistent(op: &'static str, p: &impl std::fmt::Debug) -> KernelError {
    let message = format!("{p:?}: the output sizes are not the ones the input sizes give");
    KernelError::BadParams { op, message }
}

/// The product of `dims` as a length; saturated, so that params built by hand with
/// fields too large give a span no argument holds (an error), never a wrapped one.
fn product(dims: &[u32]) -> usize {
    dims.iter()
        .fold(1usize, |n, &d| n.saturating_mul(d as usize))
}

/// `c (m, n) = op(a) (m, k) · op(b) (k, n)`, all row-major.
///
/// `op(a) = a` when `trans_a == 0` (`a` stored `(m, k)`), `aᵀ` when `trans_a == 1`
/// (`a` stored `(k, m)`); likewise `b` is stored `(k, n)` or, transposed, `(n, k)`.
/// With `accumulate == 1` the product is added to `c` instead of overwriting it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct MatmulParams {
    /// Rows of `c` and of `op(a)`.
    pub m: u32,
    /// Columns of `c` and of `op(b)`.
    pub n: u32,
    /// The inner dimension: columns of `op(a)`, rows of `op(b)`.
    pub k: u32,
    /// 1: `a` is stored `(k, m)` and read transposed; 0: stored `(m, k)`.
    pub trans_a: u32,
    /// 1: `b` is stored `(n, k)` and read transposed; 0: stored `(k, n)`.
    pub trans_b: u32,
    /// 1: add the product to `c`; 0: overwrite `c`.
    pub accumulate: u32,
    /// Zero; pads the struct to 32 bytes for the uniform buffer.
    pub _pad: [u32; 2],
}

impl MatmulParams {
    /// `c = a · b` with `a: (m, k)`, `b: (k, n)`.
    pub fn new(m: usize, n: usize, k: usize) -> Result<Self, KernelError> {
        const OP: &str = "MatmulParams";
        let p = Self {
            m: field(OP, "m", m)?,
            n: field(OP, "n", n)?,
            k: field(OP, "k", k)?,
            ..Self::default()
        };
        spans(OP, "m·k (a)", &[p.m, p.k])?;
        spans(OP, "k·n (b)", &[p.k, p.n])?;
        spans(OP, "m·n (c)", &[p.m, p.n])?;
        Ok(p)
    }
    /// Read `a` as stored `(k, m)`: `c = aᵀ · b`.
    pub fn trans_a(mut self) -> Self {
        self.trans_a = 1;
        self
    }
    /// Read `b` as stored `(n, k)`: `c = a · bᵀ`.
    pub fn trans_b(mut self) -> Self {
        self.trans_b = 1;
        self
    }
    /// `c += op(a) · op(b)`.
    pub fn accumulate(mut self) -> Self {
        self.accumulate = 1;
        self
    }
    /// Multiply-adds counted as two FLOPs each.
    pub fn flops(&self) -> u64 {
        2 * self.m as u64 * self.n as u64 * self.k as u64
    }
    /// The words `a` spans: `m · k`.
    pub fn a_len(&self) -> usize {
        product(&[self.m, self.k])
    }
    /// The words `b` spans: `k · n`.
    pub fn b_len(&self) -> usize {
        product(&[self.k, self.n])
    }
    /// The words `c` spans: `m · n`.
    pub fn c_len(&self) -> usize {
        product(&[self.m, self.n])
    }
}

/// A 2-D convolution (cross-correlation, as PyTorch's `conv2d`) with zero padding.
///
/// `x: (n, c_in, h, w)`, `weight: (c_out, c_in, kh, kw)`, `out: (n, c_out, h_out, w_out)`
/// with `h_out = (h + 2·pad - kh) / stride + 1` (and likewise `w_out`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct Conv2dParams {
    /// Batch size.
    pub n: u32,
    /// Input channels.
    pub c_in: u32,
    /// Input height, before padding.
    pub h: u32,
    /// Input width, before padding.
    pub w: u32,
    /// Output channels (filters).
    pub c_out: u32,
    /// Kernel height.
    pub kh: u32,
    /// Kernel width.
    pub kw: u32,
    /// Step of the kernel window, the same along both axes.
    pub stride: u32,
    /// Zeros added on every side of the input, the same along both axes.
    pub pad: u32,
    /// Output height: `(h + 2·pad - kh) / stride + 1`.
    pub h_out: u32,
    /// Output width: `(w + 2·pad - kw) / stride + 1`.
    pub w_out: u32,
    /// Zero; pads the struct to 48 bytes for the uniform buffer.
    pub _pad: u32,
}

impl Conv2dParams {
    /// Derives `h_out`, `w_out`; [`KernelError::BadParams`] when the kernel does not fit
    /// the padded input or any size or the stride is zero.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        n: usize,
        c_in: usize,
        h: usize,
        w: usize,
        c_out: usize,
        kh: usize,
        kw: usize,
        stride: usize,
        pad: usize,
    ) -> Result<Self, KernelError> {
        const OP: &str = "Conv2dParams";
        let sizes = [n, c_in, h, w, c_out, kh, kw, stride];
        if sizes.contains(&0) {
            let message = format!(
                "(n, c_in, h, w, c_out, kh, kw, stride) = {sizes:?}: every size and the stride must be >= 1"
            );
            return Err(KernelError::BadParams { op: OP, message });
        }
        let u = |what, v| field(OP, what, v);
        let (pad, h, w) = (u("pad", pad)?, u("h", h)?, u("w", w)?);
        let (hp, wp) = (h as u64 + 2 * pad as u64, w as u64 + 2 * pad as u64);
        let (kh, kw) = (u("kh", kh)?, u("kw", kw)?);
        if kh as u64 > hp || kw as u64 > wp {
            let message = format!("a {kh}×{kw} kernel does not fit the {hp}×{wp} padded input");
            return Err(KernelError::BadParams { op: OP, message });
        }
        let stride = u("stride", stride)?;
        let out = |padded: u64, k: u32| (padded - k as u64) / stride as u64 + 1;
        let p = Self {
            n: u("n", n)?,
            c_in: u("c_in", c_in)?,
            h,
            w,
            c_out: u("c_out", c_out)?,
            kh,
            kw,
            stride,
            pad,
            h_out: u("h_out", out(hp, kh) as usize)?,
            w_out: u("w_out", out(wp, kw) as usize)?,
            _pad: 0,
        };
        spans(OP, "n·c_in·h·w (x)", &[p.n, p.c_in, p.h, p.w])?;
        spans(
            OP,
            "c_out·c_in·kh·kw (weight)",
            &[p.c_out, p.c_in, p.kh, p.kw],
        )?;
        spans(
            OP,
            "n·c_out·h_out·w_out (out)",
            &[p.n, p.c_out, p.h_out, p.w_out],
        )?;
        Ok(p)
    }
    /// [`KernelError::BadParams`] unless the fields are what [`Conv2dParams::new`]
    /// derives from its sizes: the kernels index by the derived fields.
    pub fn check(&self) -> Result<(), KernelError> {
        let u = |v: u32| v as usize;
        let (n, c_in, h, w, c_out) = (u(self.n), u(self.c_in), u(self.h), u(self.w), u(self.c_out));
        let (kh, kw, stride, pad) = (u(self.kh), u(self.kw), u(self.stride), u(self.pad));
        match Self::new(n, c_in, h, w, c_out, kh, kw, stride, pad)? == *self {
            true => Ok(()),
            false => Err(inconsistent("Conv2dParams", self)),
        }
    }
    /// The values `x` spans: `n · c_in · h · w`.
    pub fn input_len(&self) -> usize {
        product(&[self.n, self.c_in, self.h, self.w])
    }
    /// The values `weight` spans: `c_out · c_in · kh · kw`.
    pub fn weight_len(&self) -> usize {
        product(&[self.c_out, self.c_in, self.kh, self.kw])
    }
    /// The values `out` spans: `n · c_out · h_out · w_out`.
    pub fn output_len(&self) -> usize {
        product(&[self.n, self.c_out, self.h_out, self.w_out])
    }
    /// Forward multiply-adds counted as two FLOPs each.
    pub fn flops(&self) -> u64 {
        2 * self.output_len() as u64 * product(&[self.c_in, self.kh, self.kw]) as u64
    }
    /// The 2×2, stride-2 max-pool over the output, as `conv2d_relu_pool_forward` runs
    /// it; an error when the output is under 2×2.
    pub fn pool(&self) -> Result<Pool2dParams, KernelError> {
        let u = |v: u32| v as usize;
        Pool2dParams::new(u(self.n), u(self.c_out), u(self.h_out), u(self.w_out), 2, 2)
    }
    /// The values the pooled output spans: `n · c_out · (h_out / 2) · (w_out / 2)`.
    pub fn pooled_len(&self) -> usize {
        product(&[self.n, self.c_out, self.h_out / 2, self.w_out / 2])
    }
}

/// Max pooling over `kernel × kernel` windows moved by `stride`, no padding, floor mode
/// (PyTorch's default): `x: (n, c, h, w)`, `out, argmax: (n, c, h_out, w_out)` with
/// `h_out = (h - kernel) / stride + 1`. `argmax` holds the index of the winner within its
/// `(h, w)` plane (`row * w + col`); ties go to the first in row-major order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct Pool2dParams {
    /// Batch size.
    pub n: u32,
    /// Channels.
    pub c: u32,
    /// Input height.
    pub h: u32,
    /// Input width.
    pub w: u32,
    /// Side of the square pooling window.
    pub kernel: u32,
    /// Step of the window, the same along both axes.
    pub stride: u32,
    /// Output height: `(h - kernel) / stride + 1`.
    pub h_out: u32,
    /// Output width: `(w - kernel) / stride + 1`.
    pub w_out: u32,
}

impl Pool2dParams {
    /// [`KernelError::BadParams`] when the window does not fit or any size or the
    /// stride is zero.
    pub fn new(
        n: usize,
        c: usize,
        h: usize,
        w: usize,
        kernel: usize,
        stride: usize,
    ) -> Result<Self, KernelError> {
        const OP: &str = "Pool2dParams";
        let sizes = [n, c, h, w, kernel, stride];
        if sizes.contains(&0) || kernel > h || kernel > w {
            let message = format!(
                "(n, c, h, w, kernel, stride) = {sizes:?}: every size must be >= 1 and the window fit the input"
            );
            return Err(KernelError::BadParams { op: OP, message });
        }
        let u = |what, v| field(OP, what, v);
        let p = Self {
            n: u("n", n)?,
            c: u("c", c)?,
            h: u("h", h)?,
            w: u("w", w)?,
            kernel: u("kernel", kernel)?,
            stride: u("stride", stride)?,
            h_out: u("h_out", (h - kernel) / stride + 1)?,
            w_out: u("w_out", (w - kernel) / stride + 1)?,
        };
        spans(OP, "n·c·h·w (x)", &[p.n, p.c, p.h, p.w])?;
        Ok(p)
    }
    /// [`KernelError::BadParams`] unless the fields are what [`Pool2dParams::new`]
    /// derives from its sizes: the kernels index by the derived fields.
    pub fn check(&self) -> Result<(), KernelError> {
        let u = |v: u32| v as usize;
        let (n, c, h, w) = (u(self.n), u(self.c), u(self.h), u(self.w));
        match Self::new(n, c, h, w, u(self.kernel), u(self.stride))? == *self {
            true => Ok(()),
            false => Err(inconsistent("Pool2dParams", self)),
        }
    }
    /// The values `x` spans: `n · c · h · w`.
    pub fn input_len(&self) -> usize {
        product(&[self.n, self.c, self.h, self.w])
    }
    /// The values `out` and `argmax` each span: `n · c · h_out · w_out`.
    pub fn output_len(&self) -> usize {
        product(&[self.n, self.c, self.h_out, self.w_out])
    }
}

/// Elementwise kernels over `len` values. `alpha` is the scalar of `scale` and `axpy`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
pub struct ElementwiseParams {
    /// Values in each argument.
    pub len: u32,
    /// The one scalar: `scale`'s and `axpy`'s factor, leaky ReLU's slope, `1 / rows` in
    /// `row_loss_backward`; unused by the other kernels.
    pub alpha: f32,
    /// Zero; pads the struct to 16 bytes for the uniform buffer.
    pub _pad: [u32; 2],
}

impl ElementwiseParams {
    /// `len` values, `alpha = 0`.
    pub fn new(len: usize) -> Result<Self, KernelError> {
        Self::with_alpha(len, 0.0)
    }
    /// `len` values with the scalar `alpha`.
    pub fn with_alpha(len: usize, alpha: f32) -> Result<Self, KernelError> {
        Ok(Self {
            len: field("ElementwiseParams", "len", len)?,
            alpha,
            _pad: [0; 2],
        })
    }
    /// The values each argument spans: `len`.
    pub fn elements(&self) -> usize {
        self.len as usize
    }
}

/// A per-channel bias over `x: (outer, channels, inner)`: `inner = h·w` for a conv
/// output `(n, c, h, w)`, `inner = 1` for a linear output `(n, features)`. Also the shape
/// of a sum over the middle axis: `out (outer, inner) = Σ_channels x`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct AxisParams {
    /// Size of the leading axis (the batch).
    pub outer: u32,
    /// Size of the middle axis: one bias value per channel.
    pub channels: u32,
    /// Size of the trailing axis: `h·w` for a conv output, 1 for a linear one.
    pub inner: u32,
    /// Zero; pads the struct to 16 bytes for the uniform buffer.
    pub _pad: u32,
}

impl AxisParams {
    /// `x: (outer, channels, inner)`.
    pub fn new(outer: usize, channels: usize, inner: usize) -> Result<Self, KernelError> {
        const OP: &str = "AxisParams";
        let p = Self {
            outer: field(OP, "outer", outer)?,
            channels: field(OP, "channels", channels)?,
            inner: field(OP, "inner", inner)?,
            _pad: 0,
        };
        spans(
            OP,
            "outer·channels·inner (x)",
            &[p.outer, p.channels, p.inner],
        )?;
        Ok(p)
    }
    /// The values `x` spans: `outer · channels · inner`.
    pub fn len(&self) -> usize {
        product(&[self.outer, self.channels, self.inner])
    }
    /// Whether `x` spans no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Row-wise kernels over logits `(rows, cols)`: log-softmax, cross-entropy, softmax-KL
/// and the fused distillation losses. `temperature`, `alpha` and `beta` are used by the
/// distillation kernels only.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
pub struct RowParams {
    /// Rows of the logits, one per example.
    pub rows: u32,
    /// Columns of the logits, one per class.
    pub cols: u32,
    /// Softening temperature `T > 0` of the softmax-KL and distillation kernels.
    pub temperature: f32,
    /// Weight `α` of the KL term in `(1 - α)·ce + α·kl`; in decoupled KD, the weight of
    /// the target-class term in `ce + α·tckd + β·nckd`.
    pub alpha: f32,
    /// Weight `β` of decoupled KD's non-target term.
    pub beta: f32,
    /// Zero; pads the struct to 32 bytes for the uniform buffer.
    pub _pad: [u32; 3],
}

impl RowParams {
    /// Logits `(rows, cols)` with `temperature = 1` and `alpha = 0`.
    pub fn new(rows: usize, cols: usize) -> Result<Self, KernelError> {
        const OP: &str = "RowParams";
        let p = Self {
            rows: field(OP, "rows", rows)?,
            cols: field(OP, "cols", cols)?,
            temperature: 1.0,
            alpha: 0.0,
            beta: 0.0,
            _pad: [0; 3],
        };
        spans(OP, "rows·cols (logits)", &[p.rows, p.cols])?;
        Ok(p)
    }
    /// Sets the softening temperature `T`.
    pub fn with_temperature(mut self, temperature: f32) -> Self {
        self.temperature = temperature;
        self
    }
    /// Sets the weight `α` of the KL term.
    pub fn with_alpha(mut self, alpha: f32) -> Self {
        self.alpha = alpha;
        self
    }
    /// Sets the weight `β` of decoupled KD's non-target term.
    pub fn with_beta(mut self, beta: f32) -> Self {
        self.beta = beta;
        self
    }
    /// The values of the logits: `rows · cols`.
    pub fn elements(&self) -> usize {
        product(&[self.rows, self.cols])
    }
}

/// `out (rows, cols) = x[index]`: each output row is the row of `x (src_rows, cols)` that
/// `index (rows)` names (a batch's teacher logits from the cache of the training set's).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct GatherParams {
    /// Rows gathered: the length of `index` and the rows of `out`.
    pub rows: u32,
    /// Values per row of `x` and `out`.
    pub cols: u32,
    /// Rows of `x`; every index must be below it.
    pub src_rows: u32,
    /// Zero; pads the struct to 16 bytes for the uniform buffer.
    pub _pad: u32,
}

impl GatherParams {
    /// `rows` rows of `cols` values gathered from `src_rows` rows.
    pub fn new(rows: usize, cols: usize, src_rows: usize) -> Result<Self, KernelError> {
        const OP: &str = "GatherParams";
        let p = Self {
            rows: field(OP, "rows", rows)?,
            cols: field(OP, "cols", cols)?,
            src_rows: field(OP, "src_rows", src_rows)?,
            _pad: 0,
        };
        spans(OP, "rows·cols (out)", &[p.rows, p.cols])?;
        spans(OP, "src_rows·cols (x)", &[p.src_rows, p.cols])?;
        Ok(p)
    }
}

/// Inverted dropout with a counter-based hash generator, so that the CPU and the GPU
/// draw the same mask for the same `seed`: element `i` is kept when
/// `hash(seed, i) >= p_drop · 2³²` and then scaled by `scale = 1 / (1 - p_drop)`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
pub struct DropoutParams {
    /// Values in each of `x`, `out` and `mask`.
    pub len: u32,
    /// Seed of the hash: the same seed draws the same mask on the CPU and the GPU.
    pub seed: u32,
    /// `p_drop · 2³²`, rounded: elements whose hash is below it are dropped.
    pub threshold: u32,
    /// Factor applied to kept elements: `1 / (1 - p_drop)`, or 0 when `p_drop >= 1`.
    pub scale: f32,
}

impl DropoutParams {
    /// Drops each of `len` elements with probability `p_drop`, clamped to `[0, 1]`.
    pub fn new(len: usize, p_drop: f32, seed: u32) -> Result<Self, KernelError> {
        let p = p_drop.clamp(0.0, 1.0) as f64;
        let threshold = (p * 4_294_967_296.0).min(u32::MAX as f64) as u32;
        let scale = if p >= 1.0 {
            0.0
        } else {
            (1.0 / (1.0 - p)) as f32
        };
        Ok(Self {
            len: field("DropoutParams", "len", len)?,
            seed,
            threshold,
            scale,
        })
    }
}

/// SGD with momentum and (coupled, L2) weight decay, as PyTorch's `SGD`:
/// `g += wd·p; v = momentum·v + g; p -= lr·v` (plain `p -= lr·g` when `momentum == 0`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
pub struct SgdParams {
    /// Values in the parameter and in each of its state arrays.
    pub len: u32,
    /// Learning rate.
    pub lr: f32,
    /// Momentum factor; 0 disables the velocity.
    pub momentum: f32,
    /// L2 penalty added to the gradient as `wd·p`; 0 disables it.
    pub weight_decay: f32,
}

impl SgdParams {
    /// A parameter of `len` values.
    pub fn new(len: usize, lr: f32, momentum: f32, weight_decay: f32) -> Result<Self, KernelError> {
        Ok(Self {
            len: field("SgdParams", "len", len)?,
            lr,
            momentum,
            weight_decay,
        })
    }
}

/// A max-norm constraint (Hinton et al. 2012; Srivastava et al. 2014) on a weight of
/// `rows` units, `cols` incoming weights each (`(out, in)`, or `(out, in, kh, kw)` with
/// `cols = in·kh·kw`): a row whose L2 norm exceeds `max_norm` is scaled down onto it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
pub struct MaxNormParams {
    /// Rows: units, each constrained on its own.
    pub rows: u32,
    /// Values per row.
    pub cols: u32,
    /// The largest L2 norm a row may keep, `> 0`.
    pub max_norm: f32,
    /// Zero; pads the struct to 16 bytes for the uniform buffer.
    pub _pad: u32,
}

impl MaxNormParams {
    /// A weight of `rows` rows of `cols` values, each held to norm `max_norm`.
    pub fn new(rows: usize, cols: usize, max_norm: f32) -> Result<Self, KernelError> {
        const OP: &str = "MaxNormParams";
        let p = Self {
            rows: field(OP, "rows", rows)?,
            cols: field(OP, "cols", cols)?,
            max_norm,
            _pad: 0,
        };
        spans(OP, "rows·cols (weight)", &[p.rows, p.cols])?;
        Ok(p)
    }
    /// The weight's values: `rows · cols`.
    pub fn len(&self) -> usize {
        product(&[self.rows, self.cols])
    }
    /// Whether the weight has no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Adam with bias correction, as PyTorch's `Adam` (`decoupled == 0`, L2 decay added to
/// the gradient) or `AdamW` (`decoupled == 1`: `p -= lr·wd·p` before the update).
/// `bias_correction1 = 1 - beta1^t`, `bias_correction2 = 1 - beta2^t` for step `t >= 1`
/// are computed on the host so that no shader needs `pow`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
pub struct AdamParams {
    /// Values in the parameter and in each of its state arrays.
    pub len: u32,
    /// Learning rate.
    pub lr: f32,
    /// Decay rate of the first-moment (mean) estimate `m`.
    pub beta1: f32,
    /// Decay rate of the second-moment (uncentred variance) estimate `v`.
    pub beta2: f32,
    /// Added to the bias-corrected `√v` in the denominator, so that it is never zero.
    pub eps: f32,
    /// Weight decay: L2 on the gradient, or decoupled when `decoupled == 1`.
    pub weight_decay: f32,
    /// `1 - beta1^t` for the current step `t`.
    pub bias_correction1: f32,
    /// `1 - beta2^t` for the current step `t`.
    pub bias_correction2: f32,
    /// 1: AdamW's decoupled decay; 0: Adam's L2 decay.
    pub decoupled: u32,
    /// Zero; pads the struct to 48 bytes for the uniform buffer.
    pub _pad: [u32; 3],
}

impl AdamParams {
    /// The params of step `t` (counted from 1).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        len: usize,
        lr: f32,
        beta1: f32,
        beta2: f32,
        eps: f32,
        weight_decay: f32,
        decoupled: bool,
        t: u64,
    ) -> Result<Self, KernelError> {
        // NOTE: powi takes an i32; past i32::MAX steps both corrections are 1 anyway.
        let t = t.clamp(1, i32::MAX as u64) as i32;
        Ok(Self {
            len: field("AdamParams", "len", len)?,
            lr,
            beta1,
            beta2,
            eps,
            weight_decay,
            bias_correction1: 1.0 - beta1.powi(t),
            bias_correction2: 1.0 - beta2.powi(t),
            decoupled: decoupled as u32,
            _pad: [0; 3],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_params_struct_is_a_multiple_of_16_bytes() {
        for size in [
            size_of::<MatmulParams>(),
            size_of::<Conv2dParams>(),
            size_of::<Pool2dParams>(),
            size_of::<ElementwiseParams>(),
            size_of::<AxisParams>(),
            size_of::<RowParams>(),
            size_of::<GatherParams>(),
            size_of::<DropoutParams>(),
            size_of::<SgdParams>(),
            size_of::<AdamParams>(),
        ] {
            assert_eq!(size % 16, 0, "size {size}");
        }
    }

    #[test]
    fn conv2d_params_derive_output_size() {
        // 28x28, 3x3, stride 1, no padding: 28 - 3 + 1 = 26.
        let p = Conv2dParams::new(2, 1, 28, 28, 32, 3, 3, 1, 0).unwrap();
        assert_eq!((p.h_out, p.w_out), (26, 26));
        // 5x5 padded by 1 to 7x7, 3x3 at stride 2: (7 - 3) / 2 + 1 = 3.
        let p = Conv2dParams::new(1, 1, 5, 5, 1, 3, 3, 2, 1).unwrap();
        assert_eq!((p.h_out, p.w_out), (3, 3));
        let err = Conv2dParams::new(1, 1, 2, 2, 1, 3, 3, 1, 0).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Conv2dParams: a 3×3 kernel does not fit the 2×2 padded input"
        );
        assert!(matches!(
            Conv2dParams::new(1, 1, 2, 2, 1, 1, 1, 0, 0),
            Err(KernelError::BadParams { .. })
        ));
        // A padding past u32::MAX, and an output of 2^33 values.
        assert!(matches!(
            Conv2dParams::new(1, 1, 2, 2, 1, 1, 1, 1, 1 << 32),
            Err(KernelError::TooLarge { what: "pad", .. })
        ));
        assert!(matches!(
            Conv2dParams::new(2, 1, 1 << 16, 1 << 16, 1, 1, 1, 1, 0),
            Err(KernelError::TooLarge { what: "n·c_in·h·w (x)", value, .. }) if value == 1 << 33
        ));
    }

    #[test]
    fn pool2d_params_floor_odd_sizes() {
        // 13x13 pooled 2x2 at stride 2 floors to 6x6, as PyTorch.
        let p = Pool2dParams::new(1, 1, 13, 13, 2, 2).unwrap();
        assert_eq!((p.h_out, p.w_out), (6, 6));
        assert!(matches!(
            Pool2dParams::new(1, 1, 1, 1, 2, 2),
            Err(KernelError::BadParams { .. })
        ));
    }

    #[test]
    fn dropout_threshold_and_scale() {
        let p = DropoutParams::new(10, 0.5, 7).unwrap();
        assert_eq!(p.threshold, 1 << 31);
        assert_eq!(p.scale, 2.0);
        assert_eq!(DropoutParams::new(1, 0.0, 0).unwrap().threshold, 0);
    }

    #[test]
    fn sizes_past_u32_are_errors_not_wrapped_fields() {
        // 2^32 would wrap to 0 as a u32 field; 65536 × 65537 wraps the span to 65536.
        let big = 1usize << 32;
        let err = MatmulParams::new(big, 1, 1).unwrap_err();
        assert_eq!(
            err.to_string(),
            "MatmulParams: m = 4294967296 is past 4294967295, the most a 32-bit index reaches"
        );
        assert!(matches!(
            MatmulParams::new(1 << 16, 1 << 16 | 1, 1),
            Err(KernelError::TooLarge {
                what: "m·n (c)",
                ..
            })
        ));
        assert!(ElementwiseParams::new(big).is_err());
        assert!(AxisParams::new(1 << 11, 1 << 11, 1 << 11).is_err());
        assert!(RowParams::new(1 << 20, 1 << 12).is_err());
        assert!(GatherParams::new(1, 1 << 12, 1 << 20).is_err());
        assert!(DropoutParams::new(big, 0.5, 0).is_err());
        assert!(SgdParams::new(big, 0.1, 0.0, 0.0).is_err());
        assert!(MaxNormParams::new(1 << 16, 1 << 16, 1.0).is_err());
        assert!(AdamParams::new(big, 0.1, 0.9, 0.999, 1e-8, 0.0, false, 1).is_err());
        // The largest that fits is accepted.
        assert!(ElementwiseParams::new(u32::MAX as usize).is_ok());
    }

    #[test]
    fn lengths_of_hand_built_params_saturate_instead_of_wrapping() {
        let p = Conv2dParams {
            n: u32::MAX,
            c_in: u32::MAX,
            h: u32::MAX,
            w: u32::MAX,
            ..Conv2dParams::default()
        };
        assert_eq!(p.input_len(), usize::MAX);
    }
}
