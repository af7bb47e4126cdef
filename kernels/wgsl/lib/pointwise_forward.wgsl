// x, out: (len)
// The forward of a pointwise activation: out[i] = forward(x[i], p.alpha). The
// activation's own file (wgsl/relu.wgsl, wgsl/leaky_relu.wgsl) defines `forward` and
// `backward`; this file gives them their bindings and entry point.

@group(0) @binding(0) var<uniform> p: ElementwiseParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    // The grid may be split in two dimensions past 65,535 workgroups: see launch.rs.
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.len) {
        return;
    }
    out[i] = forward(x[i], p.alpha);
}
