// grad_out: (outer, channels, inner)  grad_bias: (channels)
// out[o, c, i] = x[o, c, i] + bias[c]  =>  dL/dbias[c] = sum_{o, i} dL/dout[o, c, i]
// One workgroup per channel: each thread sums a strided share of the (o, i) pairs, then a
// tree in workgroup memory adds the 256 partials in a fixed order (deterministic).

@group(0) @binding(0) var<uniform> p: AxisParams;
@group(0) @binding(1) var<storage, read> grad_out: array<f32>;
@group(0) @binding(2) var<storage, read_write> grad_bias: array<f32>;

var<workgroup> partial: array<f32, 256>;

@compute @workgroup_size(256)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) tid: u32,
) {
    // The grid may be split in two dimensions past 65,535 workgroups: see launch.rs.
    let c = wg.x + wg.y * nwg.x;
    if (c >= p.channels) {
        return;
    }
    let count = p.outer * p.inner;
    var acc = 0.0;
    for (var j = tid; j < count; j += 256u) {
        let o = j / p.inner;
        acc += grad_out[(o * p.channels + c) * p.inner + j % p.inner];
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
        grad_bias[c] = partial[0];
    }
}
