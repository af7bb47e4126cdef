// x: (n, c_in, h, w)  weight: (c_out, c_in, kh, kw)  out: (n, c_out, h_out, w_out)
// out[b, co, oy, ox] = sum_{ci, ky, kx} weight[co, ci, ky, kx] * x[b, ci, oy*s + ky - pad, ox*s + kx - pad]
// (zero outside x), as PyTorch's conv2d without bias.
//
// Implicit GEMM: out (c_out, n * P) = weight (c_out, K) . cols (K, n * P) with K = c_in*kh*kw,
// P = h_out*w_out, and cols gathered from x as it is loaded (no im2col buffer).
//
// The tiling is lib/gemm_tile.wgsl's and the gather lib/conv_input.wgsl's (prepended, with
// lib/params.wgsl: kernels/src/registry.rs); this file supplies load_a, load_b and where the
// 4 x 4 blocks go.

@group(0) @binding(0) var<uniform> p: Conv2dParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

// weight (c_out, K)[co, kk], zero outside.
fn load_a(co: u32, kk: u32, k_end: u32) -> f32 {
    if (co >= p.c_out || kk >= k_end) {
        return 0.0;
    }
    return weight[co * p.c_in * p.kh * p.kw + kk];
}

// cols[kk = (ci, ky, kx), col = (b, oy, ox)] = x[b, ci, oy*s + ky - pad, ox*s + kx - pad].
fn load_b(kk: u32, col: u32, k_end: u32) -> f32 {
    let plane = p.h_out * p.w_out;
    if (kk >= k_end || col >= p.n * plane) {
        return 0.0;
    }
    let pix = col % plane;
    return conv_input(col / plane, kk, pix / p.w_out, pix % p.w_out);
}

@compute @workgroup_size(16, 16)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) tid: u32,
) {
    let rows = p.c_out;
    let cols = p.n * p.h_out * p.w_out;
    let tiles_n = (cols + TILE - 1u) / TILE;
    let tiles = tiles_n * ((rows + TILE - 1u) / TILE);
    // The grid may be split in two dimensions past 65,535 workgroups: see launch.rs.
    let wid = wg.x + wg.y * nwg.x;
    if (wid >= tiles) {
        return;
    }
    let tile = wid;
    let k_begin = 0u;
    let k_end = p.c_in * p.kh * p.kw;
    let row0 = tile / tiles_n * TILE;
    let col0 = tile % tiles_n * TILE;
    let acc = gemm_tile(row0, col0, k_begin, k_end, false, true, lid, tid);
    for (var i = 0u; i < 4u; i++) {
        for (var j = 0u; j < 4u; j++) {
            let row = row0 + lid.y + 16u * i;
            let col = col0 + lid.x + 16u * j;
            if (row < rows && col < cols) {
                let plane = p.h_out * p.w_out;
                out[((col / plane) * p.c_out + row) * plane + col % plane] = acc[i * 4u + j];
            }
        }
    }
}
