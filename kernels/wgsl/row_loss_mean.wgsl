// losses: (rows, cols)  loss: (1)  means: (cols), cols = 1 to 3
// means[c] = (1 / rows) sum_r losses[r, c]
// loss = means[0] (one column), (1 - alpha) means[0] + alpha means[1] (the distillation
// loss's CE and T^2 KL columns), or means[0] + alpha means[1] + beta means[2] (decoupled
// KD's CE, T^2 TCKD and T^2 NCKD)
// One workgroup: each thread sums a strided share of the rows, then a tree in workgroup
// memory adds the 256 partials in a fixed order (deterministic).

@group(0) @binding(0) var<uniform> p: RowParams;
@group(0) @binding(1) var<storage, read> losses: array<f32>;
@group(0) @binding(2) var<storage, read_write> loss: array<f32>;
@group(0) @binding(3) var<storage, read_write> means: array<f32>;

var<workgroup> partial: array<vec3<f32>, 256>;

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) tid: u32) {
    var acc = vec3<f32>(0.0, 0.0, 0.0);
    for (var r = tid; r < p.rows; r += 256u) {
        for (var c = 0u; c < p.cols; c++) {
            acc[c] += losses[r * p.cols + c];
        }
    }
    partial[tid] = acc;
    workgroupBarrier();
    for (var half = 128u; half > 0u; half >>= 1u) {
        if (tid < half) {
            partial[tid] += partial[tid + half];
        }
        workgroupBarrier();
    }
    if (tid == 0u) {
        let mean = partial[0] / f32(p.rows);
        for (var c = 0u; c < p.cols; c++) {
            means[c] = mean[c];
        }
        switch p.cols {
            case 2u: {
                loss[0] = (1.0 - p.alpha) * mean.x + p.alpha * mean.y;
            }
            case 3u: {
                loss[0] = mean.x + p.alpha * mean.y + p.beta * mean.z;
            }
            default: {
                loss[0] = mean.x;
            }
        }
    }
}
