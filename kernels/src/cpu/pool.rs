//! Max pooling forward (recording the argmax) and backward (see [`Pool2dParams`]).

use crate::params::*;

#[allow(unused_variables)]
pub fn max_pool2d_forward(x: &[f32], out: &mut [f32], argmax: &mut [u32], p: &Pool2dParams) {
    todo!("placeholder until the kernel lands")
}

#[allow(unused_variables)]
pub fn max_pool2d_backward(grad_out: &[f32], argmax: &[u32], grad_x: &mut [f32], p: &Pool2dParams) {
    todo!("placeholder until the kernel lands")
}

