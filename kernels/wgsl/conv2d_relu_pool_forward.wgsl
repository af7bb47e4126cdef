// x: (n, c_in, h, w)  weight: (c_out, c_in, kh, kw)  bias: (c_out)
// out, argmax: (n, c_out, h_out / 2, w_out / 2)
// z = conv2d(x, weight) + bias; out = the 2 x 2, stride-2 max-pool of relu(z), and argmax the
// winner's index oy * w_out + ox in its (h_out, w_out) plane (ties to the first in row-major
// order, a NaN wins), as conv2d_forward, bias_forward, relu_forward and max_pool2d_forward
// give in turn. z itself is never stored.
//
// conv2d_forward's implicit GEMM, out (c_out, 4 * pooled outputs) = weight . cols, with the
// columns reordered so that one thread holds a whole pooling window: the 64 columns of a
// tile are 16 pooled outputs times their 4 window positions, column col0 + t + 16 q being
// position q (row-major) of pooled output col0 / 4 + t. So the 4 accumulators acc[i * 4 + j],
// j = 0..3, of thread lid.x (lib/gemm_tile.wgsl) are one window, pooled in registers; x is
// read through lib/conv_input.wgsl.

@group(0) @binding(0) var<uniform> p: Conv2dParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<storage, read_write> argmax: array<u32>;

// Pooled outputs per (h_out, w_out) plane.
fn pooled_plane() -> u32 {
    return (p.h_out / 2u) * (p.w_out / 2u);
}

// weight (c_out, K)[co, kk], zero outside.
fn load_a(co: u32, kk: u32, k_end: u32) -> f32 {
    if (co >= p.c_out || kk >= k_end) {
        return 0.0;
    }
    return weight[co * p.c_in * p.kh * p.kw + kk];
}

// cols[kk = (ci, ky, kx), col] with col = window position q of pooled output `pooled` (above):
// x[b, ci, oy*s + ky - pad, ox*s + kx - pad] at the conv output (oy, ox) that q names.
fn load_b(kk: u32, col: u32, k_end: u32) -> f32 {
    let pooled = col / TILE * 16u + col % 16u;
    let plane = pooled_plane();
    if (kk >= k_end || pooled >= p.n * plane) {
        return 0.0;
    }
    let q = col % TILE / 16u;
    let b = pooled / plane;
    let pix = pooled % plane;
    let w_pooled = p.w_out / 2u;
    return conv_input(b, kk, pix / w_pooled * 2u + q / 2u, pix % w_pooled * 2u + q % 2u);
}

@compute @workgroup_size(16, 16)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) tid: u32,
) {
    let rows = p.c_out;
    let plane = pooled_plane();
    let outputs = p.n * plane;
    let tiles_n = (outputs + 15u) / 16u;
    let tiles = tiles_n * ((rows + TILE - 1u) / TILE);
    // The grid may be split in two dimensions past 65,535 workgroups: see launch.rs.
    let wid = wg.x + wg.y * nwg.x;
    if (wid >= tiles) {
        return;
    }
    let row0 = wid / tiles_n * TILE;
    let col0 = wid % tiles_n * TILE;
    let acc = gemm_tile(row0, col0, 0u, p.c_in * p.kh * p.kw, false, true, lid, tid);
    let pooled = col0 / 4u + lid.x;
    if (pooled >= outputs) {
        return;
    }
    let b = pooled / plane;
    let pix = pooled % plane;
    let w_pooled = p.w_out / 2u;
    for (var i = 0u; i < 4u; i++) {
        let row = row0 + lid.y + 16u * i;
        if (row < rows) {
            // Row-major order inside the window: (0,0), (0,1), (1,0), (1,1).
            var best = 0.0;
            var at = 0u;
            for (var j = 0u; j < 4u; j++) {
                let biased = acc[i * 4u + j] + bias[row];
                let v = select(biased, 0.0, biased < 0.0);
                if (j == 0u || v > best || (v != v && best == best)) {
                    best = v;
                    at = j;
                }
            }
            let oy = pix / w_pooled * 2u + at / 2u;
            let ox = pix % w_pooled * 2u + at % 2u;
            let index = (b * p.c_out + row) * plane + pix;
            out[index] = best;
            argmax[index] = oy * p.w_out + ox;
        }
    }
}
