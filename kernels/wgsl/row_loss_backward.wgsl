// grad_rows, grad: (len)  upstream: (1)
// loss = (1 / rows) sum_r loss_r  =>  dL/dlogits = upstream * grad_r / rows,
// with grad_r = d loss_r / d logits_r written by the loss kernel and p.alpha = 1 / rows

@group(0) @binding(0) var<uniform> p: ElementwiseParams;
@group(0) @binding(1) var<storage, read> grad_rows: array<f32>;
@group(0) @binding(2) var<storage, read> upstream: array<f32>;
@group(0) @binding(3) var<storage, read_write> grad: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    // The grid may be split in two dimensions past 65,535 workgroups: see launch.rs.
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.len) {
        return;
    }
    grad[i] = (grad_rows[i] * upstream[0]) * p.alpha;
}
