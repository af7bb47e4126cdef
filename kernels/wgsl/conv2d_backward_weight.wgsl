// x: (n, c_in, h, w)  grad_out: (n, c_out, h_out, w_out)
// grad_weight: (c_out, c_in, kh, kw), or its pieces (lib/conv_backward_weight.wgsl)
// conv2d_backward_weight: the weight gradient of a conv from its output's gradient, as
// stored. The product is lib/conv_backward_weight.wgsl's (prepended: kernels/src/registry.rs).

@group(0) @binding(0) var<uniform> p: Conv2dParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> grad_out: array<f32>;
@group(0) @binding(3) var<storage, read_write> grad_weight: array<f32>;

fn grad_at(b: u32, co: u32, oy: u32, ox: u32) -> f32 {
    return grad_out[((b * p.c_out + co) * p.h_out + oy) * p.w_out + ox];
}
