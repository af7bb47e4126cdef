//! Running a kernel on the device its operands live on: the one place where compute
//! meets the device.
//!
//! Every op calls [`run`] with a kernel of `kernels::registry` (its type names it:
//! `run(k::Matmul, &p, &[&a, &b])`), or [`run_into`] for an update in place. Both check
//! that the storages are on one device, then call the kernel's CPU function or record
//! its GPU launch, which returns at once: only a read waits. Either checks the count
//! and the words of its arguments the same way ([`kernels::KernelError`]). [`run`]
//! makes the kernel's outputs beside its inputs (see [`run`]).
//!
//! Each CPU call runs under a [`profile::cpu`] guard and each GPU launch first shows
//! its context to [`profile::gpu`]: with `--profile` off, one atomic load each.

use crate::error::{Error, Result};
use crate::profile;
use crate::storage::Storage;
use crate::trace;
use kernels::registry::{Access, Kernel};

/// Runs `K` on `reads` (its [`Access::Read`] arguments, in order) and returns its
/// `N` outputs, new storages beside the inputs: zeroed, except on the CPU an
/// [`Access::Out`] one, which its kernel overwrites (`storage`'s pool).
pub(crate) fn run<K: Kernel, const N: usize>(
    _kernel: K,
    p: &K::Params,
    reads: &[&Storage],
) -> Result<[Storage; N]> {
    let op = K::ID.name();
    let first = reads
        .first()
        .ok_or_else(|| internal(op, "was called without inputs"))?;
    let mut outputs: Vec<Storage> = K::ARGS
        .iter()
        .zip(K::lens(p))
        .filter(|(arg, _)| arg.access.writes())
        .map(|(arg, len)| first.output_beside(len, arg.access == Access::Out))
        .collect::<Result<_>>()?;
    run_args::<K>(p, reads, &mut outputs.iter_mut().collect::<Vec<_>>(), true)?;
    outputs
        .try_into()
        .map_err(|_| internal(op, "has another number of outputs than its caller takes"))
}

/// Runs `K` on `reads` and `writes` (its [`Access::Write`] arguments, updated in place:
/// an optimizer's parameter and state, a gradient sum).
pub(crate) fn run_into<K: Kernel>(
    p: &K::Params,
    reads: &[&Storage],
    writes: &mut [&mut Storage],
) -> Result<()> {
    run_args::<K>(p, reads, writes, false)
}

/// [`run_into`]; `fresh`: the writes are new outputs of [`run`] (what a [`trace`] of
/// the call needs to know: the engine zeroed those that are not [`Access::Out`]).
fn run_args<K: Kernel>(
    p: &K::Params,
    reads: &[&Storage],
    writes: &mut [&mut Storage],
    fresh: bool,
) -> Result<()> {
    let op = K::ID.name();
    // The kernel checks the counts and the lengths (the same way on either device);
    // here each argument's name is only for a device mismatch's message.
    let names = |written: bool| {
        K::ARGS
            .iter()
            .filter(move |arg| arg.access.writes() == written)
            .map(|arg| arg.name)
    };
    match (reads.first(), writes.first()) {
        (Some(Storage::Cpu(_)), _) | (None, Some(Storage::Cpu(_))) => {
            let reads = reads
                .iter()
                .zip(names(false))
                .map(|(s, name)| cpu(op, name, s))
                .collect::<Result<Vec<&[f32]>>>()?;
            let mut writes = writes
                .iter_mut()
                .zip(names(true))
                .map(|(s, name)| cpu_mut(op, name, s))
                .collect::<Result<Vec<&mut [f32]>>>()?;
            let traced = trace::recording();
            if traced {
                let zeroed = |arg: &kernels::registry::Arg| fresh && arg.access == Access::Write;
                let zeroed: Vec<bool> = K::ARGS.iter().map(zeroed).collect();
                trace::before::<K>(p, &in_order::<K>(&reads, &writes), &zeroed);
            }
            let _k = profile::cpu(K::ID);
            K::cpu(&reads, &mut writes, p)?;
            if traced {
                trace::after::<K>(&in_order::<K>(&reads, &writes));
            }
            Ok(())
        }
        #[cfg(feature = "gpu")]
        (Some(Storage::Gpu(first)), _) | (None, Some(Storage::Gpu(first))) => {
            let ctx = first.context();
            let reads = reads
                .iter()
                .zip(names(false))
                .map(|(s, name)| gpu(op, name, s))
                .collect::<Result<Vec<_>>>()?;
            let writes = writes
                .iter()
                .zip(names(true))
                .map(|(s, name)| gpu(op, name, s))
                .collect::<Result<Vec<_>>>()?;
            profile::gpu(ctx);
            trace::saw_gpu();
            K::gpu(ctx, &reads, &writes, p).map_err(crate::storage::gpu_error)
        }
        (None, None) => Err(internal(op, "was called without arguments")),
    }
}

/// The arguments of a call of `K` in [`Kernel::ARGS`] order, reads and writes merged.
fn in_order<'a, K: Kernel>(reads: &[&'a [f32]], writes: &'a [&mut [f32]]) -> Vec<&'a [f32]> {
    let (mut reads, mut writes) = (reads.iter(), writes.iter());
    K::ARGS
        .iter()
        .filter_map(|arg| match arg.access.writes() {
            true => writes.next().map(|w| &**w),
            false => reads.next().copied(),
        })
        .collect()
}

/// A call that does not match the kernel's declaration: a bug in the engine, not input.
fn internal(op: &'static str, what: &str) -> Error {
    Error::BadArgument {
        op,
        message: format!("the kernel {what} (a bug in the engine)"),
    }
}

/// The argument `name` of `op` is on another device than the first one.
#[cfg(feature = "gpu")]
fn mismatch(op: &'static str, name: &'static str, first: &str, found: &str) -> Error {
    Error::DeviceMismatch {
        op,
        lhs: first.into(),
        rhs: format!("{found} (argument `{name}`)"),
    }
}

#[cfg_attr(not(feature = "gpu"), allow(unused_variables))]
fn cpu<'a>(op: &'static str, name: &'static str, s: &'a Storage) -> Result<&'a [f32]> {
    match s {
        Storage::Cpu(v) => Ok(v),
        #[cfg(feature = "gpu")]
        Storage::Gpu(_) => Err(mismatch(op, name, "cpu", "gpu")),
    }
}

#[cfg_attr(not(feature = "gpu"), allow(unused_variables))]
fn cpu_mut<'a>(op: &'static str, name: &'static str, s: &'a mut Storage) -> Result<&'a mut [f32]> {
    match s {
        Storage::Cpu(v) => Ok(v),
        #[cfg(feature = "gpu")]
        Storage::Gpu(_) => Err(mismatch(op, name, "cpu", "gpu")),
    }
}

#[cfg(feature = "gpu")]
fn gpu<'a>(
    op: &'static str,
    name: &'static str,
    s: &'a Storage,
) -> Result<&'a kernels::gpu::GpuBuffer> {
    match s {
        Storage::Gpu(b) => Ok(b),
        Storage::Cpu(_) => Err(mismatch(op, name, "gpu", "cpu")),
    }
}
