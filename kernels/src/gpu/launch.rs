//! Recording one dispatch: argument checks, a uniform slot for the params, the bind
//! group, and a workgroup grid split in two dimensions past the adapter's limit.

use super::buffer::GpuBuffer;
use super::context::GpuContext;
use super::profile::GpuTiming;
use super::GpuError;
use crate::error::KernelError;
use crate::registry::KernelId;

/// Dispatches per submit; each takes one slot of the uniform ring. A training step of a
/// built-in network records at most 45 (teacher-cnn), so a step never needs two submits.
pub const MAX_PENDING: u64 = 1024;

/// Bytes between uniform slots: the adapter's offset alignment, at least 64 (the largest
/// params struct is 48 bytes).
pub(crate) fn uniform_slot_bytes(limits: &wgpu::Limits) -> u64 {
    let align = limits.min_uniform_buffer_offset_alignment.max(16) as u64;
    64u64.next_multiple_of(align)
}

/// A buffer argument: its name for errors, the words the op touches, and whether the
/// shader writes it (`read_write`) or only reads it.
pub(crate) struct Arg<'a> {
    name: &'static str,
    buf: &'a GpuBuffer,
    needed: usize,
    write: bool,
}

/// An input of `needed` words.
pub(crate) fn r<'a>(name: &'static str, buf: &'a GpuBuffer, needed: usize) -> Arg<'a> {
    Arg {
        name,
        buf,
        needed,
        write: false,
    }
}

/// An output (or in-out) of `needed` words.
pub(crate) fn w<'a>(name: &'static str, buf: &'a GpuBuffer, needed: usize) -> Arg<'a> {
    Arg {
        name,
        buf,
        needed,
        write: true,
    }
}

/// Records `op` over `workgroups` workgroups (0: nothing to do) with `params` at
/// `@binding(0)` and `args` at `@binding(1..)`, in order. Does not wait.
pub(crate) fn launch<P: bytemuck::Pod>(
    ctx: &GpuContext,
    op: KernelId,
    params: &P,
    args: &[Arg],
    workgroups: u64,
) -> Result<(), GpuError> {
    launch_bytes(ctx, op, bytemuck::bytes_of(params), args, workgroups)
}

/// [`launch`] with the params struct as its bytes (a [`crate::plan::Command`]'s).
pub(crate) fn launch_bytes(
    ctx: &GpuContext,
    op: KernelId,
    bytes: &[u8],
    args: &[Arg],
    workgroups: u64,
) -> Result<(), GpuError> {
    check_args(ctx, op.name(), args)?;
    if workgroups == 0 {
        return Ok(());
    }
    let (x, y) = split(op.name(), workgroups, ctx.dispatch_limit())?;
    let compiled = ctx.pipeline(op)?;
    let mut pending = ctx.lock_pending();
    // NOTE: profiling without timestamp queries: this kernel alone between two waits.
    let profiling = ctx.profiler.is_on();
    let alone = profiling && ctx.profile_timing() == GpuTiming::SubmitAndWait;
    if alone {
        ctx.submit_and_wait(&mut pending)?;
    }
    let t0 = alone.then(std::time::Instant::now);
    if pending.dispatches == MAX_PENDING {
        ctx.submit_locked(&mut pending);
    }
    let offset = pending.dispatches * ctx.uniform_slot;
    pending.uniform_bytes.resize(offset as usize, 0);
    pending.uniform_bytes.extend_from_slice(bytes);
    let bind_group = bind_group(
        ctx,
        op,
        &compiled.layout,
        (offset, bytes.len() as u64),
        args,
    );
    let timestamp_writes = match profiling && !alone {
        true => Some(ctx.timestamp_writes(&mut pending, op)),
        false => None,
    };
    let encoder = pending.encoder.get_or_insert_with(|| ctx.new_encoder());
    {
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some(op.name()),
            timestamp_writes,
        });
        pass.set_pipeline(&compiled.pipeline);
        pass.set_bind_group(0, &bind_group, &[]);
        pass.dispatch_workgroups(x, y, 1);
    }
    pending.dispatches += 1;
    ctx.count_dispatch();
    if let Some(t0) = t0 {
        ctx.submit_and_wait(&mut pending)?;
        ctx.add_kernel_time(op, t0.elapsed());
    }
    Ok(())
}

/// The params at `uniform = (offset, size)` of the ring, then each argument's first
/// `needed` words.
fn bind_group(
    ctx: &GpuContext,
    op: KernelId,
    layout: &wgpu::BindGroupLayout,
    uniform: (u64, u64),
    args: &[Arg],
) -> wgpu::BindGroup {
    let params = binding(&ctx.uniforms, uniform.0, uniform.1);
    let buffers = args
        .iter()
        .map(|a| binding(a.buf.raw(), 0, 4 * a.needed.max(1) as u64));
    let entries: Vec<wgpu::BindGroupEntry> = std::iter::once(params)
        .chain(buffers)
        .enumerate()
        .map(|(i, resource)| wgpu::BindGroupEntry {
            binding: i as u32,
            resource,
        })
        .collect();
    ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some(op.name()),
        layout,
        entries: &entries,
    })
}

fn binding(buffer: &wgpu::Buffer, offset: u64, size: u64) -> wgpu::BindingResource<'_> {
    wgpu::BindingResource::Buffer(wgpu::BufferBinding {
        buffer,
        offset,
        size: wgpu::BufferSize::new(size),
    })
}

/// Lengths, binding limits, ownership, and no output bound twice in one dispatch (wgpu
/// rejects a buffer that is both `read` and `read_write` in one pass).
pub(crate) fn check_args(ctx: &GpuContext, op: &'static str, args: &[Arg]) -> Result<(), GpuError> {
    let limit = ctx.limits.max_storage_buffer_binding_size;
    for (i, a) in args.iter().enumerate() {
        if !std::ptr::eq(std::sync::Arc::as_ptr(a.buf.context()), ctx) {
            return Err(GpuError::ForeignBuffer { op, arg: a.name });
        }
        if a.buf.len() < a.needed {
            return Err(GpuError::Kernel(KernelError::TooShort {
                op,
                arg: a.name,
                len: a.buf.len(),
                needed: a.needed,
            }));
        }
        let bytes = 4 * a.needed as u64;
        if bytes > limit {
            return Err(GpuError::TooLarge {
                op,
                arg: a.name,
                bytes,
                limit,
            });
        }
        for b in &args[i + 1..] {
            if std::ptr::eq(a.buf, b.buf) && (a.write || b.write) {
                return Err(GpuError::Aliased {
                    op,
                    a: a.name,
                    b: b.name,
                });
            }
        }
    }
    Ok(())
}

/// [`crate::plan::grid`] under the adapter's `limit`, or the error naming `op`.
pub(crate) fn split(op: &'static str, workgroups: u64, limit: u32) -> Result<(u32, u32), GpuError> {
    crate::plan::grid(workgroups, limit).ok_or(GpuError::TooManyWorkgroups {
        op,
        workgroups,
        limit: limit as u64 * limit as u64,
    })
}
