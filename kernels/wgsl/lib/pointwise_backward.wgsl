// x, grad_out, grad_x: (len)
// The backward of a pointwise activation: grad_x[i] = backward(x[i], grad_out[i], p.alpha),
// with `backward` from the activation's own file (see lib/pointwise_forward.wgsl).

@group(0) @binding(0) var<uniform> p: ElementwiseParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> grad_out: array<f32>;
@group(0) @binding(3) var<storage, read_write> grad_x: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    // The grid may be split in two dimensions past 65,535 workgroups: see launch.rs.
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.len) {
        return;
    }
    grad_x[i] = backward(x[i], grad_out[i], p.alpha);
}
