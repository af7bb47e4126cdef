// The implicit GEMM of a conv's weight gradient, for conv2d_backward_weight.wgsl and
// conv2d_pool_backward_weight.wgsl. The kernel's own file declares the bindings (`x`,
// `grad_weight` and what `grad_at` reads) and `fn grad_at(b, co, oy, ox) -> f32`, the
// gradient of the conv's output at that position.
//
// x: (n, c_in, h, w)  grad_out: (n, c_out, h_out, w_out)
// grad_weight: (splits, c_out, c_in * kh * kw) with splits = ceil(n * h_out * w_out / K_CHUNK)
// out[b, co, oy, ox] = sum weight[co, ci, ky, kx] * x[b, ci, oy*s + ky - pad, ox*s + kx - pad]
//   =>  dL/dweight[co, ci, ky, kx] = sum_{b, oy, ox} dL/dout[b, co, oy, ox] * x[b, ci, oy*s + ky - pad, ox*s + kx - pad]
//
// Implicit GEMM: grad_weight (c_out, K) = g (c_out, n * P) . colsT (n * P, K) with K = c_in*kh*kw,
// P = h_out*w_out. The reduction over n * P is long and the output small, so it is split
// into K_CHUNK-long pieces, one partial per piece (the launcher sums them with sum_axis,
// in a fixed order: deterministic). With one piece, it is the weight gradient itself.
//
// The tiling is lib/gemm_tile.wgsl's and the gather lib/conv_input.wgsl's (prepended, with
// lib/params.wgsl: kernels/src/registry.rs); this file supplies load_a, load_b and where the
// 4 x 4 blocks go.

// The length of each piece of the reduction; kernels/src/plan.rs repeats it.
const K_CHUNK: u32 = 1024u;

// g[co, kk = (b, oy, ox)] = dL/dout[b, co, oy, ox], zero outside.
fn load_a(co: u32, kk: u32, k_end: u32) -> f32 {
    if (co >= p.c_out || kk >= k_end) {
        return 0.0;
    }
    let pix = kk % (p.h_out * p.w_out);
    return grad_at(kk / (p.h_out * p.w_out), co, pix / p.w_out, pix % p.w_out);
}

// colsT[kk = (b, oy, ox), col = (ci, ky, kx)] = x[b, ci, oy*s + ky - pad, ox*s + kx - pad].
fn load_b(kk: u32, col: u32, k_end: u32) -> f32 {
    let khw = p.kh * p.kw;
    if (kk >= k_end || col >= p.c_in * khw) {
        return 0.0;
    }
    let plane = p.h_out * p.w_out;
    let pix = kk % plane;
    return conv_input(kk / plane, col, pix / p.w_out, pix % p.w_out);
}

@compute @workgroup_size(16, 16)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) tid: u32,
) {
    let rows = p.c_out;
    let cols = p.c_in * p.kh * p.kw;
    let tiles_n = (cols + TILE - 1u) / TILE;
    let tiles = tiles_n * ((rows + TILE - 1u) / TILE);
    // The grid may be split in two dimensions past 65,535 workgroups: see launch.rs.
    let wid = wg.x + wg.y * nwg.x;
    let k_total = p.n * p.h_out * p.w_out;
    let splits = (k_total + K_CHUNK - 1u) / K_CHUNK;
    if (wid >= tiles * splits) {
        return;
    }
    let split = wid / tiles;
    let tile = wid % tiles;
    let k_begin = split * K_CHUNK;
    let k_end = min(k_begin + K_CHUNK, k_total);
    let row0 = tile / tiles_n * TILE;
    let col0 = tile % tiles_n * TILE;
    let acc = gemm_tile(row0, col0, k_begin, k_end, false, false, lid, tid);
    for (var i = 0u; i < 4u; i++) {
        for (var j = 0u; j < 4u; j++) {
            let row = row0 + lid.y + 16u * i;
            let col = col0 + lid.x + 16u * j;
            if (row < rows && col < cols) {
                grad_weight[(split * rows + row) * cols + col] = acc[i * 4u + j];
            }
        }
    }
}
