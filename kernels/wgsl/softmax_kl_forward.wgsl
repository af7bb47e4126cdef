// student, teacher, grad: (rows, cols)  loss: (rows)
// d/dz_s of T^2 * KL(p_t || softmax(z_s / T)) = T * (softmax(z_s / T) - p_t)
// with p_t = softmax(z_t / T); loss = T^2 * KL per row.
// One thread per row: rows are short (10 classes for MNIST) and many (a whole data set
// when evaluating), so a row's few loads stay in one thread's cache lines.

@group(0) @binding(0) var<uniform> p: RowParams;
@group(0) @binding(1) var<storage, read> student: array<f32>;
@group(0) @binding(2) var<storage, read> teacher: array<f32>;
@group(0) @binding(3) var<storage, read_write> loss: array<f32>;
@group(0) @binding(4) var<storage, read_write> grad: array<f32>;

// The row helpers and kl_term are lib/kl_rows.wgsl's (prepended: kernels/src/registry.rs).

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    // The grid may be split in two dimensions past 65,535 workgroups: see launch.rs.
    let r = gid.x + gid.y * nwg.x * 64u;
    if (r >= p.rows) {
        return;
    }
    let base = r * p.cols;
    let t = p.temperature;
    let inv_t = 1.0 / t;
    let ms = row_max_student(base, p.cols);
    let lse_q = row_lse_student(base, p.cols, ms, inv_t);
    let mt = row_max_teacher(base, p.cols);
    let lse_p = row_lse_teacher(base, p.cols, mt, inv_t);
    var kl = 0.0;
    for (var j = 0u; j < p.cols; j++) {
        let log_q = (student[base + j] - ms) * inv_t - lse_q;
        let log_p = (teacher[base + j] - mt) * inv_t - lse_p;
        kl += kl_term(log_p, log_q);
        grad[base + j] = t * (exp(log_q) - exp(log_p));
    }
    loss[r] = t * t * kl;
}
