// student, teacher, grad: (rows, cols)  labels: (rows)  loss: (rows, 3), cols >= 2
// Decoupled KD (Zhao et al. 2022), at temperature T, y the label, q = softmax(z_s / T),
// p = softmax(z_t / T), and q^, p^ the softmaxes over the non-target columns:
// loss[r, 0] = CE(y, z_s)
// loss[r, 1] = T^2 * TCKD = T^2 * KL((p_y, 1 - p_y) || (q_y, 1 - q_y))
// loss[r, 2] = T^2 * NCKD = T^2 * KL(p^ || q^)
// grad = d/dz_s of CE + alpha T^2 TCKD + beta T^2 NCKD:
//   column y:  softmax(z_s)_y - 1 + T alpha (q_y - p_y)
//   column j:  softmax(z_s)_j + T (alpha q^_j (p_y - q_y) + beta (q^_j - p^_j))
// (the derivation is above the CPU twin, kernels/src/cpu/softmax.rs). One thread per row,
// as kd_loss_forward.

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
    let inv_t = 1.0 / t;
    let label = labels[r];
    let y = min(label, p.cols - 1u);
    // Each side's softmax over all columns and over the non-target ones, as log-normalisers.
    let ms = row_max_student(base, p.cols);
    let lse_q1 = row_lse_student(base, p.cols, ms, 1.0);
    let lse_q = row_lse_student(base, p.cols, ms, inv_t);
    let ms_rest = row_max_student(base, y);
    let lse_q_rest = row_lse_student(base, y, ms_rest, inv_t);
    let mt = row_max_teacher(base, p.cols);
    let lse_p = row_lse_teacher(base, p.cols, mt, inv_t);
    let mt_rest = row_max_teacher(base, y);
    let lse_p_rest = row_lse_teacher(base, y, mt_rest, inv_t);
    // The binary split: log q_y and log(1 - q_y) = ln sum_{j != y} q_j, the latter as the
    // difference of the two log-normalisers (exact where 1 - q_y would round to 0).
    let log_qy = (student[base + y] - ms) * inv_t - lse_q;
    let log_qn = (ms_rest - ms) * inv_t + lse_q_rest - lse_q;
    let log_py = (teacher[base + y] - mt) * inv_t - lse_p;
    let log_pn = (mt_rest - mt) * inv_t + lse_p_rest - lse_p;
    let qy = exp(log_qy);
    let py = exp(log_py);
    let tckd = kl_term(log_py, log_qy) + kl_term(log_pn, log_qn);
    var nckd = 0.0;
    for (var j = 0u; j < p.cols; j++) {
        let s = student[base + j];
        let q1 = exp((s - ms) - lse_q1);
        var g: f32;
        if (j == y) {
            g = q1 - 1.0 + t * p.alpha * (qy - py);
        } else {
            let log_q = (s - ms_rest) * inv_t - lse_q_rest;
            let log_p = (teacher[base + j] - mt_rest) * inv_t - lse_p_rest;
            nckd += kl_term(log_p, log_q);
            let q = exp(log_q);
            g = q1 + t * (p.alpha * q * (py - qy) + p.beta * (q - exp(log_p)));
        }
        grad[base + j] = g;
    }
    // A label out of range poisons all three terms: each depends on the label.
    let ok = label < p.cols;
    let ce = -((student[base + y] - ms) - lse_q1);
    loss[3u * r] = select(nan(), ce, ok);
    loss[3u * r + 1u] = select(nan(), t * t * tckd, ok);
    loss[3u * r + 2u] = select(nan(), t * t * nckd, ok);
}
