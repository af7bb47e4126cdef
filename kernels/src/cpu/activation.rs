//! ReLU and dropout, forward and backward.

use crate::params::*;

#[allow(unused_variables)]
pub fn relu_forward(x: &[f32], out: &mut [f32], p: &ElementwiseParams) {
    todo!("placeholder until the kernel lands")
}

#[allow(unused_variables)]
pub fn relu_backward(x: &[f32], grad_out: &[f32], grad_x: &mut [f32], p: &ElementwiseParams) {
    todo!("placeholder until the kernel lands")
}

#[allow(unused_variables)]
pub fn dropout_forward(x: &[f32], out: &mut [f32], mask: &mut [f32], p: &DropoutParams) {
    todo!("placeholder until the kernel lands")
}

#[allow(unused_variables)]
pub fn dropout_backward(grad_out: &[f32], mask: &[f32], grad_x: &mut [f32], p: &DropoutParams) {
    todo!("placeholder until the kernel lands")
}

