// x: (src_rows, cols)  index: (rows)  out: (rows, cols)
// out[r, j] = x[index[r], j]; one thread per output value
// NOTE: an index >= src_rows reads nothing and writes 0 (the engine checks indices first).

@group(0) @binding(0) var<uniform> p: GatherParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> index: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    // The grid may be split in two dimensions past 65,535 workgroups: see launch.rs.
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.rows * p.cols) {
        return;
    }
    let src = index[i / p.cols];
    if (src < p.src_rows) {
        out[i] = x[src * p.cols + i % p.cols];
    } else {
        out[i] = 0.0;
    }
}
