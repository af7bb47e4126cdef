// The implicit GEMM of a conv's input gradient, for conv2d_backward_input.wgsl and
// conv2d_pool_backward_input.wgsl. The kernel's own file declares the bindings (`weight`,
// `grad_x` and what `grad_at` reads) and `fn grad_at(b, co, oy, ox) -> f32`, the gradient
// of the conv's output at that position.
//
// grad_out: (n, c_out, h_out, w_out)  weight: (c_out, c_in, kh, kw)  grad_x: (n, c_in, h, w)
// out[b, co, oy, ox] = sum weight[co, ci, ky, kx] * x[b, ci, oy*s + ky - pad, ox*s + kx - pad]
//   =>  dL/dx[b, ci, iy, ix] = sum_{co, ky, kx} weight[co, ci, ky, kx] * dL/dout[b, co, oy, ox]
//       over the (oy, ox) with oy*s + ky - pad = iy and ox*s + kx - pad = ix.
// grad_x is overwritten.
//
// Implicit GEMM: grad_x (c_in, n * h * w) = weightT (c_in, K) . g (K, n * h * w) with
// K = c_out*kh*kw and g[(co, ky, kx), (b, iy, ix)] = dL/dout at the (oy, ox) above, or 0 when
// (iy + pad - ky) is not a multiple of the stride or falls outside the output.
//
// The tiling is lib/gemm_tile.wgsl's (prepended, with lib/params.wgsl: kernels/src/registry.rs);
// this file supplies load_a, load_b and where the 4 x 4 blocks go.

// weightT[ci, kk = (co, ky, kx)] = weight[co, ci, ky, kx], zero outside.
fn load_a(ci: u32, kk: u32, k_end: u32) -> f32 {
    if (ci >= p.c_in || kk >= k_end) {
        return 0.0;
    }
    let khw = p.kh * p.kw;
    return weight[((kk / khw) * p.c_in + ci) * khw + kk % khw];
}

// The output position (oy or ox) that tap k of a window at stride s reads from input
// position i, or -1 if none.
fn source(i: u32, k: u32, n_out: u32) -> i32 {
    let t = i32(i + p.pad) - i32(k);
    if (t < 0 || t % i32(p.stride) != 0) {
        return -1;
    }
    let o = t / i32(p.stride);
    return select(-1, o, o < i32(n_out));
}

// g[kk = (co, ky, kx), col = (b, iy, ix)], zero outside.
fn load_b(kk: u32, col: u32, k_end: u32) -> f32 {
    let plane = p.h * p.w;
    if (kk >= k_end || col >= p.n * plane) {
        return 0.0;
    }
    let b = col / plane;
    let pix = col % plane;
    let khw = p.kh * p.kw;
    let co = kk / khw;
    let r = kk % khw;
    let oy = source(pix / p.w, r / p.kw, p.h_out);
    let ox = source(pix % p.w, r % p.kw, p.w_out);
    if (oy < 0 || ox < 0) {
        return 0.0;
    }
    return grad_at(b, co, u32(oy), u32(ox));
}

@compute @workgroup_size(16, 16)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) tid: u32,
) {
    let rows = p.c_in;
    let cols = p.n * p.h * p.w;
    let tiles_n = (cols + TILE - 1u) / TILE;
    let tiles = tiles_n * ((rows + TILE - 1u) / TILE);
    // The grid may be split in two dimensions past 65,535 workgroups: see launch.rs.
    let wid = wg.x + wg.y * nwg.x;
    if (wid >= tiles) {
        return;
    }
    let tile = wid;
    let k_begin = 0u;
    let k_end = p.c_out * p.kh * p.kw;
    let row0 = tile / tiles_n * TILE;
    let col0 = tile % tiles_n * TILE;
    let acc = gemm_tile(row0, col0, k_begin, k_end, false, true, lid, tid);
    for (var i = 0u; i < 4u; i++) {
        for (var j = 0u; j < 4u; j++) {
            let row = row0 + lid.y + 16u * i;
            let col = col0 + lid.x + 16u * j;
            if (row < rows && col < cols) {
                let plane = p.h * p.w;
                grad_x[((col / plane) * p.c_in + row) * plane + col % plane] = acc[i * 4u + j];
            }
        }
    }
}
