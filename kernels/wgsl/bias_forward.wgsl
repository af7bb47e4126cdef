// x, out: (outer, channels, inner)  bias: (channels)
// out[o, c, i] = x[o, c, i] + bias[c]

@group(0) @binding(0) var<uniform> p: AxisParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    // The grid may be split in two dimensions past 65,535 workgroups: see launch.rs.
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.outer * p.channels * p.inner) {
        return;
    }
    out[i] = x[i] + bias[(i / p.inner) % p.channels];
}
