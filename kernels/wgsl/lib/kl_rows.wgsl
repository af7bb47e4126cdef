// The row helpers of the softmax-KL and the KD losses (prepended to each:
// kernels/src/registry.rs), over the kernel's `student` and `teacher` bindings. They come in
// one copy per array because a WGSL function cannot take a storage array as a parameter.

// The largest value of the row at `base`, column `skip` left out (`p.cols`: none). With a
// column left out the row needs two (the engine checks), or it would read the next row.
fn row_max_student(base: u32, skip: u32) -> f32 {
    var m = student[base + select(0u, 1u, skip == 0u)];
    for (var j = 0u; j < p.cols; j++) {
        if (j != skip) {
            m = max(m, student[base + j]);
        }
    }
    return m;
}

// ln sum_j exp((v_j - m) * inv_t) over the columns but `skip`, with m their max: each
// exponent <= 0 and one is 0, so nothing overflows.
fn row_lse_student(base: u32, skip: u32, m: f32, inv_t: f32) -> f32 {
    var sum = 0.0;
    for (var j = 0u; j < p.cols; j++) {
        if (j != skip) {
            sum += exp((student[base + j] - m) * inv_t);
        }
    }
    return log(sum);
}

// The largest value of the row at `base`, column `skip` left out (`p.cols`: none).
fn row_max_teacher(base: u32, skip: u32) -> f32 {
    var m = teacher[base + select(0u, 1u, skip == 0u)];
    for (var j = 0u; j < p.cols; j++) {
        if (j != skip) {
            m = max(m, teacher[base + j]);
        }
    }
    return m;
}

// ln sum_j exp((v_j - m) * inv_t) over the columns but `skip`, with m their max: each
// exponent <= 0 and one is 0, so nothing overflows.
fn row_lse_teacher(base: u32, skip: u32, m: f32, inv_t: f32) -> f32 {
    var sum = 0.0;
    for (var j = 0u; j < p.cols; j++) {
        if (j != skip) {
            sum += exp((teacher[base + j] - m) * inv_t);
        }
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

// A quiet NaN: the loss of a row whose label is out of range (the CPU twins panic).
fn nan() -> f32 {
    return bitcast<f32>(0x7fc00000u);
}
