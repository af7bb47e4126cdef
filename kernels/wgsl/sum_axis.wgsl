// x: (outer, channels, inner)  out: (outer, inner)
// out[o, i] = sum_c x[o, c, i]; one thread per output, reading along i (coalesced)

@group(0) @binding(0) var<uniform> p: AxisParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    // The grid may be split in two dimensions past 65,535 workgroups: see launch.rs.
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.outer * p.inner) {
        return;
    }
    let o = i / p.inner;
    let base = o * p.channels * p.inner + i % p.inner;
    var acc = 0.0;
    for (var c = 0u; c < p.channels; c++) {
        acc += x[base + c * p.inner];
    }
    out[i] = acc;
}
