//! Optimizer steps, in place on a parameter and its state.

use crate::params::*;

#[allow(unused_variables)]
pub fn sgd_step(param: &mut [f32], grad: &[f32], velocity: &mut [f32], p: &SgdParams) {
    todo!("placeholder until the kernel lands")
}

#[allow(unused_variables)]
pub fn adam_step(param: &mut [f32], grad: &[f32], m: &mut [f32], v: &mut [f32], p: &AdamParams) {
    todo!("placeholder until the kernel lands")
}

