// param: (rows, cols), in place
// The max-norm constraint: a row whose L2 norm exceeds max_norm is scaled onto it,
// param[r, :] *= max_norm / |param[r, :]|; other rows are left as they are.
// One thread per row: rows are few (a layer's units) and this runs once a step.

@group(0) @binding(0) var<uniform> p: MaxNormParams;
@group(0) @binding(1) var<storage, read_write> param: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    // The grid may be split in two dimensions past 65,535 workgroups: see launch.rs.
    let r = gid.x + gid.y * nwg.x * 256u;
    if (r >= p.rows) {
        return;
    }
    let base = r * p.cols;
    var sum = 0.0;
    for (var j = 0u; j < p.cols; j++) {
        let w = param[base + j];
        sum += w * w;
    }
    let norm = sqrt(sum);
    if (norm > p.max_norm) {
        let scale = p.max_norm / norm;
        for (var j = 0u; j < p.cols; j++) {
            param[base + j] *= scale;
        }
    }
}
