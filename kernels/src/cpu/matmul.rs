//! Matrix multiply in its transpose forms: `c = op(a) · op(b)` (see [`MatmulParams`]).
//!
//! `a: (m, k)` or, with `trans_a`, `(k, m)`; `b: (k, n)` or, with `trans_b`, `(n, k)`;
//! `c: (m, n)`; all row-major.
//!
//! The blocked path is GotoBLAS/BLIS-shaped. `c` is cut into tiles of at most
//! `MC_MAX` rows by `NC_MAX` columns; one rayon task owns one tile for the whole of `k`,
//! so no two threads ever write the same value and the order of the additions into each
//! value does not depend on the thread count. A task walks `k` in blocks of at most
//! `KC_MAX`: it packs its columns of `op(b)` into `NR`-column slivers and its rows of
//! `op(a)` into `MR`-row slivers (the transposes are taken here, so every form runs the
//! same inner loop), then runs an `MR × NR` register-tiled micro-kernel over every pair
//! of slivers, each `a` sliver against the whole `b` block. Slivers are zero-padded to
//! full width, so the micro-kernel's inner loop never branches on edges; only its final
//! store clips to the tile.
//!
//! Micro-kernels: 16 × 16 on AVX-512F (sixteen 16-wide accumulators), 6 × 16 on
//! AVX2 + FMA, and a portable 4 × 8 one left to the auto-vectoriser elsewhere. Products
//! of up to `DIRECT_MAX_MACS` multiply-adds skip all of this for a plain loop, one-row
//! products (a batch of one through a linear layer) for dot products that read `b` once,
//! and those below `PARALLEL_MIN_MACS` stay on the calling thread.

use super::isa::Isa;
use super::vmath::on_widest_vectors;
use crate::error::{words, words_mut, KernelError};
use crate::params::*;
use bytemuck::{Pod, Zeroable};
use rayon::prelude::*;
use std::cell::RefCell;
use std::ops::Range;

/// Rows of `c` per task. Only the `b` block must stay cached (below), so tiles are tall:
/// each task packs the `b` block once and reuses it for all of its rows.
const MC_MAX: usize = 512;
/// Columns of `c` per task: the packed `KC_MAX × NC_MAX` block of `op(b)` (256 KiB)
/// stays in L2 (1 MiB per core on the EPYC this was tuned on) while the `a` slivers pass.
const NC_MAX: usize = 256;
/// Depth of one packed block: an `a` sliver (`KC_MAX × MR` values, 16 KiB at `MR = 16`)
/// stays in the 32 KiB L1 while it meets every `b` sliver of the block.
const KC_MAX: usize = 256;
/// Up to this many multiply-adds, the plain triple loop beats packing.
const DIRECT_MAX_MACS: usize = 4 * 1024;
/// Below this many multiply-adds (64³), waking rayon costs more than it saves.
const PARALLEL_MIN_MACS: usize = 64 * 64 * 64;
/// Columns of `c` per task of a one-row product: 64 weight rows of a 784-input layer
/// are 200 KB, about as much as one task should stream.
const SINGLE_ROW_COLUMNS: usize = 64;

/// `Σ a[i]·b[i]` in 16 independent partial sums, which the loop keeps in one AVX-512
/// register (two AVX2 ones) under [`on_widest_vectors`], then added up in a fixed order.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 16;
    let mut sums = [0.0f32; LANES];
    let (a_blocks, b_blocks) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = a_blocks
        .remainder()
        .iter()
        .zip(b_blocks.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a_blocks.zip(b_blocks) {
        for i in 0..LANES {
            sums[i] += x[i] * y[i];
        }
    }
    sums.iter().sum::<f32>() + tail
}

/// `c = op(a) · op(b)`, or `c += op(a) · op(b)` with `p.accumulate == 1`.
///
/// Only the first `m·n` values of `c` are written. With `k == 0` the product is zero:
/// `c` is zeroed, or left as it is when accumulating.
pub fn matmul(a: &[f32], b: &[f32], c: &mut [f32], p: &MatmulParams) -> Result<(), KernelError> {
    matmul_on(Isa::active(), a, b, c, p)
}

fn matmul_on(
    isa: Isa,
    a: &[f32],
    b: &[f32],
    c: &mut [f32],
    p: &MatmulParams,
) -> Result<(), KernelError> {
    const OP: &str = "matmul";
    let (a, b) = (words(OP, "a", a, p.a_len())?, words(OP, "b", b, p.b_len())?);
    let c = words_mut(OP, "c", c, p.c_len())?;
    let g = Gemm::new(a, b, p);
    if g.m == 0 || g.n == 0 {
        return Ok(());
    }
    if g.k == 0 {
        if !g.accumulate {
            c.fill(0.0);
        }
        return Ok(());
    }
    if g.macs() <= DIRECT_MAX_MACS {
        g.direct(c);
    } else if g.m == 1 {
        g.single_row(c);
    } else {
        blocked_on(isa, &g, c);
    }
    Ok(())
}

/// The blocked product with `isa`'s micro-kernel.
fn blocked_on(isa: Isa, g: &Gemm, c: &mut [f32]) {
    assert!(
        isa.supported(),
        "matmul: {isa} is not supported by this CPU"
    );
    // SAFETY: each kernel is MR × NR as its module says, and the CPU has its target
    // features (asserted above).
    unsafe {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => g.blocked::<{ avx512::MR }, { avx512::NR }>(avx512::kernel, c),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => g.blocked::<{ avx2::MR }, { avx2::NR }>(avx2::kernel, c),
            Isa::Portable => g.blocked::<{ portable::MR }, { portable::NR }>(portable::kernel, c),
        }
    }
}

/// Where a micro-kernel writes: `rows × cols` values of `c` (at most `MR × NR`), rows
/// `ldc` apart.
#[derive(Clone, Copy)]
struct CTile {
    ptr: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
}

/// A micro-kernel: `c[i][j] (+)= Σ_{p < kc} a[p·MR + i] · b[p·NR + j]` for `i < c.rows`,
/// `j < c.cols`, adding to what `c` holds when `load_c`.
///
/// # Safety
/// `a` holds `kc·MR` values, `b` holds `kc·NR`, `c` is valid for reads and writes of
/// its `rows × cols` values, and the CPU has the kernel's target features.
type MicroKernel = unsafe fn(kc: usize, a: *const f32, b: *const f32, c: CTile, load_c: bool);

/// The problem with its shapes unpacked; `a` and `b` are the stored (untransposed) slices.
struct Gemm<'a> {
    a: &'a [f32],
    b: &'a [f32],
    m: usize,
    n: usize,
    k: usize,
    trans_a: bool,
    trans_b: bool,
    accumulate: bool,
}

impl<'a> Gemm<'a> {
    fn new(a: &'a [f32], b: &'a [f32], p: &MatmulParams) -> Self {
        let (m, n, k) = (p.m as usize, p.n as usize, p.k as usize);
        let (trans_a, trans_b, accumulate) = (p.trans_a == 1, p.trans_b == 1, p.accumulate == 1);
        Self {
            a,
            b,
            m,
            n,
            k,
            trans_a,
            trans_b,
            accumulate,
        }
    }

    /// Multiply-adds, saturated: `m·n·k` of three `u32`s can overflow even 64 bits.
    fn macs(&self) -> usize {
        self.m.saturating_mul(self.n).saturating_mul(self.k)
    }

    /// `m = 1`, one image through a linear layer at inference: `c = a · op(b)` reading
    /// `b` once and packing nothing (the blocked path would pack all of `b` for one row,
    /// which cost teacher-mlp's batch-1 forward 3× PyTorch's time). With `b` stored
    /// `(n, k)` and read transposed, as a linear layer's weight is, `c[j]` is the dot
    /// product of `a` with row `j`; otherwise `c` adds up the rows of `b`, each scaled by
    /// its `a[l]`. Columns are shared among tasks, so each `c[j]` has one fixed order of
    /// additions.
    fn single_row(&self, c: &mut [f32]) {
        let (n, k, accumulate) = (self.n, self.k, self.accumulate);
        // NOTE: for m = 1, op(a) is k contiguous values whether or not a is transposed.
        let a = &self.a[..k];
        let columns = |first: usize, c: &mut [f32]| {
            on_widest_vectors(
                #[inline(always)]
                || {
                    if self.trans_b {
                        let rows = self.b[first * k..].chunks_exact(k);
                        for (c_j, b_j) in c.iter_mut().zip(rows) {
                            let d = dot(a, b_j);
                            *c_j = if accumulate { *c_j + d } else { d };
                        }
                    } else {
                        if !accumulate {
                            c.fill(0.0);
                        }
                        for (l, &a_l) in a.iter().enumerate() {
                            let b_l = &self.b[l * n + first..][..c.len()];
                            for (c_j, &b_lj) in c.iter_mut().zip(b_l) {
                                *c_j += a_l * b_lj;
                            }
                        }
                    }
                },
            )
        };
        if self.macs() < PARALLEL_MIN_MACS {
            return columns(0, c);
        }
        c.par_chunks_mut(SINGLE_ROW_COLUMNS)
            .enumerate()
            .for_each(|(i, c)| columns(i * SINGLE_ROW_COLUMNS, c));
    }

    /// The triple loop, for products too small to repay packing.
    fn direct(&self, c: &mut [f32]) {
        let (m, n, k) = (self.m, self.n, self.k);
        for (i, c_row) in c.chunks_exact_mut(n).enumerate() {
            for (j, c_ij) in c_row.iter_mut().enumerate() {
                let mut acc = 0.0f32;
                for l in 0..k {
                    let a_il = if self.trans_a {
                        self.a[l * m + i]
                    } else {
                        self.a[i * k + l]
                    };
                    let b_lj = if self.trans_b {
                        self.b[j * k + l]
                    } else {
                        self.b[l * n + j]
                    };
                    acc += a_il * b_lj;
                }
                *c_ij = if self.accumulate { *c_ij + acc } else { acc };
            }
        }
    }

    /// The depth of the `k` blocks: as even as possible, at most `KC_MAX`.
    ///
    /// NOTE: it depends on `k` alone, never on the thread count or the tile, so every
    /// value of `c` sees the same additions in the same order: results are deterministic.
    fn kc_step(&self) -> usize {
        self.k.div_ceil(self.k.div_ceil(KC_MAX))
    }

    /// The packed, tiled, parallel path (see the module docs).
    ///
    /// # Safety
    /// `kernel` must be an `MR × NR` [`MicroKernel`] whose target features the CPU has.
    unsafe fn blocked<const MR: usize, const NR: usize>(&self, kernel: MicroKernel, c: &mut [f32]) {
        let parallel = self.macs() >= PARALLEL_MIN_MACS;
        let threads = if parallel {
            rayon::current_num_threads()
        } else {
            1
        };
        let (row_slivers, col_slivers) = (self.m.div_ceil(MR), self.n.div_ceil(NR));
        let grid = TileGrid::new(row_slivers, col_slivers, (MR, NR), threads);
        let a_len = grid.rows_per_tile * MR * self.kc_step();
        let b_len = grid.cols_per_tile * NR * self.kc_step();
        let c_ptr = SharedMut(c.as_mut_ptr());
        let run = |t: usize| {
            let (rows, cols) = grid.tile(t);
            let rows = rows.start * MR..(rows.end * MR).min(self.m);
            let cols = cols.start * NR..(cols.end * NR).min(self.n);
            with_pack_buffers(a_len, b_len, |a_buf, b_buf| {
                // SAFETY: `c` holds `m·n` values and the grid's tiles are disjoint, so
                // this task is alone in its tile; `kernel` is ours to call (contract).
                unsafe { self.tile::<MR, NR>(kernel, (a_buf, b_buf), rows, cols, c_ptr.get()) }
            })
        };
        if threads > 1 && grid.tiles() > 1 {
            (0..grid.tiles()).into_par_iter().for_each(run);
        } else {
            (0..grid.tiles()).for_each(run);
        }
    }

    /// Computes the tile `c[rows][cols]` over the whole of `k`.
    ///
    /// # Safety
    /// `c` points at `m·n` values of which no one else touches this tile meanwhile, and
    /// `kernel` is an `MR × NR` micro-kernel the CPU can run.
    unsafe fn tile<const MR: usize, const NR: usize>(
        &self,
        kernel: MicroKernel,
        (a_buf, b_buf): (&mut [f32], &mut [f32]),
        rows: Range<usize>,
        cols: Range<usize>,
        c: *mut f32,
    ) {
        let kc_step = self.kc_step();
        for pc in (0..self.k).step_by(kc_step) {
            let kc = kc_step.min(self.k - pc);
            let a_pack = self.pack_a::<MR>(a_buf, rows.clone(), pc, kc);
            let b_pack = self.pack_b::<NR>(b_buf, cols.clone(), pc, kc);
            let load_c = self.accumulate || pc > 0;
            // One a sliver (L1) meets every b sliver of the block (L2), writing a run of
            // MR rows of c, which keeps few pages of c in flight when n is large.
            for (ir, a_sliver) in rows.clone().step_by(MR).zip(a_pack.chunks_exact(kc * MR)) {
                for (jr, b_sliver) in cols.clone().step_by(NR).zip(b_pack.chunks_exact(kc * NR)) {
                    let (rows, cols) = (MR.min(rows.end - ir), NR.min(cols.end - jr));
                    // SAFETY: the slivers hold kc·MR and kc·NR values, and the
                    // rows × cols values of c at (ir, jr) lie inside our tile.
                    unsafe {
                        let c_ij = CTile {
                            ptr: c.add(ir * self.n + jr),
                            ldc: self.n,
                            rows,
                            cols,
                        };
                        kernel(kc, a_sliver.as_ptr(), b_sliver.as_ptr(), c_ij, load_c);
                    }
                }
            }
        }
    }

    /// Packs `op(a)[rows][pc..pc + kc]` into `MR`-row slivers, `kc·MR` values each.
    fn pack_a<'b, const MR: usize>(
        &self,
        buf: &'b mut [f32],
        rows: Range<usize>,
        pc: usize,
        kc: usize,
    ) -> &'b [f32] {
        let dst = &mut buf[..rows.len().div_ceil(MR) * kc * MR];
        for (first, sliver) in rows.clone().step_by(MR).zip(dst.chunks_exact_mut(kc * MR)) {
            let count = MR.min(rows.end - first);
            if self.trans_a {
                // a: (k, m), so the rows of op(a) lie side by side along a's rows.
                pack_contiguous::<MR>(sliver, self.a, self.m, first, count, pc, kc);
            } else {
                pack_transposing::<MR>(sliver, self.a, self.k, first, count, pc, kc);
            }
        }
        dst
    }

    /// Packs `op(b)[pc..pc + kc][cols]` into `NR`-column slivers, `kc·NR` values each.
    fn pack_b<'b, const NR: usize>(
        &self,
        buf: &'b mut [f32],
        cols: Range<usize>,
        pc: usize,
        kc: usize,
    ) -> &'b [f32] {
        let dst = &mut buf[..cols.len().div_ceil(NR) * kc * NR];
        for (first, sliver) in cols.clone().step_by(NR).zip(dst.chunks_exact_mut(kc * NR)) {
            let count = NR.min(cols.end - first);
            if self.trans_b {
                // b: (n, k), so each column of op(b) is one of b's rows.
                pack_transposing::<NR>(sliver, self.b, self.k, first, count, pc, kc);
            } else {
                pack_contiguous::<NR>(sliver, self.b, self.n, first, count, pc, kc);
            }
        }
        dst
    }
}

/// `dst[p·W + w] = src[(pc + p)·ld + first + w]` for `p < kc`, `w < count`; zero for
/// `count <= w < W`: runs of `W` neighbours along `kc` stored rows.
fn pack_contiguous<const W: usize>(
    dst: &mut [f32],
    src: &[f32],
    ld: usize,
    first: usize,
    count: usize,
    pc: usize,
    kc: usize,
) {
    let dst = dst.chunks_exact_mut(W).take(kc);
    if count == W {
        // NOTE: a copy of constant length W is a few vector moves; `..count` would be a
        // `memcpy` call for every row.
        for (p, d) in dst.enumerate() {
            d.copy_from_slice(&src[(pc + p) * ld + first..][..W]);
        }
    } else {
        // Element by element: a slice copy and fill of variable length are two calls.
        for (p, d) in dst.enumerate() {
            let s = &src[(pc + p) * ld + first..][..count];
            for (w, d_w) in d.iter_mut().enumerate() {
                *d_w = if w < count { s[w] } else { 0.0 };
            }
        }
    }
}

/// `dst[p·W + w] = src[(first + w)·ld + pc + p]` for `p < kc`, `w < count`; zero for
/// `count <= w < W`: `kc` neighbours along each of `count` stored rows, transposed.
fn pack_transposing<const W: usize>(
    dst: &mut [f32],
    src: &[f32],
    ld: usize,
    first: usize,
    count: usize,
    pc: usize,
    kc: usize,
) {
    let dst = &mut dst[..kc * W];
    if count < W {
        dst.fill(0.0);
    }
    let done = if count == W {
        transpose_by_eights::<W>(dst, src, ld, first, pc, kc)
    } else {
        0
    };
    for w in 0..count {
        let row = &src[(first + w) * ld + pc..][done..kc];
        for (p, &v) in (done..kc).zip(row) {
            dst[p * W + w] = v;
        }
    }
}

/// The SIMD part of [`pack_transposing`] for a full sliver: `p < kc - kc % 8` in 8 × 8
/// register transposes, when `W` is a multiple of 8 and the CPU has AVX. Returns how
/// many `p` it did.
fn transpose_by_eights<const W: usize>(
    dst: &mut [f32],
    src: &[f32],
    ld: usize,
    first: usize,
    pc: usize,
    kc: usize,
) -> usize {
    // NOTE: `W % 8`, not `is_multiple_of`, which is newer than our rust-version (1.85).
    #[cfg(target_arch = "x86_64")]
    #[allow(clippy::manual_is_multiple_of)]
    if W % 8 == 0 && Isa::active() != Isa::Portable {
        // Rows first..first + W of src must hold [pc, pc + kc); the last is the furthest.
        assert!((first + W - 1) * ld + pc + kc <= src.len() && dst.len() >= kc * W);
        let done = kc - kc % 8;
        // SAFETY: the bounds are checked just above, and the CPU has AVX (AVX2 or
        // AVX-512, which `Isa::active` checked).
        unsafe { avx2::transpose_into::<W>(dst.as_mut_ptr(), src.as_ptr(), (ld, first, pc), done) };
        return done;
    }
    let _ = (dst, src, ld, first, pc, kc);
    0
}

/// How `c` is cut into tasks, counted in slivers (`MR` rows, `NR` columns).
#[derive(Clone, Copy)]
struct TileGrid {
    row_slivers: usize,
    col_slivers: usize,
    rows_per_tile: usize,
    cols_per_tile: usize,
}

impl TileGrid {
    /// Tiles of at most `MC_MAX × NC_MAX` values, for slivers of `mr × nr` values.
    ///
    /// Tiles are cut finer (across their longer side) until every thread has one, then on
    /// to three per thread so that work stealing can even out a noisy machine, but only
    /// while they stay `MIN_TILE` values a side: every cut of the rows packs `b` once
    /// more, every cut of the columns packs `a` once more.
    fn new(
        row_slivers: usize,
        col_slivers: usize,
        (mr, nr): (usize, usize),
        threads: usize,
    ) -> Self {
        const MIN_TILE: usize = 128;
        let mut rb = row_slivers.div_ceil(MC_MAX / mr);
        let mut cb = col_slivers.div_ceil(NC_MAX / nr);
        loop {
            let (rows, cols) = (row_slivers.div_ceil(rb) * mr, col_slivers.div_ceil(cb) * nr);
            let enough = threads == 1 || rb * cb >= 3 * threads || rows.max(cols) < 2 * MIN_TILE;
            if rb * cb >= threads && enough {
                break;
            }
            if (rows >= cols || cb == col_slivers) && rb < row_slivers {
                rb += 1;
            } else if cb < col_slivers {
                cb += 1;
            } else {
                break;
            }
        }
        let (rows_per_tile, cols_per_tile) = (row_slivers.div_ceil(rb), col_slivers.div_ceil(cb));
        Self {
            row_slivers,
            col_slivers,
            rows_per_tile,
            cols_per_tile,
        }
    }

    fn tiles(&self) -> usize {
        self.row_slivers.div_ceil(self.rows_per_tile)
            * self.col_slivers.div_ceil(self.cols_per_tile)
    }

    /// Tile `t`'s sliver ranges. Tiles sharing rows are neighbours in `t`: rayon hands a
    /// thread runs of neighbours, which then reuse the same rows of `a` from cache.
    fn tile(&self, t: usize) -> (Range<usize>, Range<usize>) {
        let col_tiles = self.col_slivers.div_ceil(self.cols_per_tile);
        let (ti, tj) = (t / col_tiles, t % col_tiles);
        let rows = ti * self.rows_per_tile..((ti + 1) * self.rows_per_tile).min(self.row_slivers);
        let cols = tj * self.cols_per_tile..((tj + 1) * self.cols_per_tile).min(self.col_slivers);
        (rows, cols)
    }
}

/// A cache line of packed values: the buffers are 64-byte aligned so that no packed
/// row of `b` straddles two lines.
#[derive(Clone, Copy, Pod, Zeroable)]
#[repr(C, align(64))]
struct Line([f32; 16]);

thread_local! {
    /// Each thread's packing space, kept between calls: small products must not pay
    /// for allocating and zeroing it.
    static PACK_BUFFERS: RefCell<(Vec<Line>, Vec<Line>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// Calls `f` with this thread's packing buffers, at least `a_len` and `b_len` values.
fn with_pack_buffers<R>(
    a_len: usize,
    b_len: usize,
    f: impl FnOnce(&mut [f32], &mut [f32]) -> R,
) -> R {
    let grow = |v: &mut Vec<Line>, len: usize| {
        if v.len() * 16 < len {
            v.resize(len.div_ceil(16), Line::zeroed());
        }
    };
    PACK_BUFFERS.with(|cell| {
        // NOTE: a task never re-enters matmul, but should one, it packs into fresh buffers.
        let mut fresh = (Vec::new(), Vec::new());
        let mut held = cell.try_borrow_mut();
        let (a, b) = match held.as_deref_mut() {
            Ok(bufs) => bufs,
            Err(_) => &mut fresh,
        };
        grow(a, a_len);
        grow(b, b_len);
        f(bytemuck::cast_slice_mut(a), bytemuck::cast_slice_mut(b))
    })
}

/// `c`'s base pointer, handed to the tasks that each write their own disjoint tile.
#[derive(Clone, Copy)]
struct SharedMut(*mut f32);
// SAFETY: the tasks write disjoint tiles and nothing reads `c` until all have joined.
unsafe impl Send for SharedMut {}
// SAFETY: as above.
unsafe impl Sync for SharedMut {}

impl SharedMut {
    // NOTE: a method, not `.0`: a closure naming `.0` would capture the bare (non-Send)
    // pointer field under the 2021 disjoint-capture rules.
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// Runs a full-tile kernel on an edge tile: into a scratch tile, whose valid corner is
/// then added (or copied) into `c`, with the same single rounding as the full store.
///
/// # Safety
/// As [`MicroKernel`], for `full` an `MR × NR` kernel writing rows `ldc` apart.
unsafe fn via_scratch<const MR: usize, const NR: usize>(
    full: unsafe fn(usize, *const f32, *const f32, *mut f32, usize, bool),
    (kc, a, b): (usize, *const f32, *const f32),
    c: CTile,
    load_c: bool,
) {
    let mut tmp = [[0.0f32; NR]; MR];
    // SAFETY: tmp is MR rows of NR values, NR apart; the caller vouches for the rest.
    unsafe { full(kc, a, b, tmp.as_mut_ptr().cast(), NR, false) };
    for (i, t) in tmp.iter().take(c.rows).enumerate() {
        // SAFETY: c's rows × cols values are ours (the caller's contract).
        let row = unsafe { std::slice::from_raw_parts_mut(c.ptr.add(i * c.ldc), c.cols) };
        for (r, &v) in row.iter_mut().zip(t) {
            *r = if load_c { *r + v } else { v };
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) use avx2::transpose8;

/// AVX2 + FMA: the 6 × 16 micro-kernel (twelve 8-wide accumulators) and the 8 × 8
/// transpose of the packing.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::CTile;
    use std::arch::x86_64::*;

    pub const MR: usize = 6;
    pub const NR: usize = 16;

    /// See [`super::MicroKernel`].
    ///
    /// # Safety
    /// As [`super::MicroKernel`]; the CPU must have AVX2 and FMA.
    pub unsafe fn kernel(kc: usize, a: *const f32, b: *const f32, c: CTile, load_c: bool) {
        // SAFETY: forwarded from our caller.
        unsafe {
            if c.rows == MR && c.cols == NR {
                full(kc, a, b, c.ptr, c.ldc, load_c)
            } else {
                super::via_scratch::<MR, NR>(full, (kc, a, b), c, load_c)
            }
        }
    }

    /// Per step of `k`: two loads of `b`, six broadcasts of `a`, twelve independent
    /// FMAs, enough to keep both FMA pipes busy through their 4-cycle latency.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn full(kc: usize, a: *const f32, b: *const f32, c: *mut f32, ldc: usize, load_c: bool) {
        let mut acc = [[_mm256_setzero_ps(); 2]; MR];
        for p in 0..kc {
            // SAFETY: p < kc, and a, b hold kc·MR and kc·NR values.
            let (a, b) = unsafe { (a.add(p * MR), b.add(p * NR)) };
            let (b0, b1) = unsafe { (_mm256_loadu_ps(b), _mm256_loadu_ps(b.add(8))) };
            for (i, row) in acc.iter_mut().enumerate() {
                let a_i = _mm256_set1_ps(unsafe { *a.add(i) });
                row[0] = _mm256_fmadd_ps(a_i, b0, row[0]);
                row[1] = _mm256_fmadd_ps(a_i, b1, row[1]);
            }
        }
        for (i, row) in acc.iter().enumerate() {
            // SAFETY: c holds MR rows of NR values, ldc apart.
            unsafe {
                let c_i = c.add(i * ldc);
                let (mut r0, mut r1) = (row[0], row[1]);
                if load_c {
                    r0 = _mm256_add_ps(_mm256_loadu_ps(c_i), r0);
                    r1 = _mm256_add_ps(_mm256_loadu_ps(c_i.add(8)), r1);
                }
                _mm256_storeu_ps(c_i, r0);
                _mm256_storeu_ps(c_i.add(8), r1);
            }
        }
    }

    /// Column `j` of the 8 × 8 matrix whose row `i` is `r[i]`, for each `j`: interleave
    /// pairs of rows, then pairs of pairs, then swap 128-bit halves (also the conv block
    /// backward's channels-last copies).
    ///
    /// # Safety
    /// The CPU has AVX.
    #[target_feature(enable = "avx")]
    #[inline]
    pub(crate) unsafe fn transpose8(r: [__m256; 8]) -> [__m256; 8] {
        let t0 = _mm256_unpacklo_ps(r[0], r[1]);
        let t1 = _mm256_unpackhi_ps(r[0], r[1]);
        let t2 = _mm256_unpacklo_ps(r[2], r[3]);
        let t3 = _mm256_unpackhi_ps(r[2], r[3]);
        let t4 = _mm256_unpacklo_ps(r[4], r[5]);
        let t5 = _mm256_unpackhi_ps(r[4], r[5]);
        let t6 = _mm256_unpacklo_ps(r[6], r[7]);
        let t7 = _mm256_unpackhi_ps(r[6], r[7]);
        let s0 = _mm256_shuffle_ps::<0x44>(t0, t2);
        let s1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
        let s2 = _mm256_shuffle_ps::<0x44>(t1, t3);
        let s3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
        let s4 = _mm256_shuffle_ps::<0x44>(t4, t6);
        let s5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
        let s6 = _mm256_shuffle_ps::<0x44>(t5, t7);
        let s7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
        [
            _mm256_permute2f128_ps::<0x20>(s0, s4),
            _mm256_permute2f128_ps::<0x20>(s1, s5),
            _mm256_permute2f128_ps::<0x20>(s2, s6),
            _mm256_permute2f128_ps::<0x20>(s3, s7),
            _mm256_permute2f128_ps::<0x31>(s0, s4),
            _mm256_permute2f128_ps::<0x31>(s1, s5),
            _mm256_permute2f128_ps::<0x31>(s2, s6),
            _mm256_permute2f128_ps::<0x31>(s3, s7),
        ]
    }

    /// `dst[p·W + w] = src[(first + w)·ld + pc + p]` for `w < W`, `p < kc` (a multiple of
    /// 8), by 8 × 8 blocks: eight row loads, [`transpose8`], eight stores.
    ///
    /// # Safety
    /// `src` rows `first..first + W` (`ld` apart) hold `[pc, pc + kc)`, `dst` holds
    /// `kc·W` values, and the CPU has AVX.
    #[target_feature(enable = "avx")]
    pub unsafe fn transpose_into<const W: usize>(
        dst: *mut f32,
        src: *const f32,
        (ld, first, pc): (usize, usize, usize),
        kc: usize,
    ) {
        for p0 in (0..kc).step_by(8) {
            for w0 in (0..W).step_by(8) {
                // SAFETY: in bounds by the contract.
                let r: [__m256; 8] = std::array::from_fn(|w| unsafe {
                    _mm256_loadu_ps(src.add((first + w0 + w) * ld + pc + p0))
                });
                let cols = transpose8(r);
                for (p, col) in cols.into_iter().enumerate() {
                    // SAFETY: (p0 + p)·W + w0 + 8 <= kc·W.
                    unsafe { _mm256_storeu_ps(dst.add((p0 + p) * W + w0), col) };
                }
            }
        }
    }
}

/// AVX-512F: an `MR × NR` micro-kernel of 16-wide vectors, whose edge tiles are clipped
/// by store masks rather than a scratch tile.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::CTile;
    use std::arch::x86_64::*;

    pub const MR: usize = 16;
    /// `NV` vectors of 16 columns.
    const NV: usize = 1;
    pub const NR: usize = 16 * NV;

    /// See [`super::MicroKernel`].
    ///
    /// # Safety
    /// As [`super::MicroKernel`]; the CPU must have AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn kernel(kc: usize, a: *const f32, b: *const f32, c: CTile, load_c: bool) {
        let mut acc = [[_mm512_setzero_ps(); NV]; MR];
        for p in 0..kc {
            // SAFETY: p < kc, and a, b hold kc·MR and kc·NR values.
            let (a, b) = unsafe { (a.add(p * MR), b.add(p * NR)) };
            let b_p: [__m512; NV] =
                std::array::from_fn(|v| unsafe { _mm512_loadu_ps(b.add(16 * v)) });
            for (i, row) in acc.iter_mut().enumerate() {
                let a_i = _mm512_set1_ps(unsafe { *a.add(i) });
                for (r, &b_v) in row.iter_mut().zip(&b_p) {
                    *r = _mm512_fmadd_ps(a_i, b_v, *r);
                }
            }
        }
        // Lane j of vector v is column 16·v + j: keep those below c.cols.
        let masks: [__mmask16; NV] = std::array::from_fn(|v| {
            let cols = c.cols.saturating_sub(16 * v).min(16);
            ((1u32 << cols) - 1) as __mmask16
        });
        for (i, row) in acc.iter().enumerate().take(c.rows) {
            for (v, (&r, &mask)) in row.iter().zip(&masks).enumerate() {
                // SAFETY: c holds c.rows rows of c.cols values; masked-off lanes are
                // neither read nor written, so they may lie past the end.
                unsafe {
                    let c_iv = c.ptr.add(i * c.ldc + 16 * v);
                    let r = if load_c {
                        _mm512_add_ps(_mm512_maskz_loadu_ps(mask, c_iv), r)
                    } else {
                        r
                    };
                    _mm512_mask_storeu_ps(c_iv, mask, r);
                }
            }
        }
    }
}

/// The portable 4 × 8 micro-kernel, left to the auto-vectoriser (SSE2, NEON): sixteen
/// 4-wide accumulators fit x86-64's 16 vector registers without spilling.
mod portable {
    use super::CTile;

    pub const MR: usize = 4;
    pub const NR: usize = 8;

    /// See [`super::MicroKernel`].
    ///
    /// # Safety
    /// As [`super::MicroKernel`].
    pub unsafe fn kernel(kc: usize, a: *const f32, b: *const f32, c: CTile, load_c: bool) {
        // SAFETY: forwarded from our caller.
        unsafe {
            if c.rows == MR && c.cols == NR {
                full(kc, a, b, c.ptr, c.ldc, load_c)
            } else {
                super::via_scratch::<MR, NR>(full, (kc, a, b), c, load_c)
            }
        }
    }

    unsafe fn full(kc: usize, a: *const f32, b: *const f32, c: *mut f32, ldc: usize, load_c: bool) {
        // SAFETY: a, b hold kc·MR and kc·NR values.
        let (a, b) = unsafe {
            (
                std::slice::from_raw_parts(a, kc * MR),
                std::slice::from_raw_parts(b, kc * NR),
            )
        };
        let mut acc = [[0.0f32; NR]; MR];
        for (a_p, b_p) in a.chunks_exact(MR).zip(b.chunks_exact(NR)) {
            for (row, &a_i) in acc.iter_mut().zip(a_p) {
                for (r, &b_j) in row.iter_mut().zip(b_p) {
                    // NOTE: not `mul_add`, a slow libm call where FMA is not in hardware.
                    *r += a_i * b_j;
                }
            }
        }
        for (i, row) in acc.iter().enumerate() {
            // SAFETY: c holds MR rows of NR values, ldc apart.
            let c_i = unsafe { std::slice::from_raw_parts_mut(c.add(i * ldc), NR) };
            for (c_ij, &v) in c_i.iter_mut().zip(row) {
                *c_ij = if load_c { *c_ij + v } else { v };
            }
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// `op(a) · op(b)` in f64, and `Σ_l |op(a)_il| |op(b)_lj|` for the error bound.
    fn reference(a: &[f32], b: &[f32], p: &MatmulParams) -> (Vec<f64>, Vec<f64>) {
        let (m, n, k) = (p.m as usize, p.n as usize, p.k as usize);
        let (mut out, mut mag) = (vec![0.0; m * n], vec![0.0; m * n]);
        for i in 0..m {
            for j in 0..n {
                for l in 0..k {
                    let a_il = if p.trans_a == 1 {
                        a[l * m + i]
                    } else {
                        a[i * k + l]
                    } as f64;
                    let b_lj = if p.trans_b == 1 {
                        b[j * k + l]
                    } else {
                        b[l * n + j]
                    } as f64;
                    out[i * n + j] += a_il * b_lj;
                    mag[i * n + j] += (a_il * b_lj).abs();
                }
            }
        }
        (out, mag)
    }

    /// Runs `matmul` on `c0` and checks it against the reference, within the classic
    /// dot-product bound `γ_k Σ|a||b|`, `γ_k ≈ k·ε` (plus one rounding of `c0 + ·`).
    /// Every micro-kernel this CPU runs is checked, not just the one `matmul` picks.
    fn check(a: &[f32], b: &[f32], c0: &[f32], p: &MatmulParams) -> Result<(), TestCaseError> {
        let (want, mag) = reference(a, b, p);
        for isa in Isa::ALL.into_iter().filter(|isa| isa.supported()) {
            let mut c = c0.to_vec();
            matmul_on(isa, a, b, &mut c, p).map_err(|e| TestCaseError::fail(e.to_string()))?;
            check_against(&c, c0, (&want, &mag), p)
                .map_err(|e| TestCaseError::fail(format!("{isa:?}: {e}")))?;
        }
        Ok(())
    }

    fn check_against(
        c: &[f32],
        c0: &[f32],
        (want, mag): (&[f64], &[f64]),
        p: &MatmulParams,
    ) -> Result<(), TestCaseError> {
        let gamma = (p.k as f64 + 2.0) * f32::EPSILON as f64;
        for (idx, (&got, (&w, &mg))) in c.iter().zip(want.iter().zip(mag)).enumerate() {
            let base = if p.accumulate == 1 {
                c0[idx] as f64
            } else {
                0.0
            };
            let tol = gamma * (mg + base.abs()) + 1e-30;
            prop_assert!(
                (got as f64 - (base + w)).abs() <= tol,
                "{p:?} at {idx}: got {got}, want {}, tol {tol}",
                base + w
            );
        }
        Ok(())
    }

    fn random(len: usize, seed: u64) -> Vec<f32> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect()
    }

    fn params(m: usize, n: usize, k: usize, ta: bool, tb: bool, acc: bool) -> MatmulParams {
        let mut p = MatmulParams::new(m, n, k).unwrap();
        (p.trans_a, p.trans_b, p.accumulate) = (ta as u32, tb as u32, acc as u32);
        p
    }

    /// Sizes that hit 1, primes, tile edges (6, 12, 16, 32 and their neighbours) and more
    /// than one `k` block (`KC_MAX = 256`).
    fn dim() -> impl Strategy<Value = usize> {
        prop_oneof![
            Just(1usize),
            prop::sample::select(vec![2usize, 3, 5, 7, 11, 13, 17, 31, 37, 61, 97, 127]),
            prop::sample::select(vec![6usize, 12, 15, 16, 17, 32, 33, 48, 64, 96, 130]),
            1usize..=130,
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]

        #[test]
        fn matmul_matches_reference(
            m in dim(), n in dim(), k in dim(),
            ta: bool, tb: bool, acc: bool, seed: u64,
        ) {
            let p = params(m, n, k, ta, tb, acc);
            let a = random(m * k, seed);
            let b = random(k * n, seed ^ 1);
            let c0 = random(m * n, seed ^ 2);
            check(&a, &b, &c0, &p)?;
        }
    }

    #[test]
    fn matmul_matches_reference_past_one_k_block_and_one_tile() {
        // k = 300 takes two k blocks (150 + 150); m, n span several tiles and threads.
        // Then a row of 784 against 1200 columns: the one-row path, in parallel.
        for (ta, tb, acc) in [
            (false, false, false),
            (true, false, true),
            (false, true, false),
            (true, true, true),
        ] {
            let (m, n, k) = (157, 293, 300);
            let p = params(m, n, k, ta, tb, acc);
            let (a, b, c0) = (random(m * k, 1), random(k * n, 2), random(m * n, 3));
            check(&a, &b, &c0, &p).unwrap();
            // One image through teacher-mlp's fc1: the one-row path, split among tasks.
            let (m, n, k) = (1, 1200, 784);
            let p = params(m, n, k, ta, tb, acc);
            let (a, b, c0) = (random(m * k, 4), random(k * n, 5), random(m * n, 6));
            check(&a, &b, &c0, &p).unwrap();
        }
    }

    #[test]
    fn matmul_small_cases_by_hand() {
        // [1 2; 3 4] · [5 6; 7 8] = [1·5 + 2·7, 1·6 + 2·8; 3·5 + 4·7, 3·6 + 4·8]
        //                         = [19 22; 43 50].
        let (a, b) = ([1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]);
        let mut c = [0.0; 4];
        matmul(&a, &b, &mut c, &MatmulParams::new(2, 2, 2).unwrap()).unwrap();
        assert_eq!(c, [19.0, 22.0, 43.0, 50.0]);

        // aᵀ · b with a stored (k, m) = [1 2; 3 4], so op(a) = [1 3; 2 4]:
        // [1·5 + 3·7, 1·6 + 3·8; 2·5 + 4·7, 2·6 + 4·8] = [26 30; 38 44].
        matmul(
            &a,
            &b,
            &mut c,
            &MatmulParams::new(2, 2, 2).unwrap().trans_a(),
        )
        .unwrap();
        assert_eq!(c, [26.0, 30.0, 38.0, 44.0]);

        // a · bᵀ with b stored (n, k) = [5 6; 7 8], so op(b) = [5 7; 6 8]:
        // [1·5 + 2·6, 1·7 + 2·8; 3·5 + 4·6, 3·7 + 4·8] = [17 23; 39 53]; accumulated onto
        // c = 1 everywhere gives [18 24; 40 54].
        let mut c = [1.0; 4];
        matmul(
            &a,
            &b,
            &mut c,
            &MatmulParams::new(2, 2, 2).unwrap().trans_b().accumulate(),
        )
        .unwrap();
        assert_eq!(c, [18.0, 24.0, 40.0, 54.0]);

        // (1, 3) · (3, 1): a dot product, 1·4 + 2·5 + 3·6 = 32.
        let mut c = [0.0];
        matmul(
            &[1.0, 2.0, 3.0],
            &[4.0, 5.0, 6.0],
            &mut c,
            &MatmulParams::new(1, 1, 3).unwrap(),
        )
        .unwrap();
        assert_eq!(c, [32.0]);
    }

    #[test]
    fn matmul_blocked_path_by_hand() {
        // a = all 1 (40, 50), b[l][j] = j (50, 30): c[i][j] = Σ_l 1·j = 50·j, exactly, and
        // 40·30·50 multiply-adds is past DIRECT_MAX_MACS, so this runs the packed path.
        let (m, n, k) = (40, 30, 50);
        let a = vec![1.0; m * k];
        let b: Vec<f32> = (0..k * n).map(|i| (i % n) as f32).collect();
        let mut c = vec![f32::NAN; m * n];
        matmul(&a, &b, &mut c, &MatmulParams::new(m, n, k).unwrap()).unwrap();
        for (idx, &v) in c.iter().enumerate() {
            assert_eq!(v, 50.0 * (idx % n) as f32, "at {idx}");
        }
    }

    #[test]
    fn matmul_empty_shapes() {
        // k = 0: the product is an empty sum, zero; accumulating leaves c as it was.
        let mut c = [7.0; 6];
        matmul(
            &[],
            &[],
            &mut c,
            &MatmulParams::new(2, 3, 0).unwrap().accumulate(),
        )
        .unwrap();
        assert_eq!(c, [7.0; 6]);
        matmul(&[], &[], &mut c, &MatmulParams::new(2, 3, 0).unwrap()).unwrap();
        assert_eq!(c, [0.0; 6]);
        // m = 0 or n = 0: nothing to write.
        let mut c = [7.0; 2];
        matmul(&[], &[1.0; 8], &mut c, &MatmulParams::new(0, 2, 4).unwrap()).unwrap();
        matmul(&[1.0; 4], &[], &mut c, &MatmulParams::new(2, 0, 2).unwrap()).unwrap();
        assert_eq!(c, [7.0; 2]);
    }

    #[test]
    fn matmul_is_deterministic() {
        // Big enough for several threads and two k blocks; repeated calls must agree to
        // the bit, whatever the thread interleaving.
        let (m, n, k) = (150, 200, 300);
        for p in [
            MatmulParams::new(m, n, k).unwrap(),
            MatmulParams::new(m, n, k).unwrap().trans_a().trans_b(),
        ] {
            let (a, b) = (random(m * k, 5), random(k * n, 6));
            let mut first = vec![0.0; m * n];
            matmul(&a, &b, &mut first, &p).unwrap();
            for _ in 0..3 {
                let mut again = vec![0.0; m * n];
                matmul(&a, &b, &mut again, &p).unwrap();
                assert!(first
                    .iter()
                    .zip(&again)
                    .all(|(x, y)| x.to_bits() == y.to_bits()));
            }
        }
    }

    #[test]
    fn matmul_does_not_depend_on_the_thread_count() {
        let (m, n, k) = (97, 130, 280);
        let p = MatmulParams::new(m, n, k).unwrap().trans_b();
        let (a, b) = (random(m * k, 7), random(k * n, 8));
        let mut threaded = vec![0.0; m * n];
        matmul(&a, &b, &mut threaded, &p).unwrap();
        let single = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let mut serial = vec![0.0; m * n];
        single.install(|| matmul(&a, &b, &mut serial, &p).unwrap());
        assert!(threaded
            .iter()
            .zip(&serial)
            .all(|(x, y)| x.to_bits() == y.to_bits()));
    }

    #[test]
    fn tile_grid_covers_c_once() {
        for (rows, cols, threads) in [
            (1, 1, 2),
            (2, 338, 2),
            (40, 2, 2),
            (64, 64, 2),
            (86, 32, 4),
            (3, 3, 8),
            (5, 7, 1),
        ] {
            let grid = TileGrid::new(rows, cols, (16, 16), threads);
            let mut seen = vec![0u8; rows * cols];
            for t in 0..grid.tiles() {
                let (r, c) = grid.tile(t);
                for i in r {
                    for j in c.clone() {
                        seen[i * cols + j] += 1;
                    }
                }
            }
            assert!(
                seen.iter().all(|&s| s == 1),
                "{rows}x{cols} over {threads} threads"
            );
        }
    }
}
