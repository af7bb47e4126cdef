// student, teacher, grad: (rows, cols)  loss: (rows)
// d/dz_s of T^2 * KL(p_t || softmax(z_s / T)) = T * (softmax(z_s / T) - p_t)
// with p_t = softmax(z_t / T); loss = T^2 * KL per row.
// One thread per row: rows are short (10 classes for MNIST) and many (a whole data set
// when evaluating), so a row's few loads stay in one thread's cache lines.

struct RowParams {
    rows: u32,
    cols: u32,
    temperature: f32,
    alpha: f32,
}

@group(0) @binding(0) var<uniform> p: RowParams;
@group(0) @binding(1) var<storage, read> student: array<f32>;
@group(0) @binding(2) var<storage, read> teacher: array<f32>;
@group(0) @binding(3) var<storage, read_write> loss: array<f32>;
@group(0) @binding(4) var<storage, read_write> grad: array<f32>;

// The largest value of the row at `base`.
fn row_max_student(base: u32) -> f32 {
    var m = student[base];
    for (var j = 1u; j < p.cols; j++) {
        m = max(m, student[base + j]);
    }
    return m;
}

// ln sum_j exp((v_j - m) * inv_t): each exponent <= 0 and one is 0, so nothing overflows.
fn row_lse_student(base: u32, m: f32, inv_t: f32) -> f32 {
    var sum = 0.0;
    for (var j = 0u; j < p.cols; j++) {
        sum += exp((student[base + j] - m) * inv_t);
    }
    return log(sum);
}

// The largest value of the row at `base`.
fn row_max_teacher(base: u32) -> f32 {
    var m = teacher[base];
    for (var j = 1u; j < p.cols; j++) {
        m = max(m, teacher[base + j]);
    }
    return m;
}

// ln sum_j exp((v_j - m) * inv_t): each exponent <= 0 and one is 0, so nothing overflows.
fn row_lse_teacher(base: u32, m: f32, inv_t: f32) -> f32 {
    var sum = 0.0;
    for (var j = 0u; j < p.cols; j++) {
        sum += exp((teacher[base + j] - m) * inv_t);
    }
    return log(sum);
}

// One column of the KL: p_j (log p_j - log q_j), with 0 log 0 = 0 (a teacher
// probability that underflows adds nothing instead of NaN). Only an exact 0 is skipped,
// as on the CPU, so a NaN p_j still reaches the loss where the device keeps NaNs (WGSL
// does not promise to).
fn kl_term(log_p: f32, log_q: f32) -> f32 {
    let pj = exp(log_p);
    return select(pj * (log_p - log_q), 0.0, pj == 0.0);
}

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
    let ms = row_max_student(base);
    let lse_q = row_lse_student(base, ms, inv_t);
    let mt = row_max_teacher(base);
    let lse_p = row_lse_teacher(base, mt, inv_t);
    var kl = 0.0;
    for (var j = 0u; j < p.cols; j++) {
        let log_q = (student[base + j] - ms) * inv_t - lse_q;
        let log_p = (teacher[base + j] - mt) * inv_t - lse_p;
        kl += kl_term(log_p, log_q);
        grad[base + j] = t * (exp(log_q) - exp(log_p));
    }
    loss[r] = t * t * kl;
}
