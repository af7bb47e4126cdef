// student, teacher, grad: (rows, cols)  labels: (rows)  loss: (rows, 2)
// loss[r, 0] = CE(y, z_s) = -log softmax(z_s)[y];  loss[r, 1] = T^2 * KL(p_t || softmax(z_s / T))
// d/dz_s of (1 - a) CE + a T^2 KL = (1 - a) (softmax(z_s) - onehot(y)) + a T (softmax(z_s / T) - p_t)
// One thread per row: rows are short (10 classes for MNIST) and many (a whole data set
// when evaluating), so a row's few loads stay in one thread's cache lines.

@group(0) @binding(0) var<uniform> p: RowParams;
@group(0) @binding(1) var<storage, read> student: array<f32>;
@group(0) @binding(2) var<storage, read> teacher: array<f32>;
@group(0) @binding(3) var<storage, read> labels: array<u32>;
@group(0) @binding(4) var<storage, read_write> loss: array<f32>;
@group(0) @binding(5) var<storage, read_write> grad: array<f32>;

// The row helpers, kl_term and nan are lib/kl_rows.wgsl's (prepended: kernels/src/registry.rs).

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    // The grid may be split in two dimensions past 65,535 workgroups: see launch.rs.
    let r = gid.x + gid.y * nwg.x * 64u;
    if (r >= p.rows) {
        return;
    }
    let base = r * p.cols;
    let t = p.temperature;
    let a = p.alpha;
    let inv_t = 1.0 / t;
    let ms = row_max_student(base, p.cols);
    let lse_q1 = row_lse_student(base, p.cols, ms, 1.0);
    let lse_q = row_lse_student(base, p.cols, ms, inv_t);
    let mt = row_max_teacher(base, p.cols);
    let lse_p = row_lse_teacher(base, p.cols, mt, inv_t);
    let y = labels[r];
    var kl = 0.0;
    for (var j = 0u; j < p.cols; j++) {
        let s = student[base + j];
        let q1 = exp((s - ms) - lse_q1);
        let g_ce = select(q1, q1 - 1.0, j == y);
        let log_q = (s - ms) * inv_t - lse_q;
        let log_p = (teacher[base + j] - mt) * inv_t - lse_p;
        kl += kl_term(log_p, log_q);
        grad[base + j] = (1.0 - a) * g_ce + a * (t * (exp(log_q) - exp(log_p)));
    }
    let ce = -((student[base + min(y, p.cols - 1u)] - ms) - lse_q1);
    loss[2u * r] = select(nan(), ce, y < p.cols);
    loss[2u * r + 1u] = t * t * kl;
}
