// a: (m, k), or (k, m) when trans_a == 1;  b: (k, n), or (n, k) when trans_b == 1
// c: (m, n), all row-major
// c = op(a) . op(b), or c += op(a) . op(b) when accumulate == 1
// (c is a scratch of partial products when the reduction is split: see k_splits)
//
// The tiling is lib/gemm_tile.wgsl's (prepended, with lib/params.wgsl: kernels/src/registry.rs);
// this file supplies load_a, load_b and where the 4 x 4 blocks go.

@group(0) @binding(0) var<uniform> p: MatmulParams;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

// NOTE: kernels::gpu::matmul repeats these two constants and k_splits.
const K_CHUNK: u32 = 256u; // length of one piece of a split reduction
const FEW_TILES: u32 = 64u; // below this many output tiles, long reductions are split

// Split-k: with few output tiles a long k would leave most of the GPU idle, so the
// reduction is cut into K_CHUNK-long pieces, each workgroup computing one piece of one
// tile. Then c is bound to a scratch buffer of (splits + accumulate) slices of (m, n):
// piece s writes slice s + accumulate (slice 0 holds the old c when accumulating), and
// the launcher adds the slices in order with sum_axis (deterministic).
fn k_splits(tiles: u32) -> u32 {
    if (tiles >= FEW_TILES || p.k <= K_CHUNK) {
        return 1u;
    }
    return (p.k + K_CHUNK - 1u) / K_CHUNK;
}

// op(a)[row, kk], zero outside.
fn load_a(row: u32, kk: u32, k_end: u32) -> f32 {
    if (row >= p.m || kk >= k_end) {
        return 0.0;
    }
    if (p.trans_a == 1u) {
        return a[kk * p.m + row];
    }
    return a[row * p.k + kk];
}

// op(b)[kk, col], zero outside.
fn load_b(kk: u32, col: u32, k_end: u32) -> f32 {
    if (kk >= k_end || col >= p.n) {
        return 0.0;
    }
    if (p.trans_b == 1u) {
        return b[col * p.k + kk];
    }
    return b[kk * p.n + col];
}

@compute @workgroup_size(16, 16)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) tid: u32,
) {
    let rows = p.m;
    let cols = p.n;
    let tiles_n = (cols + TILE - 1u) / TILE;
    let tiles = tiles_n * ((rows + TILE - 1u) / TILE);
    let splits = k_splits(tiles);
    // The grid may be split in two dimensions past 65,535 workgroups: see launch.rs.
    let wid = wg.x + wg.y * nwg.x;
    if (wid >= tiles * splits) {
        return;
    }
    let split = wid / tiles;
    let tile = wid % tiles;
    let k_begin = split * K_CHUNK;
    let k_end = select(p.k, min(k_begin + K_CHUNK, p.k), splits > 1u);
    let row0 = tile / tiles_n * TILE;
    let col0 = tile % tiles_n * TILE;
    let acc = gemm_tile(row0, col0, k_begin, k_end, p.trans_a == 1u, p.trans_b == 0u, lid, tid);
    for (var i = 0u; i < 4u; i++) {
        for (var j = 0u; j < 4u; j++) {
            let row = row0 + lid.y + 16u * i;
            let col = col0 + lid.x + 16u * j;
            if (row < rows && col < cols) {
                let idx = row * p.n + col;
                var v = acc[i * 4u + j];
                if (splits > 1u) {
                    // Slice 0 holds the old c when accumulating: see k_splits.
                    c[(split + p.accumulate) * rows * cols + idx] = v;
                } else {
                    if (p.accumulate == 1u) {
                        v += c[idx];
                    }
                    c[idx] = v;
                }
            }
        }
    }
}
