//! Elementwise arithmetic, the per-channel bias and sums over an axis.

use crate::params::*;

#[allow(unused_variables)]
pub fn add(a: &[f32], b: &[f32], out: &mut [f32], p: &ElementwiseParams) {
    todo!("placeholder until the kernel lands")
}

#[allow(unused_variables)]
pub fn mul(a: &[f32], b: &[f32], out: &mut [f32], p: &ElementwiseParams) {
    todo!("placeholder until the kernel lands")
}

#[allow(unused_variables)]
pub fn scale(x: &[f32], out: &mut [f32], p: &ElementwiseParams) {
    todo!("placeholder until the kernel lands")
}

#[allow(unused_variables)]
pub fn axpy(x: &[f32], y: &mut [f32], p: &ElementwiseParams) {
    todo!("placeholder until the kernel lands")
}

#[allow(unused_variables)]
pub fn bias_forward(x: &[f32], bias: &[f32], out: &mut [f32], p: &AxisParams) {
    todo!("placeholder until the kernel lands")
}

#[allow(unused_variables)]
pub fn bias_backward(grad_out: &[f32], grad_bias: &mut [f32], p: &AxisParams) {
    todo!("placeholder until the kernel lands")
}

#[allow(unused_variables)]
pub fn sum_axis(x: &[f32], out: &mut [f32], p: &AxisParams) {
    todo!("placeholder until the kernel lands")
}

#[allow(unused_variables)]
pub fn sum_axis_backward(grad_out: &[f32], grad_x: &mut [f32], p: &AxisParams) {
    todo!("placeholder until the kernel lands")
}

