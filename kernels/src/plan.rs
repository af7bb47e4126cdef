//! A kernel call as the GPU commands that run it, written down as data: what a launcher
//! records, without a device.
//!
//! Most kernels are one dispatch over a grid the registry gives. A few cut their work
//! into pieces (`matmul` and the conv weight gradients split a long reduction into
//! partial sums in a scratch buffer that `sum_axis` adds up; an empty sum only clears
//! its output). [`Kernel::plan`] says which commands, on which of
//! the call's arguments and scratch buffers, with which params bytes and workgroups.
//!
//! The hand-written wgpu launchers of `gpu` run these plans (the generated ones launch
//! the same single dispatch directly), and `models::web` writes them into a manifest
//! that a browser replays on WebGPU with the same WGSL: one description of each
//! kernel's GPU work for both.
//!
//! ```
//! use kernels::plan::{Buffer, Command};
//! use kernels::{Kernel, KernelId, MatmulParams};
//! use kernels::registry::Matmul;
//!
//! // A (1, 9216) · (9216, 128) product has 2 output tiles: its reduction is cut into 36
//! // pieces of 256, whose partial products `sum_axis` adds into `c` in order.
//! let plan = Matmul::plan(&MatmulParams::new(1, 128, 9216)?.trans_b())?;
//! assert_eq!(plan.scratch, [36 * 128]);
//! let kernels: Vec<_> = plan.commands.iter().map(|c| match c {
//!     Command::Dispatch { kernel, .. } => kernel.name(),
//!     _ => "copy or clear",
//! }).collect();
//! assert_eq!(kernels, ["matmul", "sum_axis"]);
//! # Ok::<(), kernels::KernelError>(())
//! ```

use crate::error::KernelError;
use crate::params::{AxisParams, Conv2dParams, MatmulParams, RowParams};
use crate::registry::{Kernel, KernelId};

/// Threads per workgroup of the one-thread-per-element kernels (`@workgroup_size(256)`).
pub const WG: u64 = 256;

/// Rows and columns of a GEMM tile (`TILE` in `lib/gemm_tile.wgsl`).
pub const TILE: u64 = 64;

/// Threads per workgroup of the row kernels (`@workgroup_size(64)`), one row each.
const ROWS_PER_GROUP: u64 = 64;

/// Workgroups for `len` elements at one thread each.
pub fn elements(len: usize) -> u64 {
    (len as u64).div_ceil(WG)
}

/// Workgroups of a GEMM-tiled output of `rows × cols`: one per tile.
pub fn tiles(rows: u32, cols: u32) -> u64 {
    (rows as u64).div_ceil(TILE) * (cols as u64).div_ceil(TILE)
}

/// Workgroups of a row kernel; none without columns (nothing to compute, and no label
/// can be in range).
pub fn row_groups(p: &RowParams) -> u64 {
    match p.cols {
        0 => 0,
        _ => (p.rows as u64).div_ceil(ROWS_PER_GROUP),
    }
}

/// `(x, y)` with `x · y >= workgroups` and both within `limit` (the adapter's
/// workgroups per dimension), or `None` when even that is too few. Shaders recover the
/// linear workgroup index as `wg.x + wg.y · num_workgroups.x` and skip those past the end.
pub fn grid(workgroups: u64, limit: u32) -> Option<(u32, u32)> {
    let limit = limit as u64;
    if workgroups <= limit {
        return Some((workgroups as u32, 1));
    }
    let y = workgroups.div_ceil(limit);
    (y <= limit).then(|| (workgroups.div_ceil(y) as u32, y as u32))
}

/// A buffer a command works on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Buffer {
    /// The call's argument of this index, in [`Kernel::ARGS`] order.
    Arg(usize),
    /// The plan's scratch buffer of this index, of [`Plan::scratch`]`[i]` words.
    Scratch(usize),
}

/// A buffer bound to a dispatch: its first `words` words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Binding {
    /// Which buffer.
    pub buffer: Buffer,
    /// How many of its words the shader sees.
    pub words: usize,
}

/// One GPU command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Run `kernel` over `workgroups` workgroups, `params` (its params struct's bytes)
    /// at `@binding(0)` and `bindings` at `@binding(1..)`, in the kernel's argument order.
    Dispatch {
        /// The pipeline: its composed WGSL is [`KernelId::source`].
        kernel: KernelId,
        /// `bytemuck::bytes_of` the params struct.
        params: Vec<u8>,
        /// The buffer arguments.
        bindings: Vec<Binding>,
        /// Workgroups in all (laid out by [`grid`]); 0 is nothing to do.
        workgroups: u64,
    },
    /// Zero the first `words` words of `buffer`.
    Clear {
        /// Which buffer.
        buffer: Buffer,
        /// How many words.
        words: usize,
    },
    /// Copy the first `words` words of `src` to the start of `dst`.
    Copy {
        /// From.
        src: Buffer,
        /// To.
        dst: Buffer,
        /// How many words.
        words: usize,
    },
}

/// The commands of one kernel call, in order, and the scratch buffers they need.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Words of each scratch buffer ([`Buffer::Scratch`]); its contents start undefined.
    pub scratch: Vec<usize>,
    /// What to record, in order.
    pub commands: Vec<Command>,
}

impl Plan {
    /// One dispatch of `K` over `workgroups`, binding each argument's `lens` words.
    pub fn single<K: Kernel>(p: &K::Params, workgroups: u64) -> Plan {
        Plan {
            scratch: Vec::new(),
            commands: vec![dispatch::<K>(p, args(&K::lens(p)), workgroups)],
        }
    }
}

fn dispatch<K: Kernel>(p: &K::Params, bindings: Vec<Binding>, workgroups: u64) -> Command {
    Command::Dispatch {
        kernel: K::ID,
        params: bytemuck::bytes_of(p).to_vec(),
        bindings,
        workgroups,
    }
}

/// Each argument, in order, bound for its `lens` words.
fn args(lens: &[usize]) -> Vec<Binding> {
    lens.iter()
        .enumerate()
        .map(|(i, &words)| Binding {
            buffer: Buffer::Arg(i),
            words,
        })
        .collect()
}

/// NOTE: `MATMUL_K_CHUNK`, `FEW_TILES` and [`k_splits`] repeat `matmul.wgsl`.
const MATMUL_K_CHUNK: u64 = 256;
const FEW_TILES: u64 = 64;

/// The length of each piece of the weight gradient's reduction over `n · h_out · w_out`
/// (`K_CHUNK` in `lib/conv_backward_weight.wgsl`).
const CONV_K_CHUNK: u64 = 1024;

/// Pieces of the reduction over `k`: more than one only when the output has few tiles
/// (a `(64, 128)` linear layer's output is 2 tiles, however long its `k = 9216` is).
fn k_splits(p: &MatmulParams) -> u64 {
    let k = p.k as u64;
    if tiles(p.m, p.n) >= FEW_TILES || k <= MATMUL_K_CHUNK {
        1
    } else {
        k.div_ceil(MATMUL_K_CHUNK)
    }
}

/// `sum_axis` of `slices` pieces of `words` words in scratch 0 into argument `out`;
/// an error when the pieces together pass what one buffer can index (`u32` words),
/// though each piece alone fits.
fn sum_pieces(slices: usize, words: usize, out: usize) -> Result<Command, KernelError> {
    let p = AxisParams::new(1, slices, words)?;
    Ok(dispatch::<crate::registry::SumAxis>(
        &p,
        vec![
            Binding {
                buffer: Buffer::Scratch(0),
                words: slices * words,
            },
            Binding {
                buffer: Buffer::Arg(out),
                words,
            },
        ],
        elements(words),
    ))
}

/// `c (m, n) = op(a) · op(b)`, or `c +=` with `accumulate`. A long `k` with few output
/// tiles is split: the pieces' products go to a scratch buffer (after a copy of `c` when
/// accumulating) and `sum_axis` adds them in order.
pub(crate) fn matmul(p: &MatmulParams) -> Result<Plan, KernelError> {
    let mn = p.c_len();
    if p.k == 0 && p.accumulate == 0 {
        // An empty sum: the shader would never run its loop, but c must still be zeroed.
        let buffer = Buffer::Arg(2);
        return Ok(Plan {
            scratch: Vec::new(),
            commands: vec![Command::Clear { buffer, words: mn }],
        });
    }
    let splits = k_splits(p);
    if splits == 1 {
        return Ok(Plan::single::<crate::registry::Matmul>(p, tiles(p.m, p.n)));
    }
    let slices = splits as usize + p.accumulate as usize;
    let mut commands = Vec::new();
    if p.accumulate == 1 {
        commands.push(Command::Copy {
            src: Buffer::Arg(2),
            dst: Buffer::Scratch(0),
            words: mn,
        });
    }
    let mut bindings = args(&[p.a_len(), p.b_len()]);
    bindings.push(Binding {
        buffer: Buffer::Scratch(0),
        words: slices * mn,
    });
    commands.push(dispatch::<crate::registry::Matmul>(
        p,
        bindings,
        tiles(p.m, p.n) * splits,
    ));
    commands.push(sum_pieces(slices, mn, 2)?);
    Ok(Plan {
        scratch: vec![slices * mn],
        commands,
    })
}

/// `grad_weight (c_out, c_in, kh, kw)`, overwritten, summed over the batch. The
/// reduction over `n · h_out · w_out` is cut into pieces of `CONV_K_CHUNK`, so that a big
/// batch fills the GPU even though the output is small; with more than one piece the
/// partial gradients go to a scratch buffer and `sum_axis` adds them in piece order.
pub(crate) fn conv2d_backward_weight(p: &Conv2dParams) -> Result<Plan, KernelError> {
    let reads = [p.input_len(), p.output_len()];
    weight_pieces::<crate::registry::Conv2dBackwardWeight>(p, &reads)
}

/// The same pieces for the fused conv block's weight gradient, then its bias gradient:
/// `bias_backward` over the pooled gradient, whose values each land on one winner of the
/// conv's gradient, so that the sums are the same up to rounding (in another order than
/// the unfused `bias_backward` over the conv's gradient; the CPU kernel sums the pooled
/// gradient too).
pub(crate) fn conv2d_pool_backward_weight(p: &Conv2dParams) -> Result<Plan, KernelError> {
    let pool = p.pool()?;
    let reads = [p.input_len(), p.pooled_len(), p.pooled_len()];
    let mut plan = weight_pieces::<crate::registry::Conv2dPoolBackwardWeight>(p, &reads)?;
    let pooled = (pool.h_out * pool.w_out) as usize;
    let axis = AxisParams::new(p.n as usize, p.c_out as usize, pooled)?;
    let bindings = vec![
        Binding {
            buffer: Buffer::Arg(1),
            words: p.pooled_len(),
        },
        Binding {
            buffer: Buffer::Arg(4),
            words: p.c_out as usize,
        },
    ];
    let bias = dispatch::<crate::registry::BiasBackward>(&axis, bindings, p.c_out as u64);
    plan.commands.push(bias);
    Ok(plan)
}

/// A conv weight gradient `K`, whose first arguments are reads of `reads` words and the
/// next the gradient, in pieces of `CONV_K_CHUNK`.
fn weight_pieces<K: Kernel<Params = Conv2dParams>>(
    p: &Conv2dParams,
    reads: &[usize],
) -> Result<Plan, KernelError> {
    let reduce = (p.n * p.h_out * p.w_out) as u64;
    let splits = reduce.div_ceil(CONV_K_CHUNK).max(1) as usize;
    let groups = tiles(p.c_out, p.c_in * p.kh * p.kw) * splits as u64;
    let weights = p.weight_len();
    let mut bindings = args(reads);
    let (target, mut plan) = match splits {
        1 => (Buffer::Arg(reads.len()), Plan::default()),
        _ => (
            Buffer::Scratch(0),
            Plan {
                scratch: vec![splits * weights],
                commands: Vec::new(),
            },
        ),
    };
    bindings.push(Binding {
        buffer: target,
        words: splits * weights,
    });
    plan.commands.push(dispatch::<K>(p, bindings, groups));
    if splits > 1 {
        plan.commands
            .push(sum_pieces(splits, weights, reads.len())?);
    }
    Ok(plan)
}

/// `out[o, i] = Σ_c x[o, c, i]`, overwriting `out`; over zero channels a clear.
pub(crate) fn sum_axis(p: &AxisParams) -> Result<Plan, KernelError> {
    let n_out = p.outer as usize * p.inner as usize;
    if p.channels == 0 {
        // An empty sum: zeros, which the shader's loop would also give, but cheaper.
        return Ok(Plan {
            scratch: Vec::new(),
            commands: vec![Command::Clear {
                buffer: Buffer::Arg(1),
                words: n_out,
            }],
        });
    }
    Ok(Plan::single::<crate::registry::SumAxis>(p, elements(n_out)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{Matmul, ReluForward};
    use crate::ElementwiseParams;

    #[test]
    fn grid_covers_every_workgroup_within_the_limit() {
        assert_eq!(grid(10, 65535), Some((10, 1)));
        for (n, limit) in [(65536u64, 65535u32), (70_000, 65535), (1000, 40), (49, 7)] {
            let (x, y) = grid(n, limit).unwrap();
            assert!(
                x <= limit && y <= limit && x as u64 * y as u64 >= n,
                "{n} {limit}"
            );
        }
        assert_eq!(grid(50, 7), None);
    }

    /// The fused block's weight gradient: its product (straight into `grad_weight`, or in
    /// pieces into scratch and summed), then `bias_backward` of the pooled gradient into
    /// `grad_bias`.
    #[test]
    fn the_pooled_weight_gradient_ends_with_its_bias() {
        // n · h_out · w_out: 1 · 6 · 6 = 36, one piece; 3 · 24 · 24 = 1728, two.
        let shapes = [
            (Conv2dParams::new(1, 2, 8, 8, 3, 3, 3, 1, 0).unwrap(), 1),
            (Conv2dParams::new(3, 1, 26, 26, 4, 3, 3, 1, 0).unwrap(), 2),
        ];
        for (p, pieces) in shapes {
            let plan = crate::registry::Conv2dPoolBackwardWeight::plan(&p).unwrap();
            let dispatched: Vec<(KernelId, Vec<Buffer>)> = plan
                .commands
                .iter()
                .map(|c| match c {
                    Command::Dispatch {
                        kernel, bindings, ..
                    } => (*kernel, bindings.iter().map(|b| b.buffer).collect()),
                    other => panic!("{other:?}"),
                })
                .collect();
            let target = match pieces {
                1 => Buffer::Arg(3),
                _ => Buffer::Scratch(0),
            };
            let product = vec![Buffer::Arg(0), Buffer::Arg(1), Buffer::Arg(2), target];
            let mut want = vec![(KernelId::Conv2dPoolBackwardWeight, product)];
            if pieces > 1 {
                want.push((KernelId::SumAxis, vec![Buffer::Scratch(0), Buffer::Arg(3)]));
                assert_eq!(plan.scratch, [pieces * p.weight_len()]);
            }
            want.push((KernelId::BiasBackward, vec![Buffer::Arg(1), Buffer::Arg(4)]));
            assert_eq!(dispatched, want, "{p:?}");
        }
    }

    #[test]
    fn a_plain_kernel_is_one_dispatch_over_its_grid() {
        let p = ElementwiseParams::new(1000).unwrap();
        let plan = ReluForward::plan(&p).unwrap();
        assert!(plan.scratch.is_empty());
        let [Command::Dispatch {
            kernel,
            params,
            bindings,
            workgroups,
        }] = &plan.commands[..]
        else {
            panic!("{plan:?}")
        };
        assert_eq!(*kernel, KernelId::ReluForward);
        assert_eq!(params, bytemuck::bytes_of(&p));
        assert_eq!(*workgroups, 4); // ceil(1000 / 256)
        assert_eq!(
            bindings.iter().map(|b| b.words).collect::<Vec<_>>(),
            [1000; 2]
        );
    }

    #[test]
    fn an_accumulating_split_matmul_copies_c_in_first() {
        // (1, 1000) · (1000, 10): one tile, 4 pieces of 256, plus the old c as a fifth.
        let p = MatmulParams::new(1, 10, 1000).unwrap().accumulate();
        let plan = Matmul::plan(&p).unwrap();
        assert_eq!(plan.scratch, [5 * 10]);
        assert!(matches!(
            plan.commands[0],
            Command::Copy {
                src: Buffer::Arg(2),
                dst: Buffer::Scratch(0),
                words: 10
            }
        ));
        let Command::Dispatch { workgroups, .. } = &plan.commands[1] else {
            panic!("{plan:?}")
        };
        assert_eq!(*workgroups, 4);
        let Command::Dispatch {
            kernel, bindings, ..
        } = &plan.commands[2]
        else {
            panic!("{plan:?}")
        };
        assert_eq!(*kernel, KernelId::SumAxis);
        assert_eq!(bindings[1].buffer, Buffer::Arg(2));
    }

    #[test]
    fn pieces_that_together_pass_u32_are_an_error_not_a_panic() {
        // Each argument fits, but 2,048 pieces of 2,359,296 weights are 4.8e9 words.
        let p = Conv2dParams::new(8192, 512, 16, 16, 512, 3, 3, 1, 1).unwrap();
        let err = crate::registry::Conv2dBackwardWeight::plan(&p).unwrap_err();
        assert!(err.to_string().contains("4831838208"), "{err}");
    }

    #[test]
    fn an_empty_reduction_clears_its_output() {
        let p = MatmulParams::new(3, 4, 0).unwrap();
        let clear = Command::Clear {
            buffer: Buffer::Arg(2),
            words: 12,
        };
        assert_eq!(Matmul::plan(&p).unwrap().commands, [clear]);
    }
}
