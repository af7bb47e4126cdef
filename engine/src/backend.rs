//! One function per kernel: allocate the outputs on the operands' device and run the
//! CPU kernel or record the GPU launch. The ops above validate shapes and devices first,
//! so a kernel here never sees a length that does not match its params.

use crate::error::Result;
use crate::storage::{IndexStorage, Storage};
use kernels::cpu;
use kernels::params::*;

pub(crate) fn matmul(a: &Storage, b: &Storage, p: &MatmulParams) -> Result<Storage> {
    let len = (p.m * p.n) as usize;
    match (a, b) {
        (Storage::Cpu(a), Storage::Cpu(b)) => {
            let mut c = vec![0.0; len];
            cpu::matmul(a, b, &mut c, p);
            Ok(Storage::Cpu(c))
        }
    }
}

pub(crate) fn conv2d_forward(x: &Storage, w: &Storage, p: &Conv2dParams) -> Result<Storage> {
    match (x, w) {
        (Storage::Cpu(x), Storage::Cpu(w)) => {
            let mut out = vec![0.0; p.output_len()];
            cpu::conv2d_forward(x, w, &mut out, p);
            Ok(Storage::Cpu(out))
        }
    }
}

pub(crate) fn conv2d_backward_input(g: &Storage, w: &Storage, p: &Conv2dParams) -> Result<Storage> {
    match (g, w) {
        (Storage::Cpu(g), Storage::Cpu(w)) => {
            let mut gx = vec![0.0; p.input_len()];
            cpu::conv2d_backward_input(g, w, &mut gx, p);
            Ok(Storage::Cpu(gx))
        }
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
            cpu::conv2d_backward_weight(x, g, &mut gw, p);
            Ok(Storage::Cpu(gw))
        }
    }
}

pub(crate) fn bias_forward(x: &Storage, bias: &Storage, p: &AxisParams) -> Result<Storage> {
    match (x, bias) {
        (Storage::Cpu(x), Storage::Cpu(bias)) => {
            let mut out = vec![0.0; p.len()];
            cpu::bias_forward(x, bias, &mut out, p);
            Ok(Storage::Cpu(out))
        }
    }
}

pub(crate) fn bias_backward(g: &Storage, p: &AxisParams) -> Result<Storage> {
    match g {
        Storage::Cpu(g) => {
            let mut gb = vec![0.0; p.channels as usize];
            cpu::bias_backward(g, &mut gb, p);
            Ok(Storage::Cpu(gb))
        }
    }
}

pub(crate) fn max_pool2d_forward(x: &Storage, p: &Pool2dParams) -> Result<(Storage, IndexStorage)> {
    match x {
        Storage::Cpu(x) => {
            let mut out = vec![0.0; p.output_len()];
            let mut argmax = vec![0; p.output_len()];
            cpu::max_pool2d_forward(x, &mut out, &mut argmax, p);
            Ok((Storage::Cpu(out), IndexStorage::Cpu(argmax)))
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
            cpu::max_pool2d_backward(g, argmax, &mut gx, p);
            Ok(Storage::Cpu(gx))
        }
    }
}

pub(crate) fn relu_forward(x: &Storage, p: &ElementwiseParams) -> Result<Storage> {
    match x {
        Storage::Cpu(x) => {
            let mut out = vec![0.0; x.len()];
            cpu::relu_forward(x, &mut out, p);
            Ok(Storage::Cpu(out))
        }
    }
}

pub(crate) fn relu_backward(x: &Storage, g: &Storage, p: &ElementwiseParams) -> Result<Storage> {
    match (x, g) {
        (Storage::Cpu(x), Storage::Cpu(g)) => {
            let mut gx = vec![0.0; x.len()];
            cpu::relu_backward(x, g, &mut gx, p);
            Ok(Storage::Cpu(gx))
        }
    }
}

/// Returns the output and the mask (0 or `1 / (1 - p_drop)` per element).
pub(crate) fn dropout_forward(x: &Storage, p: &DropoutParams) -> Result<(Storage, Storage)> {
    match x {
        Storage::Cpu(x) => {
            let mut out = vec![0.0; x.len()];
            let mut mask = vec![0.0; x.len()];
            cpu::dropout_forward(x, &mut out, &mut mask, p);
            Ok((Storage::Cpu(out), Storage::Cpu(mask)))
        }
    }
}

pub(crate) fn dropout_backward(g: &Storage, mask: &Storage, p: &DropoutParams) -> Result<Storage> {
    match (g, mask) {
        (Storage::Cpu(g), Storage::Cpu(mask)) => {
            let mut gx = vec![0.0; g.len()];
            cpu::dropout_backward(g, mask, &mut gx, p);
            Ok(Storage::Cpu(gx))
        }
    }
}

pub(crate) fn add(a: &Storage, b: &Storage) -> Result<Storage> {
    match (a, b) {
        (Storage::Cpu(a), Storage::Cpu(b)) => {
            let mut out = vec![0.0; a.len()];
            cpu::add(a, b, &mut out, &ElementwiseParams::new(a.len()));
            Ok(Storage::Cpu(out))
        }
    }
}

pub(crate) fn mul(a: &Storage, b: &Storage) -> Result<Storage> {
    match (a, b) {
        (Storage::Cpu(a), Storage::Cpu(b)) => {
            let mut out = vec![0.0; a.len()];
            cpu::mul(a, b, &mut out, &ElementwiseParams::new(a.len()));
            Ok(Storage::Cpu(out))
        }
    }
}

pub(crate) fn scale(x: &Storage, alpha: f32) -> Result<Storage> {
    match x {
        Storage::Cpu(x) => {
            let mut out = vec![0.0; x.len()];
            cpu::scale(x, &mut out, &ElementwiseParams::with_alpha(x.len(), alpha));
            Ok(Storage::Cpu(out))
        }
    }
}

/// `y += alpha · x`, in place: how gradients accumulate.
pub(crate) fn axpy(x: &Storage, y: &mut Storage, alpha: f32) -> Result<()> {
    match (x, y) {
        (Storage::Cpu(x), Storage::Cpu(y)) => {
            cpu::axpy(x, y, &ElementwiseParams::with_alpha(x.len(), alpha));
            Ok(())
        }
    }
}

pub(crate) fn sum_axis(x: &Storage, p: &AxisParams) -> Result<Storage> {
    match x {
        Storage::Cpu(x) => {
            let mut out = vec![0.0; (p.outer * p.inner) as usize];
            cpu::sum_axis(x, &mut out, p);
            Ok(Storage::Cpu(out))
        }
    }
}

pub(crate) fn sum_axis_backward(g: &Storage, p: &AxisParams) -> Result<Storage> {
    match g {
        Storage::Cpu(g) => {
            let mut gx = vec![0.0; p.len()];
            cpu::sum_axis_backward(g, &mut gx, p);
            Ok(Storage::Cpu(gx))
        }
    }
}

pub(crate) fn log_softmax_forward(x: &Storage, p: &RowParams) -> Result<Storage> {
    match x {
        Storage::Cpu(x) => {
            let mut out = vec![0.0; x.len()];
            cpu::log_softmax_forward(x, &mut out, p);
            Ok(Storage::Cpu(out))
        }
    }
}

pub(crate) fn log_softmax_backward(out: &Storage, g: &Storage, p: &RowParams) -> Result<Storage> {
    match (out, g) {
        (Storage::Cpu(out), Storage::Cpu(g)) => {
            let mut gx = vec![0.0; out.len()];
            cpu::log_softmax_backward(out, g, &mut gx, p);
            Ok(Storage::Cpu(gx))
        }
    }
}

/// Returns the per-row losses `(rows)` and per-row gradients `(rows, cols)`.
pub(crate) fn cross_entropy_forward(
    logits: &Storage,
    labels: &IndexStorage,
    p: &RowParams,
) -> Result<(Storage, Storage)> {
    match (logits, labels) {
        (Storage::Cpu(logits), IndexStorage::Cpu(labels)) => {
            let mut loss = vec![0.0; p.rows as usize];
            let mut grad = vec![0.0; logits.len()];
            cpu::cross_entropy_forward(logits, labels, &mut loss, &mut grad, p);
            Ok((Storage::Cpu(loss), Storage::Cpu(grad)))
        }
    }
}

/// Returns the per-row `T²·KL` `(rows)` and per-row gradients `(rows, cols)`.
pub(crate) fn softmax_kl_forward(
    s: &Storage,
    t: &Storage,
    p: &RowParams,
) -> Result<(Storage, Storage)> {
    match (s, t) {
        (Storage::Cpu(s), Storage::Cpu(t)) => {
            let mut loss = vec![0.0; p.rows as usize];
            let mut grad = vec![0.0; s.len()];
            cpu::softmax_kl_forward(s, t, &mut loss, &mut grad, p);
            Ok((Storage::Cpu(loss), Storage::Cpu(grad)))
        }
    }
}

/// Returns the per-row `[CE, T²·KL]` pairs `(rows, 2)` and the gradients `(rows, cols)`.
pub(crate) fn kd_loss_forward(
    s: &Storage,
    t: &Storage,
    labels: &IndexStorage,
    p: &RowParams,
) -> Result<(Storage, Storage)> {
    match (s, t, labels) {
        (Storage::Cpu(s), Storage::Cpu(t), IndexStorage::Cpu(labels)) => {
            let mut loss = vec![0.0; 2 * p.rows as usize];
            let mut grad = vec![0.0; s.len()];
            cpu::kd_loss_forward(s, t, labels, &mut loss, &mut grad, p);
            Ok((Storage::Cpu(loss), Storage::Cpu(grad)))
        }
    }
}

pub(crate) fn argmax_rows(x: &Storage, p: &RowParams) -> Result<IndexStorage> {
    match x {
        Storage::Cpu(x) => {
            let mut out = vec![0; p.rows as usize];
            cpu::argmax_rows(x, &mut out, p);
            Ok(IndexStorage::Cpu(out))
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
            cpu::sgd_step(param, grad, velocity, p);
            Ok(())
        }
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
            cpu::adam_step(param, grad, m, v, p);
            Ok(())
        }
    }
}
