// grad_out, argmax: (n, c_out, h_out / 2, w_out / 2)  grad_bias: (c_out)
// z = conv + bias, out = max_pool2d(relu(z))  =>  dL/dbias[c] = sum_{b, oy, ox} dL/dz[b, c, oy, ox],
// and dL/dz is each pooled gradient at its window's winner, zero elsewhere: so the sum is
// that of the pooled gradients whose argmax falls in the plane.
// One workgroup per channel, as bias_backward.wgsl: each thread sums a strided share, then
// lib/workgroup_sum.wgsl adds the 256 partials in a fixed order (deterministic).

@group(0) @binding(0) var<uniform> p: Conv2dParams;
@group(0) @binding(1) var<storage, read> grad_out: array<f32>;
@group(0) @binding(2) var<storage, read> argmax: array<u32>;
@group(0) @binding(3) var<storage, read_write> grad_bias: array<f32>;

@compute @workgroup_size(256)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) tid: u32,
) {
    // The grid may be split in two dimensions past 65,535 workgroups: see launch.rs.
    let c = wg.x + wg.y * nwg.x;
    if (c >= p.c_out) {
        return;
    }
    let pooled = (p.h_out / 2u) * (p.w_out / 2u);
    let count = p.n * pooled;
    var acc = 0.0;
    for (var j = tid; j < count; j += 256u) {
        let i = ((j / pooled) * p.c_out + c) * pooled + j % pooled;
        acc += select(0.0, grad_out[i], argmax[i] < p.h_out * p.w_out);
    }
    let sum = workgroup_sum(acc, tid);
    if (tid == 0u) {
        grad_bias[c] = sum;
    }
}
