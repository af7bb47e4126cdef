// x: (n, c_in, h, w)  grad_out: (n, c_out, h_out, w_out)
// partial: (splits, c_out, c_in * kh * kw) with splits = ceil(n * h_out * w_out / K_CHUNK)
// out[b, co, oy, ox] = sum weight[co, ci, ky, kx] * x[b, ci, oy*s + ky - pad, ox*s + kx - pad]
//   =>  dL/dweight[co, ci, ky, kx] = sum_{b, oy, ox} dL/dout[b, co, oy, ox] * x[b, ci, oy*s + ky - pad, ox*s + kx - pad]
//
// Implicit GEMM: grad_weight (c_out, K) = g (c_out, n * P) . colsT (n * P, K) with K = c_in*kh*kw,
// P = h_out*w_out. The reduction over n * P is long and the output small, so it is split
// into K_CHUNK-long pieces, one partial per piece (the launcher sums them with sum_axis,
// in a fixed order: deterministic). With one piece, partial is grad_weight itself.
//
// Tiling (shared by matmul and the conv2d kernels): a workgroup of 16 x 16 threads owns a
// 64 x 64 tile of the output; per BK-deep step it stages both operands in workgroup memory,
// and each thread accumulates a 4 x 4 block in registers, rows ty + 16 i and columns
// tx + 16 j, so that neighbouring threads write neighbouring columns. Loads are bounds
// checked (zero outside), so any m, n, k works.

struct Conv2dParams {
    n: u32,
    c_in: u32,
    h: u32,
    w: u32,
    c_out: u32,
    kh: u32,
    kw: u32,
    stride: u32,
    pad: u32,
    h_out: u32,
    w_out: u32,
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> p: Conv2dParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> grad_out: array<f32>;
@group(0) @binding(3) var<storage, read_write> partial: array<f32>;

const TILE: u32 = 64u; // rows and columns of the output tile of one workgroup
const BK: u32 = 16u; // depth of one step along the reduction axis
const LD: u32 = 65u; // padded row of the k-major tiles: fewer bank conflicts on store

// tile_a[kk * LD + row], tile_b[kk * LD + col]: one BK-deep slice of each operand.
var<workgroup> tile_a: array<f32, 1040>;
var<workgroup> tile_b: array<f32, 1040>;

// The length of each piece of the reduction; kernels::gpu::conv2d repeats it.
const K_CHUNK: u32 = 1024u;

// g[co, kk = (b, oy, ox)] = dL/dout[b, co, oy, ox], zero outside.
fn load_a(co: u32, kk: u32, k_end: u32) -> f32 {
    if (co >= p.c_out || kk >= k_end) {
        return 0.0;
    }
    let plane = p.h_out * p.w_out;
    return grad_out[((kk / plane) * p.c_out + co) * plane + kk % plane];
}

// colsT[kk = (b, oy, ox), col = (ci, ky, kx)] = x[b, ci, oy*s + ky - pad, ox*s + kx - pad].
fn load_b(kk: u32, col: u32, k_end: u32) -> f32 {
    let khw = p.kh * p.kw;
    if (kk >= k_end || col >= p.c_in * khw) {
        return 0.0;
    }
    let plane = p.h_out * p.w_out;
    let b = kk / plane;
    let pix = kk % plane;
    let ci = col / khw;
    let r = col % khw;
    let iy = i32((pix / p.w_out) * p.stride + r / p.kw) - i32(p.pad);
    let ix = i32((pix % p.w_out) * p.stride + r % p.kw) - i32(p.pad);
    if (iy < 0 || ix < 0 || iy >= i32(p.h) || ix >= i32(p.w)) {
        return 0.0;
    }
    return x[((b * p.c_in + ci) * p.h + u32(iy)) * p.w + u32(ix)];
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
    var acc: array<f32, 16>;
    for (var k0 = k_begin; k0 < k_end; k0 += BK) {
        // Each thread stages 4 values of each operand, walking the operand's memory order
        // so that neighbouring threads read neighbouring words.
        for (var l = 0u; l < 4u; l++) {
            let e = tid + l * 256u;
            let ra = e / BK;
            let ka = e % BK;
            tile_a[ka * LD + ra] = load_a(row0 + ra, k0 + ka, k_end);
            let cb = e / BK;
            let kb = e % BK;
            tile_b[kb * LD + cb] = load_b(k0 + kb, col0 + cb, k_end);
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            var a_reg: array<f32, 4>;
            var b_reg: array<f32, 4>;
            for (var i = 0u; i < 4u; i++) {
                a_reg[i] = tile_a[kk * LD + lid.y + 16u * i];
                b_reg[i] = tile_b[kk * LD + lid.x + 16u * i];
            }
            for (var i = 0u; i < 4u; i++) {
                for (var j = 0u; j < 4u; j++) {
                    acc[i * 4u + j] = fma(a_reg[i], b_reg[j], acc[i * 4u + j]);
                }
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i++) {
        for (var j = 0u; j < 4u; j++) {
            let row = row0 + lid.y + 16u * i;
            let col = col0 + lid.x + 16u * j;
            if (row < rows && col < cols) {
                partial[(split * rows + row) * cols + col] = acc[i * 4u + j];
            }
        }
    }
}
