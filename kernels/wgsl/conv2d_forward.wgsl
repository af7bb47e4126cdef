// x: (n, c_in, h, w)  weight: (c_out, c_in, kh, kw)  out: (n, c_out, h_out, w_out)
// out[b, co, oy, ox] = sum_{ci, ky, kx} weight[co, ci, ky, kx] * x[b, ci, oy*s + ky - pad, ox*s + kx - pad]
// (zero outside x), as PyTorch's conv2d without bias.
//
// Implicit GEMM: out (c_out, n * P) = weight (c_out, K) . cols (K, n * P) with K = c_in*kh*kw,
// P = h_out*w_out, and cols gathered from x as it is loaded (no im2col buffer).
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
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

const TILE: u32 = 64u; // rows and columns of the output tile of one workgroup
const BK: u32 = 16u; // depth of one step along the reduction axis
const LD: u32 = 65u; // padded row of the k-major tiles: fewer bank conflicts on store

// tile_a[kk * LD + row], tile_b[kk * LD + col]: one BK-deep slice of each operand.
var<workgroup> tile_a: array<f32, 1040>;
var<workgroup> tile_b: array<f32, 1040>;

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
    let b = col / plane;
    let pix = col % plane;
    let khw = p.kh * p.kw;
    let ci = kk / khw;
    let r = kk % khw;
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
    var acc: array<f32, 16>;
    for (var k0 = k_begin; k0 < k_end; k0 += BK) {
        // Each thread stages 4 values of each operand, walking the operand's memory order
        // so that neighbouring threads read neighbouring words.
        for (var l = 0u; l < 4u; l++) {
            let e = tid + l * 256u;
            let ra = e / BK;
            let ka = e % BK;
            tile_a[ka * LD + ra] = load_a(row0 + ra, k0 + ka, k_end);
            let cb = e % TILE;
            let kb = e / TILE;
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
                let plane = p.h_out * p.w_out;
                out[((col / plane) * p.c_out + row) * plane + col % plane] = acc[i * 4u + j];
            }
        }
    }
}
