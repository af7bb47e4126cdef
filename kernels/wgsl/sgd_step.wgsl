// param, grad, velocity: (len)
// PyTorch's SGD: g = grad + wd * param; v = momentum * v + g; param -= lr * v
// (param -= lr * g, velocity untouched, when momentum == 0)

@group(0) @binding(0) var<uniform> p: SgdParams;
@group(0) @binding(1) var<storage, read_write> param: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> velocity: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    // The grid may be split in two dimensions past 65,535 workgroups: see launch.rs.
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.len) {
        return;
    }
    let w = param[i];
    var g = grad[i];
    if (p.weight_decay != 0.0) {
        g += p.weight_decay * w;
    }
    if (p.momentum != 0.0) {
        g = velocity[i] * p.momentum + g;
        velocity[i] = g;
    }
    param[i] = w + -p.lr * g;
}
