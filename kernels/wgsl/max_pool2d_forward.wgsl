// x: (n, c, h, w)  out, argmax: (n, c, h_out, w_out)   h_out = (h - kernel) / stride + 1
// out = max of each kernel x kernel window at (oy * stride, ox * stride); argmax = the
// winner's index row * w + col within its (h, w) plane.
// NOTE: ties go to the first in row-major order (a later value must be strictly greater),
// and a NaN wins over any number, as kernels::cpu::max_pool2d_forward.

@group(0) @binding(0) var<uniform> p: Pool2dParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<storage, read_write> argmax: array<u32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    // The grid may be split in two dimensions past 65,535 workgroups: see launch.rs.
    let i = gid.x + gid.y * nwg.x * 256u;
    let out_plane = p.h_out * p.w_out;
    if (i >= p.n * p.c * out_plane) {
        return;
    }
    let plane = i / out_plane;
    let o = i % out_plane;
    let y0 = (o / p.w_out) * p.stride;
    let x0 = (o % p.w_out) * p.stride;
    let base = plane * p.h * p.w;
    var best = y0 * p.w + x0;
    var best_v = x[base + best];
    for (var row = y0; row < y0 + p.kernel; row++) {
        for (var col = x0; col < x0 + p.kernel; col++) {
            let j = row * p.w + col;
            let v = x[base + j];
            if (v > best_v || (v != v && best_v == best_v)) {
                best = j;
                best_v = v;
            }
        }
    }
    out[i] = best_v;
    argmax[i] = best;
}
