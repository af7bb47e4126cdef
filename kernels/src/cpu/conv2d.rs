//! 2-D convolution forward, backward-input and backward-weight (see [`Conv2dParams`]).

use crate::params::*;

#[allow(unused_variables)]
pub fn conv2d_forward(x: &[f32], weight: &[f32], out: &mut [f32], p: &Conv2dParams) {
    todo!("placeholder until the kernel lands")
}

#[allow(unused_variables)]
pub fn conv2d_backward_input(grad_out: &[f32], weight: &[f32], grad_x: &mut [f32], p: &Conv2dParams) {
    todo!("placeholder until the kernel lands")
}

#[allow(unused_variables)]
pub fn conv2d_backward_weight(x: &[f32], grad_out: &[f32], grad_weight: &mut [f32], p: &Conv2dParams) {
    todo!("placeholder until the kernel lands")
}

