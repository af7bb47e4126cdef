// x, out, mask: (len)
// mask = scale where dropout_hash(seed, i) >= threshold, else 0;  out = x * mask
// The hash repeats kernels::cpu::dropout_hash line for line; u32 arithmetic wraps the same.

fn lowbias32(v0: u32) -> u32 {
    var v = v0;
    v ^= v >> 16u;
    v *= 0x7feb352du;
    v ^= v >> 15u;
    v *= 0x846ca68bu;
    v ^= v >> 16u;
    return v;
}

fn dropout_hash(seed: u32, index: u32) -> u32 {
    return lowbias32(index ^ lowbias32(seed ^ 0x9e3779b9u));
}

@group(0) @binding(0) var<uniform> p: DropoutParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<storage, read_write> mask: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    // The grid may be split in two dimensions past 65,535 workgroups: see launch.rs.
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.len) {
        return;
    }
    let m = select(0.0, p.scale, dropout_hash(p.seed, i) >= p.threshold);
    mask[i] = m;
    out[i] = x[i] * m;
}
