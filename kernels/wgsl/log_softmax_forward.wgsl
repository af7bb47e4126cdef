// x, out: (rows, cols)
// out = log softmax(x) per row = x - max - ln sum exp(x - max)
// One thread per row: rows are short (10 classes for MNIST) and many (a whole data set
// when evaluating), so a row's few loads stay in one thread's cache lines.

@group(0) @binding(0) var<uniform> p: RowParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

// The largest value of the row at `base`.
fn row_max_x(base: u32) -> f32 {
    var m = x[base];
    for (var j = 1u; j < p.cols; j++) {
        m = max(m, x[base + j]);
    }
    return m;
}

// ln sum_j exp((v_j - m) * inv_t): each exponent <= 0 and one is 0, so nothing overflows.
fn row_lse_x(base: u32, m: f32, inv_t: f32) -> f32 {
    var sum = 0.0;
    for (var j = 0u; j < p.cols; j++) {
        sum += exp((x[base + j] - m) * inv_t);
    }
    return log(sum);
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    // The grid may be split in two dimensions past 65,535 workgroups: see launch.rs.
    let r = gid.x + gid.y * nwg.x * 64u;
    if (r >= p.rows) {
        return;
    }
    let base = r * p.cols;
    let m = row_max_x(base);
    let lse = row_lse_x(base, m, 1.0);
    for (var j = 0u; j < p.cols; j++) {
        out[base + j] = (x[base + j] - m) - lse;
    }
}
