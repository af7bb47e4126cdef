// param, grad, m, v: (len)
// PyTorch's Adam (L2 decay added to g) or AdamW (decoupled: param *= 1 - lr * wd):
//   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
//   param -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps)

@group(0) @binding(0) var<uniform> p: AdamParams;
@group(0) @binding(1) var<storage, read_write> param: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> m: array<f32>;
@group(0) @binding(4) var<storage, read_write> v: array<f32>;

// PyTorch's lerp: start + weight (end - start), from the end side for large weights.
fn lerp(start: f32, end: f32, weight: f32) -> f32 {
    if (abs(weight) < 0.5) {
        return start + weight * (end - start);
    }
    return end - (end - start) * (1.0 - weight);
}

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    // The grid may be split in two dimensions past 65,535 workgroups: see launch.rs.
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.len) {
        return;
    }
    // NOTE: PyTorch's order of operations, as the CPU twin: m by lerp, sqrt(v) / sqrt(bc2),
    // and (-lr / bc1 * m) / denom.
    var w = param[i];
    var g = grad[i];
    if (p.weight_decay != 0.0) {
        if (p.decoupled == 1u) {
            w *= 1.0 - p.lr * p.weight_decay;
        } else {
            g += p.weight_decay * w;
        }
    }
    let m1 = lerp(m[i], g, 1.0 - p.beta1);
    let v1 = v[i] * p.beta2 + (1.0 - p.beta2) * g * g;
    m[i] = m1;
    v[i] = v1;
    let denom = sqrt(v1) / sqrt(p.bias_correction2) + p.eps;
    param[i] = w + (-(p.lr / p.bias_correction1) * m1) / denom;
}
