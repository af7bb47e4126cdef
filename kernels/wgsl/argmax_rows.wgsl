// x: (rows, cols)  out: (rows)
// out[r] = the column of the largest value of row r, the first one on ties
// One thread per row: rows are short (10 classes for MNIST) and many (a whole data set
// when evaluating), so a row's few loads stay in one thread's cache lines.

@group(0) @binding(0) var<uniform> p: RowParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    // The grid may be split in two dimensions past 65,535 workgroups: see launch.rs.
    let r = gid.x + gid.y * nwg.x * 64u;
    if (r >= p.rows) {
        return;
    }
    let base = r * p.cols;
    var best = 0u;
    var best_v = x[base];
    for (var j = 1u; j < p.cols; j++) {
        // Strictly greater: an equal value later in the row does not win.
        let v = x[base + j];
        if (v > best_v) {
            best = j;
            best_v = v;
        }
    }
    out[r] = best;
}
