//! One function per kernel: allocate the outputs on the operands' device, then run the
//! CPU kernel or record the GPU launch (which returns at once: only a read waits). The
//! ops above validate shapes and devices first, so a kernel here never sees a length
//! that does not match its params, nor operands on two devices.
//!
//! Each CPU kernel call runs under a [`profile::cpu`] guard and each GPU launch first
//! shows its context to [`profile::gpu`]: with `--profile` off, one atomic load each.

use crate::error::{Error, Result};
use crate::profile;
use crate::storage::{gpu_error, IndexStorage, Storage};
use kernels::gpu::KernelId;
use kernels::params::*;
use kernels::{cpu, gpu};

fn mixed(op: &'static str) -> Error {
    Error::DeviceMismatch {
        op,
        lhs: "cpu".into(),
        rhs: "gpu".into(),
    }
}

pub(crate) fn matmul(a: &Storage, b: &Storage, p: &MatmulParams) -> Result<Storage> {
    let len = (p.m * p.n) as usize;
    match (a, b) {
        (Storage::Cpu(a), Storage::Cpu(b)) => {
            let mut c = vec![0.0; len];
            let _k = profile::cpu(KernelId::Matmul);
            cpu::matmul(a, b, &mut c, p);
            Ok(Storage::Cpu(c))
        }
        (Storage::Gpu(a), Storage::Gpu(b)) => {
            let c = a.context().zeros(len);
            profile::gpu(a.context());
            gpu::matmul(a.context(), a, b, &c, p).map_err(gpu_error)?;
            Ok(Storage::Gpu(c))
        }
        _ => Err(mixed("matmul")),
    }
}

pub(crate) fn conv2d_forward(x: &Storage, w: &Storage, p: &Conv2dParams) -> Result<Storage> {
    match (x, w) {
        (Storage::Cpu(x), Storage::Cpu(w)) => {
            let mut out = vec![0.0; p.output_len()];
            let _k = profile::cpu(KernelId::Conv2dForward);
            cpu::conv2d_forward(x, w, &mut out, p);
            Ok(Storage::Cpu(out))
        }
        (Storage::Gpu(x), Storage::Gpu(w)) => {
            let out = x.context().zeros(p.output_len());
            profile::gpu(x.context());
            gpu::conv2d_forward(x.context(), x, w, &out, p).map_err(gpu_error)?;
            Ok(Storage::Gpu(out))
        }
        _ => Err(mixed("conv2d")),
    }
}

pub(crate) fn conv2d_backward_input(g: &Storage, w: &Storage, p: &Conv2dParams) -> Result<Storage> {
    match (g, w) {
        (Storage::Cpu(g), Storage::Cpu(w)) => {
            let mut gx = vec![0.0; p.input_len()];
            let _k = profile::cpu(KernelId::Conv2dBackwardInput);
            cpu::conv2d_backward_input(g, w, &mut gx, p);
            Ok(Storage::Cpu(gx))
        }
        (Storage::Gpu(g), Storage::Gpu(w)) => {
            let gx = g.context().zeros(p.input_len());
            profile::gpu(g.context());
            gpu::conv2d_backward_input(g.context(), g, w, &gx, p).map_err(gpu_error)?;
            Ok(Storage::Gpu(gx))
        }
        _ => Err(mixed("conv2d_backward_input")),
    }
}

pub(crate) fn conv2d_backward_weight(
    x: &Storage,
    g: &Storage,
    p: &Conv2dParams,
) -> Result<Storage> {
    match (x, g) {
        (Storage::Cpu(x), Storage::Cpu(g)) => {
            let mut gw = vec![0.0; p.weight_len()];
            let _k = profile::cpu(KernelId::Conv2dBackwardWeight);
            cpu::conv2d_backward_weight(x, g, &mut gw, p);
            Ok(Storage::Cpu(gw))
        }
        (Storage::Gpu(x), Storage::Gpu(g)) => {
            let gw = x.context().zeros(p.weight_len());
            profile::gpu(x.context());
            gpu::conv2d_backward_weight(x.context(), x, g, &gw, p).map_err(gpu_error)?;
            Ok(Storage::Gpu(gw))
        }
        _ => Err(mixed("conv2d_backward_weight")),
    }
}

pub(crate) fn bias_forward(x: &Storage, bias: &Storage, p: &AxisParams) -> Result<Storage> {
    match (x, bias) {
        (Storage::Cpu(x), Storage::Cpu(bias)) => {
            let mut out = vec![0.0; p.len()];
            let _k = profile::cpu(KernelId::BiasForward);
            cpu::bias_forward(x, bias, &mut out, p);
            Ok(Storage::Cpu(out))
        }
        (Storage::Gpu(x), Storage::Gpu(bias)) => {
            let out = x.context().zeros(p.len());
            profile::gpu(x.context());
            gpu::bias_forward(x.context(), x, bias, &out, p).map_err(gpu_error)?;
            Ok(Storage::Gpu(out))
        }
        _ => Err(mixed("bias_add")),
    }
}

pub(crate) fn bias_backward(g: &Storage, p: &AxisParams) -> Result<Storage> {
    let len = p.channels as usize;
    match g {
        Storage::Cpu(g) => {
            let mut gb = vec![0.0; len];
            let _k = profile::cpu(KernelId::BiasBackward);
            cpu::bias_backward(g, &mut gb, p);
            Ok(Storage::Cpu(gb))
        }
        Storage::Gpu(g) => {
            let gb = g.context().zeros(len);
            profile::gpu(g.context());
            gpu::bias_backward(g.context(), g, &gb, p).map_err(gpu_error)?;
            Ok(Storage::Gpu(gb))
        }
    }
}

pub(crate) fn max_pool2d_forward(x: &Storage, p: &Pool2dParams) -> Result<(Storage, IndexStorage)> {
    let len = p.output_len();
    match x {
        Storage::Cpu(x) => {
            let (mut out, mut argmax) = (vec![0.0; len], vec![0; len]);
            let _k = profile::cpu(KernelId::MaxPool2dForward);
            cpu::max_pool2d_forward(x, &mut out, &mut argmax, p);
            Ok((Storage::Cpu(out), IndexStorage::Cpu(argmax)))
        }
        Storage::Gpu(x) => {
            let (out, argmax) = (x.context().zeros(len), x.context().zeros(len));
            profile::gpu(x.context());
            gpu::max_pool2d_forward(x.context(), x, &out, &argmax, p).map_err(gpu_error)?;
            Ok((Storage::Gpu(out), IndexStorage::Gpu(argmax)))
        }
    }
}

pub(crate) fn max_pool2d_backward(
    g: &Storage,
    argmax: &IndexStorage,
    p: &Pool2dParams,
) -> Result<Storage> {
    match (g, argmax) {
        (Storage::Cpu(g), IndexStorage::Cpu(argmax)) => {
            let mut gx = vec![0.0; p.input_len()];
            let _k = profile::cpu(KernelId::MaxPool2dBackward);
            cpu::max_pool2d_backward(g, argmax, &mut gx, p);
            Ok(Storage::Cpu(gx))
        }
        (Storage::Gpu(g), IndexStorage::Gpu(argmax)) => {
            let gx = g.context().zeros(p.input_len());
            profile::gpu(g.context());
            gpu::max_pool2d_backward(g.context(), g, argmax, &gx, p).map_err(gpu_error)?;
            Ok(Storage::Gpu(gx))
        }
        _ => Err(mixed("max_pool2d")),
    }
}

pub(crate) fn relu_forward(x: &Storage, p: &ElementwiseParams) -> Result<Storage> {
    match x {
        Storage::Cpu(x) => {
            let mut out = vec![0.0; x.len()];
            let _k = profile::cpu(KernelId::ReluForward);
            cpu::relu_forward(x, &mut out, p);
            Ok(Storage::Cpu(out))
        }
        Storage::Gpu(x) => {
            let out = x.context().zeros(x.len());
            profile::gpu(x.context());
            gpu::relu_forward(x.context(), x, &out, p).map_err(gpu_error)?;
            Ok(Storage::Gpu(out))
        }
    }
}

pub(crate) fn relu_backward(x: &Storage, g: &Storage, p: &ElementwiseParams) -> Result<Storage> {
    match (x, g) {
        (Storage::Cpu(x), Storage::Cpu(g)) => {
            let mut gx = vec![0.0; x.len()];
            let _k = profile::cpu(KernelId::ReluBackward);
            cpu::relu_backward(x, g, &mut gx, p);
            Ok(Storage::Cpu(gx))
        }
        (Storage::Gpu(x), Storage::Gpu(g)) => {
            let gx = x.context().zeros(x.len());
            profile::gpu(x.context());
            gpu::relu_backward(x.context(), x, g, &gx, p).map_err(gpu_error)?;
            Ok(Storage::Gpu(gx))
        }
        _ => Err(mixed("relu")),
    }
}

/// Returns the output and the mask (0 or `1 / (1 - p_drop)` per element).
pub(crate) fn dropout_forward(x: &Storage, p: &DropoutParams) -> Result<(Storage, Storage)> {
    match x {
        Storage::Cpu(x) => {
            let (mut out, mut mask) = (vec![0.0; x.len()], vec![0.0; x.len()]);
            let _k = profile::cpu(KernelId::DropoutForward);
            cpu::dropout_forward(x, &mut out, &mut mask, p);
            Ok((Storage::Cpu(out), Storage::Cpu(mask)))
        }
        Storage::Gpu(x) => {
            let (out, mask) = (x.context().zeros(x.len()), x.context().zeros(x.len()));
            profile::gpu(x.context());
            gpu::dropout_forward(x.context(), x, &out, &mask, p).map_err(gpu_error)?;
            Ok((Storage::Gpu(out), Storage::Gpu(mask)))
        }
    }
}

pub(crate) fn dropout_backward(g: &Storage, mask: &Storage, p: &DropoutParams) -> Result<Storage> {
    match (g, mask) {
        (Storage::Cpu(g), Storage::Cpu(mask)) => {
            let mut gx = vec![0.0; g.len()];
            let _k = profile::cpu(KernelId::DropoutBackward);
            cpu::dropout_backward(g, mask, &mut gx, p);
            Ok(Storage::Cpu(gx))
        }
        (Storage::Gpu(g), Storage::Gpu(mask)) => {
            let gx = g.context().zeros(g.len());
            profile::gpu(g.context());
            gpu::dropout_backward(g.context(), g, mask, &gx, p).map_err(gpu_error)?;
            Ok(Storage::Gpu(gx))
        }
        _ => Err(mixed("dropout")),
    }
}

pub(crate) fn add(a: &Storage, b: &Storage) -> Result<Storage> {
    let p = ElementwiseParams::new(a.len());
    match (a, b) {
        (Storage::Cpu(a), Storage::Cpu(b)) => {
            let mut out = vec![0.0; a.len()];
            let _k = profile::cpu(KernelId::Add);
            cpu::add(a, b, &mut out, &p);
            Ok(Storage::Cpu(out))
        }
        (Storage::Gpu(a), Storage::Gpu(b)) => {
            let out = a.context().zeros(a.len());
            profile::gpu(a.context());
            gpu::add(a.context(), a, b, &out, &p).map_err(gpu_error)?;
            Ok(Storage::Gpu(out))
        }
        _ => Err(mixed("add")),
    }
}

pub(crate) fn mul(a: &Storage, b: &Storage) -> Result<Storage> {
    let p = ElementwiseParams::new(a.len());
    match (a, b) {
        (Storage::Cpu(a), Storage::Cpu(b)) => {
            let mut out = vec![0.0; a.len()];
            let _k = profile::cpu(KernelId::Mul);
            cpu::mul(a, b, &mut out, &p);
            Ok(Storage::Cpu(out))
        }
        (Storage::Gpu(a), Storage::Gpu(b)) => {
            let out = a.context().zeros(a.len());
            profile::gpu(a.context());
            gpu::mul(a.context(), a, b, &out, &p).map_err(gpu_error)?;
            Ok(Storage::Gpu(out))
        }
        _ => Err(mixed("mul")),
    }
}

pub(crate) fn scale(x: &Storage, alpha: f32) -> Result<Storage> {
    let p = ElementwiseParams::with_alpha(x.len(), alpha);
    match x {
        Storage::Cpu(x) => {
            let mut out = vec![0.0; x.len()];
            let _k = profile::cpu(KernelId::Scale);
            cpu::scale(x, &mut out, &p);
            Ok(Storage::Cpu(out))
        }
        Storage::Gpu(x) => {
            let out = x.context().zeros(x.len());
            profile::gpu(x.context());
            gpu::scale(x.context(), x, &out, &p).map_err(gpu_error)?;
            Ok(Storage::Gpu(out))
        }
    }
}

/// `y += alpha · x`, in place: how gradients accumulate.
pub(crate) fn axpy(x: &Storage, y: &mut Storage, alpha: f32) -> Result<()> {
    let p = ElementwiseParams::with_alpha(x.len(), alpha);
    match (x, y) {
        (Storage::Cpu(x), Storage::Cpu(y)) => {
            let _k = profile::cpu(KernelId::Axpy);
            cpu::axpy(x, y, &p);
            Ok(())
        }
        (Storage::Gpu(x), Storage::Gpu(y)) => {
            profile::gpu(x.context());
            gpu::axpy(x.context(), x, y, &p).map_err(gpu_error)
        }
        _ => Err(mixed("axpy")),
    }
}

pub(crate) fn sum_axis(x: &Storage, p: &AxisParams) -> Result<Storage> {
    let len = (p.outer * p.inner) as usize;
    match x {
        Storage::Cpu(x) => {
            let mut out = vec![0.0; len];
            let _k = profile::cpu(KernelId::SumAxis);
            cpu::sum_axis(x, &mut out, p);
            Ok(Storage::Cpu(out))
        }
        Storage::Gpu(x) => {
            let out = x.context().zeros(len);
            profile::gpu(x.context());
            gpu::sum_axis(x.context(), x, &out, p).map_err(gpu_error)?;
            Ok(Storage::Gpu(out))
        }
    }
}

pub(crate) fn sum_axis_backward(g: &Storage, p: &AxisParams) -> Result<Storage> {
    match g {
        Storage::Cpu(g) => {
            let mut gx = vec![0.0; p.len()];
            let _k = profile::cpu(KernelId::SumAxisBackward);
            cpu::sum_axis_backward(g, &mut gx, p);
            Ok(Storage::Cpu(gx))
        }
        Storage::Gpu(g) => {
            let gx = g.context().zeros(p.len());
            profile::gpu(g.context());
            gpu::sum_axis_backward(g.context(), g, &gx, p).map_err(gpu_error)?;
            Ok(Storage::Gpu(gx))
        }
    }
}

pub(crate) fn log_softmax_forward(x: &Storage, p: &RowParams) -> Result<Storage> {
    match x {
        Storage::Cpu(x) => {
            let mut out = vec![0.0; x.len()];
            let _k = profile::cpu(KernelId::LogSoftmaxForward);
            cpu::log_softmax_forward(x, &mut out, p);
            Ok(Storage::Cpu(out))
        }
        Storage::Gpu(x) => {
            let out = x.context().zeros(x.len());
            profile::gpu(x.context());
            gpu::log_softmax_forward(x.context(), x, &out, p).map_err(gpu_error)?;
            Ok(Storage::Gpu(out))
        }
    }
}

pub(crate) fn log_softmax_backward(out: &Storage, g: &Storage, p: &RowParams) -> Result<Storage> {
    match (out, g) {
        (Storage::Cpu(out), Storage::Cpu(g)) => {
            let mut gx = vec![0.0; out.len()];
            let _k = profile::cpu(KernelId::LogSoftmaxBackward);
            cpu::log_softmax_backward(out, g, &mut gx, p);
            Ok(Storage::Cpu(gx))
        }
        (Storage::Gpu(out), Storage::Gpu(g)) => {
            let gx = out.context().zeros(out.len());
            profile::gpu(out.context());
            gpu::log_softmax_backward(out.context(), out, g, &gx, p).map_err(gpu_error)?;
            Ok(Storage::Gpu(gx))
        }
        _ => Err(mixed("log_softmax")),
    }
}

/// Returns the per-row losses `(rows)` and per-row gradients `(rows, cols)`.
pub(crate) fn cross_entropy_forward(
    logits: &Storage,
    labels: &IndexStorage,
    p: &RowParams,
) -> Result<(Storage, Storage)> {
    let rows = p.rows as usize;
    match (logits, labels) {
        (Storage::Cpu(logits), IndexStorage::Cpu(labels)) => {
            let (mut loss, mut grad) = (vec![0.0; rows], vec![0.0; logits.len()]);
            let _k = profile::cpu(KernelId::CrossEntropyForward);
            cpu::cross_entropy_forward(logits, labels, &mut loss, &mut grad, p);
            Ok((Storage::Cpu(loss), Storage::Cpu(grad)))
        }
        (Storage::Gpu(logits), IndexStorage::Gpu(labels)) => {
            let ctx = logits.context();
            let (loss, grad) = (ctx.zeros(rows), ctx.zeros(logits.len()));
            profile::gpu(ctx);
            gpu::cross_entropy_forward(ctx, logits, labels, &loss, &grad, p).map_err(gpu_error)?;
            Ok((Storage::Gpu(loss), Storage::Gpu(grad)))
        }
        _ => Err(mixed("cross_entropy")),
    }
}

/// Returns the per-row `T²·KL` `(rows)` and per-row gradients `(rows, cols)`.
pub(crate) fn softmax_kl_forward(
    s: &Storage,
    t: &Storage,
    p: &RowParams,
) -> Result<(Storage, Storage)> {
    let rows = p.rows as usize;
    match (s, t) {
        (Storage::Cpu(s), Storage::Cpu(t)) => {
            let (mut loss, mut grad) = (vec![0.0; rows], vec![0.0; s.len()]);
            let _k = profile::cpu(KernelId::SoftmaxKlForward);
            cpu::softmax_kl_forward(s, t, &mut loss, &mut grad, p);
            Ok((Storage::Cpu(loss), Storage::Cpu(grad)))
        }
        (Storage::Gpu(s), Storage::Gpu(t)) => {
            let (loss, grad) = (s.context().zeros(rows), s.context().zeros(s.len()));
            profile::gpu(s.context());
            gpu::softmax_kl_forward(s.context(), s, t, &loss, &grad, p).map_err(gpu_error)?;
            Ok((Storage::Gpu(loss), Storage::Gpu(grad)))
        }
        _ => Err(mixed("softmax_kl")),
    }
}

/// Returns the per-row `[CE, T²·KL]` pairs `(rows, 2)` and the gradients `(rows, cols)`.
pub(crate) fn kd_loss_forward(
    s: &Storage,
    t: &Storage,
    labels: &IndexStorage,
    p: &RowParams,
) -> Result<(Storage, Storage)> {
    let rows = p.rows as usize;
    match (s, t, labels) {
        (Storage::Cpu(s), Storage::Cpu(t), IndexStorage::Cpu(labels)) => {
            let (mut loss, mut grad) = (vec![0.0; 2 * rows], vec![0.0; s.len()]);
            let _k = profile::cpu(KernelId::KdLossForward);
            cpu::kd_loss_forward(s, t, labels, &mut loss, &mut grad, p);
            Ok((Storage::Cpu(loss), Storage::Cpu(grad)))
        }
        (Storage::Gpu(s), Storage::Gpu(t), IndexStorage::Gpu(labels)) => {
            let (loss, grad) = (s.context().zeros(2 * rows), s.context().zeros(s.len()));
            profile::gpu(s.context());
            gpu::kd_loss_forward(s.context(), s, t, labels, &loss, &grad, p).map_err(gpu_error)?;
            Ok((Storage::Gpu(loss), Storage::Gpu(grad)))
        }
        _ => Err(mixed("kd_loss")),
    }
}

pub(crate) fn argmax_rows(x: &Storage, p: &RowParams) -> Result<IndexStorage> {
    let rows = p.rows as usize;
    match x {
        Storage::Cpu(x) => {
            let mut out = vec![0; rows];
            let _k = profile::cpu(KernelId::ArgmaxRows);
            cpu::argmax_rows(x, &mut out, p);
            Ok(IndexStorage::Cpu(out))
        }
        Storage::Gpu(x) => {
            let out = x.context().zeros(rows);
            profile::gpu(x.context());
            gpu::argmax_rows(x.context(), x, &out, p).map_err(gpu_error)?;
            Ok(IndexStorage::Gpu(out))
        }
    }
}

pub(crate) fn sgd_step(
    param: &mut Storage,
    grad: &Storage,
    velocity: &mut Storage,
    p: &SgdParams,
) -> Result<()> {
    match (param, grad, velocity) {
        (Storage::Cpu(param), Storage::Cpu(grad), Storage::Cpu(velocity)) => {
            let _k = profile::cpu(KernelId::SgdStep);
            cpu::sgd_step(param, grad, velocity, p);
            Ok(())
        }
        (Storage::Gpu(param), Storage::Gpu(grad), Storage::Gpu(velocity)) => {
            profile::gpu(param.context());
            gpu::sgd_step(param.context(), param, grad, velocity, p).map_err(gpu_error)
        }
        _ => Err(mixed("sgd_step")),
    }
}

pub(crate) fn adam_step(
    param: &mut Storage,
    grad: &Storage,
    m: &mut Storage,
    v: &mut Storage,
    p: &AdamParams,
) -> Result<()> {
    match (param, grad, m, v) {
        (Storage::Cpu(param), Storage::Cpu(grad), Storage::Cpu(m), Storage::Cpu(v)) => {
            let _k = profile::cpu(KernelId::AdamStep);
            cpu::adam_step(param, grad, m, v, p);
            Ok(())
        }
        (Storage::Gpu(param), Storage::Gpu(grad), Storage::Gpu(m), Storage::Gpu(v)) => {
            profile::gpu(param.context());
            gpu::adam_step(param.context(), param, grad, m, v, p).map_err(gpu_error)
        }
        _ => Err(mixed("adam_step")),
    }
}
