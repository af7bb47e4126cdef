//! Row-wise log-softmax, cross-entropy, the fused softmax-KL and distillation losses.

use crate::params::*;

#[allow(unused_variables)]
pub fn log_softmax_forward(x: &[f32], out: &mut [f32], p: &RowParams) {
    todo!("placeholder until the kernel lands")
}

#[allow(unused_variables)]
pub fn log_softmax_backward(out: &[f32], grad_out: &[f32], grad_x: &mut [f32], p: &RowParams) {
    todo!("placeholder until the kernel lands")
}

#[allow(unused_variables)]
pub fn cross_entropy_forward(logits: &[f32], labels: &[u32], loss: &mut [f32], grad: &mut [f32], p: &RowParams) {
    todo!("placeholder until the kernel lands")
}

#[allow(unused_variables)]
pub fn softmax_kl_forward(student: &[f32], teacher: &[f32], loss: &mut [f32], grad: &mut [f32], p: &RowParams) {
    todo!("placeholder until the kernel lands")
}

#[allow(unused_variables)]
pub fn kd_loss_forward(student: &[f32], teacher: &[f32], labels: &[u32], loss: &mut [f32], grad: &mut [f32], p: &RowParams) {
    todo!("placeholder until the kernel lands")
}

#[allow(unused_variables)]
pub fn argmax_rows(x: &[f32], out: &mut [u32], p: &RowParams) {
    todo!("placeholder until the kernel lands")
}

