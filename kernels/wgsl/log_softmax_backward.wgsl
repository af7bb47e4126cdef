// out, grad_out, grad_x: (rows, cols), out the saved log-softmax
// out_j = x_j - ln sum_k exp(x_k)  =>  dout_j / dx_i = delta_ij - softmax(x)_i
//   =>  dL/dx_i = g_i - exp(out_i) * sum_j g_j
// One thread per row: rows are short (10 classes for MNIST) and many (a whole data set
// when evaluating), so a row's few loads stay in one thread's cache lines.

@group(0) @binding(0) var<uniform> p: RowParams;
@group(0) @binding(1) var<storage, read> out: array<f32>;
@group(0) @binding(2) var<storage, read> grad_out: array<f32>;
@group(0) @binding(3) var<storage, read_write> grad_x: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    // The grid may be split in two dimensions past 65,535 workgroups: see launch.rs.
    let r = gid.x + gid.y * nwg.x * 64u;
    if (r >= p.rows) {
        return;
    }
    let base = r * p.cols;
    var sum = 0.0;
    for (var j = 0u; j < p.cols; j++) {
        sum += grad_out[base + j];
    }
    for (var j = 0u; j < p.cols; j++) {
        grad_x[base + j] = grad_out[base + j] - exp(out[base + j]) * sum;
    }
}
