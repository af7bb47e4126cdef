// grad_out, argmax: (n, c, h_out, w_out)  grad_x: (n, c, h, w)
// out[j] = x[argmax[j]]  =>  dL/dx[i] = sum_{j : argmax[j] = i} dL/dout[j]
// One thread per input value gathers from the windows that contain it (they overlap when
// stride < kernel), in output order: no atomics, deterministic, grad_x overwritten.

@group(0) @binding(0) var<uniform> p: Pool2dParams;
@group(0) @binding(1) var<storage, read> grad_out: array<f32>;
@group(0) @binding(2) var<storage, read> argmax: array<u32>;
@group(0) @binding(3) var<storage, read_write> grad_x: array<f32>;

// The windows o (along one axis) with o * stride <= pos < o * stride + kernel.
fn windows(pos: u32, n_out: u32) -> vec2<u32> {
    var first = 0u;
    if (pos + 1u > p.kernel) {
        first = (pos + 1u - p.kernel + p.stride - 1u) / p.stride;
    }
    let last = min(pos / p.stride + 1u, n_out);
    return vec2<u32>(first, last);
}

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    // The grid may be split in two dimensions past 65,535 workgroups: see launch.rs.
    let i = gid.x + gid.y * nwg.x * 256u;
    let in_plane = p.h * p.w;
    if (i >= p.n * p.c * in_plane) {
        return;
    }
    let plane = i / in_plane;
    let j = i % in_plane;
    let ys = windows(j / p.w, p.h_out);
    let xs = windows(j % p.w, p.w_out);
    let base = plane * p.h_out * p.w_out;
    var acc = 0.0;
    for (var oy = ys.x; oy < ys.y; oy++) {
        for (var ox = xs.x; ox < xs.y; ox++) {
            let o = base + oy * p.w_out + ox;
            if (argmax[o] == j) {
                acc += grad_out[o];
            }
        }
    }
    grad_x[i] = acc;
}
