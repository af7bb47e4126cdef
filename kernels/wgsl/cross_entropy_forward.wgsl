// logits, grad: (rows, cols)  labels, loss: (rows)
// loss = -log softmax(z)[y]  =>  dloss/dz = softmax(z) - onehot(y)
// One thread per row: rows are short (10 classes for MNIST) and many (a whole data set
// when evaluating), so a row's few loads stay in one thread's cache lines.

@group(0) @binding(0) var<uniform> p: RowParams;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<u32>;
@group(0) @binding(3) var<storage, read_write> loss: array<f32>;
@group(0) @binding(4) var<storage, read_write> grad: array<f32>;

// The largest value of the row at `base`.
fn row_max_logits(base: u32) -> f32 {
    var m = logits[base];
    for (var j = 1u; j < p.cols; j++) {
        m = max(m, logits[base + j]);
    }
    return m;
}

// ln sum_j exp((v_j - m) * inv_t): each exponent <= 0 and one is 0, so nothing overflows.
fn row_lse_logits(base: u32, m: f32, inv_t: f32) -> f32 {
    var sum = 0.0;
    for (var j = 0u; j < p.cols; j++) {
        sum += exp((logits[base + j] - m) * inv_t);
    }
    return log(sum);
}

// A quiet NaN: the loss of a row whose label is out of range (the CPU twin panics).
fn nan() -> f32 {
    return bitcast<f32>(0x7fc00000u);
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    // The grid may be split in two dimensions past 65,535 workgroups: see launch.rs.
    let r = gid.x + gid.y * nwg.x * 64u;
    if (r >= p.rows) {
        return;
    }
    let base = r * p.cols;
    let m = row_max_logits(base);
    let lse = row_lse_logits(base, m, 1.0);
    let y = labels[r];
    for (var j = 0u; j < p.cols; j++) {
        let q = exp((logits[base + j] - m) - lse);
        grad[base + j] = select(q, q - 1.0, j == y);
    }
    loss[r] = select(nan(), -((logits[base + min(y, p.cols - 1u)] - m) - lse), y < p.cols);
}
