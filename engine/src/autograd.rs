//! Reverse-mode autograd: the record of each op, the backward walk, the gradient store,
//! and the no-grad mode.
//!
//! Each recorded tensor keeps the [`Op`] that made it, and the op keeps its inputs and
//! whatever its backward needs (`MaxPool2d` keeps the argmax, the losses keep their
//! per-row gradients), so the graph is the tensors themselves. [`Tensor::backward`]
//! orders that graph, then calls [`backward_op`], one exhaustive `match`: an op added to
//! the enum does not compile until it has a backward.

use crate::backend;
use crate::error::{Error, Result};
use crate::ops;
use crate::storage::Storage;
use crate::tensor::{Tensor, TensorId};
use kernels::params::*;
use kernels::registry as k;
use std::cell::Cell;
use std::collections::{HashMap, HashSet};

/// The backward of a pointwise activation: `grad_x` from its params, its input `x` and
/// the gradient of its output, in that order (the backward kernel's arguments).
pub type PointwiseBackward = fn(&ElementwiseParams, &Storage, &Storage) -> Result<Storage>;

/// How a tensor was computed, with what its backward needs.
pub enum Op {
    /// `out = a · b`, or `a · bᵀ` when `trans_b` (a linear layer's `x · Wᵀ`).
    Matmul {
        /// The left operand, `(m, k)`.
        a: Tensor,
        /// The right operand: `(k, n)`, or `(n, k)` when `trans_b`.
        b: Tensor,
        /// Whether `b` was read transposed.
        trans_b: bool,
    },
    /// `out = conv2d(x, weight)`: cross-correlation with zero padding, no bias.
    Conv2d {
        /// The input batch, `(n, c_in, h, w)`.
        x: Tensor,
        /// The filters, `(c_out, c_in, kh, kw)`.
        weight: Tensor,
        /// The shapes, stride and padding the forward ran with.
        params: Conv2dParams,
    },
    /// `out = max_pool2d(relu(conv2d(x, weight) + bias), 2)`, fused: saves its output
    /// (the ReLU mask at each winner) and the argmax, never the conv's output.
    Conv2dReluPool {
        /// The input batch, `(n, c_in, h, w)`.
        x: Tensor,
        /// The filters, `(c_out, c_in, kh, kw)`.
        weight: Tensor,
        /// One value per filter, `(c_out)`.
        bias: Tensor,
        /// The forward's output, `(n, c_out, h_out / 2, w_out / 2)`.
        out: Storage,
        /// Per output value, its winner's index within the conv's `(h_out, w_out)` plane.
        argmax: Storage,
        /// The conv's shapes, stride and padding.
        params: Conv2dParams,
    },
    /// `out[o, c, i] = x[o, c, i] + bias[c]`.
    BiasAdd {
        /// The input, `(outer, channels, inner)` as `params` views it.
        x: Tensor,
        /// One value per channel, `(channels)`.
        bias: Tensor,
        /// How the forward viewed `x`.
        params: AxisParams,
    },
    /// Saves the argmax (`u32` words): the backward is a scatter.
    MaxPool2d {
        /// The input batch, `(n, c, h, w)`.
        input: Tensor,
        /// Per output value, the index of its winner within its `(h, w)` plane.
        argmax: Storage,
        /// The shapes, window and stride the forward ran with.
        params: Pool2dParams,
    },
    /// A pointwise activation (ReLU, leaky ReLU): saves its input; `backward` runs the
    /// activation's backward kernel (see `ops/activation.rs`).
    Pointwise {
        /// The activation's input.
        x: Tensor,
        /// The element count and the activation's scalar (leaky ReLU's slope).
        params: ElementwiseParams,
        /// Runs the activation's backward kernel.
        backward: PointwiseBackward,
        /// The activation's WGSL file stem (`relu`, `leaky_relu`): what [`Op::name`] returns.
        name: &'static str,
    },
    /// Inverted dropout: saves the mask it multiplied by.
    Dropout {
        /// The input.
        x: Tensor,
        /// Per element, `1 / (1 - p_drop)` where kept and 0 where dropped.
        mask: Storage,
        /// The element count, threshold, scale and seed the mask was drawn with.
        params: DropoutParams,
    },
    /// `out = a + b`, same shapes.
    Add {
        /// The left operand.
        a: Tensor,
        /// The right operand.
        b: Tensor,
    },
    /// `out = alpha · x`.
    Scale {
        /// The input.
        x: Tensor,
        /// The scalar factor.
        alpha: f32,
    },
    /// The same values under another shape; the backward passes the gradient through.
    Reshape {
        /// The input, in its original shape.
        x: Tensor,
    },
    /// `out[o, i] = Σ_c x[o, c, i]`.
    SumAxis {
        /// The input, `(outer, channels, inner)` as `params` views it.
        x: Tensor,
        /// How the forward viewed `x`; `channels` is the summed axis.
        params: AxisParams,
    },
    /// Saves its own output: the backward needs `softmax = exp(out)`.
    LogSoftmax {
        /// The logits, `(rows, cols)`.
        x: Tensor,
        /// The forward's output, `log softmax(x)`, `(rows, cols)`.
        out: Storage,
        /// The shape of the logits.
        params: RowParams,
    },
    /// The mean over rows of a row-wise loss whose per-row gradients the forward kernel
    /// already computed (cross-entropy, softmax-KL, the fused distillation loss): the
    /// backward only scales them by `upstream / rows`.
    RowLoss {
        /// The logits the loss was computed from, `(rows, cols)`.
        logits: Tensor,
        /// Per-row gradients `d loss_r / d logits_r`, `(rows, cols)`.
        grad: Storage,
        /// Rows averaged over: the backward scales by `1 / rows`.
        rows: usize,
    },
}

impl Op {
    /// The tensors this op read, in argument order.
    pub fn inputs(&self) -> Vec<&Tensor> {
        match self {
            Op::Matmul { a, b, .. } | Op::Add { a, b } => vec![a, b],
            Op::Conv2d { x, weight, .. } => vec![x, weight],
            Op::Conv2dReluPool {
                x, weight, bias, ..
            } => vec![x, weight, bias],
            Op::BiasAdd { x, bias, .. } => vec![x, bias],
            Op::MaxPool2d { input, .. } => vec![input],
            Op::Pointwise { x, .. }
            | Op::Dropout { x, .. }
            | Op::Scale { x, .. }
            | Op::Reshape { x }
            | Op::SumAxis { x, .. }
            | Op::LogSoftmax { x, .. } => vec![x],
            Op::RowLoss { logits, .. } => vec![logits],
        }
    }

    /// A short name of the op for messages: `matmul`, `conv2d`, an activation's `relu`.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Matmul { .. } => "matmul",
            Op::Conv2d { .. } => "conv2d",
            Op::Conv2dReluPool { .. } => "conv2d_relu_pool",
            Op::BiasAdd { .. } => "bias_add",
            Op::MaxPool2d { .. } => "max_pool2d",
            Op::Pointwise { name, .. } => name,
            Op::Dropout { .. } => "dropout",
            Op::Add { .. } => "add",
            Op::Scale { .. } => "scale",
            Op::Reshape { .. } => "reshape",
            Op::SumAxis { .. } => "sum_axis",
            Op::LogSoftmax { .. } => "log_softmax",
            Op::RowLoss { .. } => "row_loss",
        }
    }
}

/// The gradient of each input of `op`, given the gradient `grad` of its output, as
/// storages shaped like the inputs (in `Op::inputs` order); `None` for an input that
/// needs none (the image batch of a first conv layer), whose gradient is never computed.
fn backward_op(op: &Op, grad: &Tensor) -> Result<Vec<Option<Storage>>> {
    let g = &*grad.storage();
    let needs = |t: &Tensor| t.requires_grad();
    let one = |s: Result<Storage>| s.map(|s| vec![Some(s)]);
    match op {
        Op::Matmul { a, b, trans_b } => {
            ops::matmul::matmul_backward(a, b, *trans_b, g, [needs(a), needs(b)])
        }
        Op::Conv2d { x, weight, params } => {
            ops::conv2d::conv2d_backward(x, weight, params, g, [needs(x), needs(weight)])
        }
        Op::Conv2dReluPool {
            x,
            weight,
            out,
            argmax,
            params,
            ..
        } => ops::conv2d::conv2d_relu_pool_backward(
            [x, weight],
            [out, argmax],
            params,
            g,
            [needs(x), needs(weight)],
        ),
        Op::BiasAdd { x, params, .. } => ops::conv2d::bias_add_backward(params, g, needs(x)),
        Op::MaxPool2d { argmax, params, .. } => {
            one(ops::pool::max_pool2d_backward(argmax, params, g))
        }
        Op::Pointwise {
            x,
            params,
            backward,
            ..
        } => one(backward(params, &x.storage(), g)),
        Op::Dropout { mask, params, .. } => one(ops::activation::dropout_backward(mask, params, g)),
        Op::Add { .. } => Ok(vec![Some(g.duplicate()?), Some(g.duplicate()?)]),
        Op::Scale { alpha, .. } => one(ops::elementwise::scale_backward(*alpha, g)),
        Op::Reshape { .. } => one(g.duplicate()),
        Op::SumAxis { params, .. } => one(ops::elementwise::sum_axis_backward(params, g)),
        Op::LogSoftmax { out, params, .. } => one(ops::loss::log_softmax_backward(out, params, g)),
        Op::RowLoss {
            grad: rows_grad,
            rows,
            ..
        } => one(ops::loss::row_loss_backward(rows_grad, *rows, g)),
    }
}

/// Gradients of the leaves (parameters) a backward pass reached, keyed by tensor.
#[derive(Default)]
pub struct Gradients {
    grads: HashMap<TensorId, Tensor>,
}

impl Gradients {
    /// The gradient of `tensor`, shaped like it; `None` when the backward did not reach it.
    pub fn get(&self, tensor: &Tensor) -> Option<&Tensor> {
        self.grads.get(&tensor.id())
    }

    /// The number of leaves with a gradient.
    pub fn len(&self) -> usize {
        self.grads.len()
    }

    /// Whether no leaf got a gradient.
    pub fn is_empty(&self) -> bool {
        self.grads.is_empty()
    }
}

impl Tensor {
    /// Backpropagates from this scalar (one-element) tensor: the gradient of every
    /// trainable leaf it depends on.
    pub fn backward(&self) -> Result<Gradients> {
        if self.numel() != 1 {
            return Err(Error::BadShape {
                op: "backward",
                shape: self.shape().to_vec(),
                expected: "a one-element loss",
            });
        }
        let seed = Tensor::from_vec(vec![1.0], self.shape(), self.device())?;
        self.backward_with(seed)
    }

    /// Backpropagates `seed`, the gradient of some scalar with respect to this tensor.
    pub fn backward_with(&self, seed: Tensor) -> Result<Gradients> {
        if seed.shape() != self.shape() {
            return Err(Error::ShapeMismatch {
                op: "backward",
                lhs: self.shape().to_vec(),
                rhs: seed.shape().to_vec(),
            });
        }
        let mut pending: HashMap<TensorId, Tensor> = HashMap::new();
        let mut leaves = Gradients::default();
        pending.insert(self.id(), seed);
        for node in topological_order(self).into_iter().rev() {
            let Some(grad) = pending.remove(&node.id()) else {
                continue;
            };
            let Some(op) = node.op() else {
                leaves.grads.insert(node.id(), grad);
                continue;
            };
            let input_grads = backward_op(op, &grad)?;
            for (input, g) in op.inputs().into_iter().zip(input_grads) {
                if let (true, Some(g)) = (input.requires_grad(), g) {
                    accumulate(&mut pending, input, g)?;
                }
            }
        }
        Ok(leaves)
    }
}

fn accumulate(pending: &mut HashMap<TensorId, Tensor>, input: &Tensor, g: Storage) -> Result<()> {
    match pending.get(&input.id()) {
        Some(sum) => {
            let p = ElementwiseParams::with_alpha(g.len(), 1.0)?;
            backend::run_into::<k::Axpy>(&p, &[&g], &mut [&mut sum.storage_mut()])
        }
        None => {
            let g = Tensor::from_storage(g, input.shape().to_vec(), input.device());
            pending.insert(input.id(), g);
            Ok(())
        }
    }
}

/// Every tensor that needs a gradient and that `root` depends on, inputs before users.
fn topological_order(root: &Tensor) -> Vec<Tensor> {
    // NOTE: iterative, so that a deep graph cannot overflow the stack.
    let mut order = Vec::new();
    let mut seen = HashSet::new();
    let mut stack = vec![(root.clone(), false)];
    while let Some((node, inputs_done)) = stack.pop() {
        if inputs_done {
            order.push(node);
            continue;
        }
        if !node.requires_grad() || !seen.insert(node.id()) {
            continue;
        }
        stack.push((node.clone(), true));
        if let Some(op) = node.op() {
            for input in op.inputs() {
                stack.push((input.clone(), false));
            }
        }
    }
    order
}

thread_local! {
    static GRAD_ENABLED: Cell<bool> = const { Cell::new(true) };
}

/// True unless a [`no_grad`] guard is alive on this thread.
pub fn is_grad_enabled() -> bool {
    GRAD_ENABLED.with(|g| g.get())
}

/// Turns recording off on this thread until the guard drops: ops then build no graph
/// (teacher inference, evaluation).
pub fn no_grad() -> NoGradGuard {
    let previous = GRAD_ENABLED.with(|g| g.replace(false));
    NoGradGuard { previous }
}

/// Returned by [`no_grad`]: while it lives, ops record no graph; dropping it restores the
/// previous mode.
pub struct NoGradGuard {
    previous: bool,
}

impl Drop for NoGradGuard {
    fn drop(&mut self) {
        GRAD_ENABLED.with(|g| g.set(self.previous));
    }
}
