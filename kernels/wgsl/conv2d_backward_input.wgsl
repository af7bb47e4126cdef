// grad_out: (n, c_out, h_out, w_out)  weight: (c_out, c_in, kh, kw)  grad_x: (n, c_in, h, w)
// conv2d_backward_input: the input gradient of a conv from its output's gradient, as
// stored. The product is lib/conv_backward_input.wgsl's (prepended: kernels/src/registry.rs).

@group(0) @binding(0) var<uniform> p: Conv2dParams;
@group(0) @binding(1) var<storage, read> grad_out: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read_write> grad_x: array<f32>;

fn grad_at(b: u32, co: u32, oy: u32, ox: u32) -> f32 {
    return grad_out[((b * p.c_out + co) * p.h_out + oy) * p.w_out + ox];
}
