// grad_out, argmax: (n, c_out, h_out / 2, w_out / 2)  weight: (c_out, c_in, kh, kw)
// grad_x: (n, c_in, h, w)
// conv2d_pool_backward_input: the input gradient of a conv followed by a 2x2 max-pool,
// from the pool's output gradient and argmax (n, c_out, h_out / 2, w_out / 2), never
// storing the conv's own gradient. The product is lib/conv_backward_input.wgsl's and
// `unpooled` lib/unpool.wgsl's (prepended: kernels/src/registry.rs).

@group(0) @binding(0) var<uniform> p: Conv2dParams;
@group(0) @binding(1) var<storage, read> grad_out: array<f32>;
@group(0) @binding(2) var<storage, read> argmax: array<u32>;
@group(0) @binding(3) var<storage, read> weight: array<f32>;
@group(0) @binding(4) var<storage, read_write> grad_x: array<f32>;

fn grad_at(b: u32, co: u32, oy: u32, ox: u32) -> f32 {
    return unpooled(b, co, oy, ox);
}
