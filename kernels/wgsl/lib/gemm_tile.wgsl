// The tiled inner product shared by matmul and the four conv kernels (prepended to them:
// kernels/src/registry.rs). A workgroup of 16 x 16 threads owns a 64 x 64 tile of the output;
// per BK-deep step it stages both operands in workgroup memory, and each thread accumulates
// a 4 x 4 block in registers, rows ty + 16 i and columns tx + 16 j, so that neighbouring
// threads write neighbouring columns. The kernel supplies the operands as
//   load_a(row, kk, k_end) = op(a)[row, kk]  and  load_b(kk, col, k_end) = op(b)[kk, col],
// bounds checked (zero outside), so any m, n, k works.

const TILE: u32 = 64u; // rows and columns of the output tile of one workgroup
const BK: u32 = 16u; // depth of one step along the reduction axis
const LD: u32 = 65u; // padded row of the k-major tiles: fewer bank conflicts on store

// tile_a[kk * LD + row], tile_b[kk * LD + col]: one BK-deep slice of each operand.
var<workgroup> tile_a: array<f32, 1040>;
var<workgroup> tile_b: array<f32, 1040>;

// The 4 x 4 block of the tile at (row0, col0) that thread `lid` owns, summed over
// kk in [k_begin, k_end): acc[i * 4 + j] is output (row0 + lid.y + 16 i, col0 + lid.x + 16 j).
// Each thread stages 4 values of each operand per step, walking the operand's memory
// order so that neighbouring threads read neighbouring words: `a_rows_fastest` when a's
// rows are adjacent in memory (a stored k-major), `b_cols_fastest` when b's columns are.
// Must be called in uniform control flow (it has barriers).
fn gemm_tile(
    row0: u32,
    col0: u32,
    k_begin: u32,
    k_end: u32,
    a_rows_fastest: bool,
    b_cols_fastest: bool,
    lid: vec3<u32>,
    tid: u32,
) -> array<f32, 16> {
    var acc: array<f32, 16>;
    for (var k0 = k_begin; k0 < k_end; k0 += BK) {
        for (var l = 0u; l < 4u; l++) {
            let e = tid + l * 256u;
            let ra = select(e / BK, e % TILE, a_rows_fastest);
            let ka = select(e % BK, e / TILE, a_rows_fastest);
            tile_a[ka * LD + ra] = load_a(row0 + ra, k0 + ka, k_end);
            let cb = select(e / BK, e % TILE, b_cols_fastest);
            let kb = select(e % BK, e / TILE, b_cols_fastest);
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
    return acc;
}
