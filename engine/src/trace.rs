//! Recording the kernels a computation runs, as data: [`record`] runs a closure on the
//! CPU and returns, beside its result, every kernel call it made, each as the GPU
//! commands that would run it ([`kernels::plan`]) on numbered buffers.
//!
//! That is how a network leaves the program for a browser (`models::web`): one forward
//! pass is recorded, and a small WebGPU host replays the commands with the same WGSL, so
//! the network's logic exists once, here.
//!
//! ```
//! use engine::{trace, Device, Tensor};
//!
//! let w = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0], &[2, 2], &Device::Cpu)?;
//! let x = Tensor::from_vec(vec![1.0, -1.0], &[1, 2], &Device::Cpu)?;
//! let (y, trace) = trace::record(|| x.matmul(&w)?.relu())?;
//! let names: Vec<_> = trace.calls().iter().map(|c| c.kernel.name()).collect();
//! assert_eq!(names, ["matmul", "relu_forward"]);
//! // x and w are read before anything writes them: their values are the trace's inputs.
//! assert_eq!(trace.buffers()[trace.buffer_of(&w).unwrap()].init.as_deref(), Some(&[1.0, 2.0, 3.0, 4.0][..]));
//! // y is written by the last call.
//! assert_eq!(trace.calls()[1].args[1], trace.buffer_of(&y).unwrap());
//! # Ok::<(), engine::Error>(())
//! ```
//!
//! Buffers are told apart by the address of their host memory, and a reused address (a
//! dropped output's `Vec` taken back from the pool) is the same buffer again, as a GPU
//! buffer pool would reuse it. A value the trace did not write, read from a known
//! address (a constant made in the middle of the closure) becomes a new input buffer:
//! every read sees what the recorded commands would have left there.

use crate::error::{Error, Result};
use crate::storage::Storage;
use crate::tensor::Tensor;
use kernels::plan::{Buffer, Command, Plan};
use kernels::registry::{Access, Kernel, KernelId};
use std::cell::RefCell;
use std::collections::HashMap;

/// A buffer of a [`Trace`].
#[derive(Clone, Debug, PartialEq)]
pub struct TracedBuffer {
    /// Its size: the most words any call gave it.
    pub words: usize,
    /// The values it must hold before the first command, for a buffer the trace reads
    /// before writing (a parameter, a constant, the closure's input); `None` for one
    /// that a command writes first.
    pub init: Option<Vec<f32>>,
    /// Whether a command updates it in place after it started with `init` (an
    /// optimizer's parameter): a replay must restore `init` before each run.
    pub overwritten: bool,
}

/// One kernel call of a [`Trace`].
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    /// The kernel the engine ran.
    pub kernel: KernelId,
    /// The buffer of each of its arguments, in [`Kernel::ARGS`] order: what
    /// [`Buffer::Arg`] of the plan refers to.
    pub args: Vec<usize>,
    /// Its GPU commands (a fresh output the engine zeroes first begins with a clear).
    pub plan: Plan,
}

/// The kernel calls of a computation, in order, on numbered buffers.
#[derive(Clone, Debug, Default)]
pub struct Trace {
    buffers: Vec<TracedBuffer>,
    calls: Vec<Call>,
    // host address -> buffer, for the buffers alive at the end
    at: HashMap<usize, usize>,
}

impl Trace {
    /// Every buffer, by number.
    pub fn buffers(&self) -> &[TracedBuffer] {
        &self.buffers
    }

    /// Every kernel call, in order.
    pub fn calls(&self) -> &[Call] {
        &self.calls
    }

    /// The buffer that holds `t`'s values at the end of the trace, if the trace used it.
    /// `t` must have lived through the trace (an input, a parameter, the result): a
    /// tensor made afterwards may sit at the address of a buffer the trace freed.
    pub fn buffer_of(&self, t: &Tensor) -> Option<usize> {
        match &*t.storage() {
            Storage::Cpu(v) => self.at.get(&(v.as_ptr() as usize)).copied(),
            #[cfg(feature = "gpu")]
            Storage::Gpu(_) => None,
        }
    }
}

struct Recorder {
    trace: Trace,
    // what the trace says each buffer holds now
    values: Vec<Vec<f32>>,
    on_gpu: bool,
    // a call whose GPU commands could not be planned
    failed: Option<kernels::KernelError>,
}

/// Ends the recording however `record`'s closure ends, a panic included.
struct Stop;

impl Drop for Stop {
    fn drop(&mut self) {
        RECORDER.with(|r| r.borrow_mut().take());
    }
}

thread_local! {
    static RECORDER: RefCell<Option<Recorder>> = const { RefCell::new(None) };
}

/// Runs `f` on this thread and records the kernels it runs. Every tensor it works on
/// must be on the CPU (a GPU call is an error), and recordings do not nest.
pub fn record<T>(f: impl FnOnce() -> Result<T>) -> Result<(T, Trace)> {
    let refuse = |message: &str| Error::BadArgument {
        op: "trace",
        message: message.into(),
    };
    RECORDER.with(|r| match r.borrow().is_some() {
        true => Err(refuse("a trace is already being recorded on this thread")),
        false => Ok(()),
    })?;
    RECORDER.with(|r| {
        *r.borrow_mut() = Some(Recorder {
            trace: Trace::default(),
            values: Vec::new(),
            on_gpu: false,
            failed: None,
        })
    });
    let stop = Stop;
    let result = f();
    let recorder = RECORDER.with(|r| r.borrow_mut().take());
    drop(stop);
    let recorder = recorder.ok_or_else(|| refuse("the recording was lost"))?;
    if recorder.on_gpu {
        return Err(refuse("only a computation on the CPU can be recorded"));
    }
    if let Some(e) = recorder.failed {
        return Err(e.into());
    }
    Ok((result?, recorder.trace))
}

/// Whether this thread is recording: one thread-local read per kernel call.
pub(crate) fn recording() -> bool {
    RECORDER.with(|r| r.borrow().is_some())
}

/// Notes a GPU call while recording, which makes [`record`] fail.
#[cfg(feature = "gpu")]
pub(crate) fn saw_gpu() {
    RECORDER.with(|r| {
        if let Some(rec) = r.borrow_mut().as_mut() {
            rec.on_gpu = true;
        }
    });
}

/// Records a call of `K` on `args` (its arguments in [`Kernel::ARGS`] order, before the
/// call); `zeroed[i]`: argument `i` is an output the engine made zeroed.
pub(crate) fn before<K: Kernel>(p: &K::Params, args: &[&[f32]], zeroed: &[bool]) {
    RECORDER.with(|r| {
        let mut r = r.borrow_mut();
        let Some(rec) = r.as_mut() else { return };
        let mut plan = match K::plan(p) {
            Ok(plan) => plan,
            Err(e) => {
                rec.failed.get_or_insert(e);
                return;
            }
        };
        let mut ids = Vec::with_capacity(args.len());
        for (i, (arg, values)) in K::ARGS.iter().zip(args).enumerate() {
            let fresh = zeroed.get(i).copied().unwrap_or(false);
            let reads = arg.access != Access::Out && !fresh;
            ids.push(rec.sight(values, reads));
            if fresh {
                let clear = Command::Clear {
                    buffer: Buffer::Arg(i),
                    words: values.len(),
                };
                plan.commands.insert(0, clear);
            }
        }
        rec.trace.calls.push(Call {
            kernel: K::ID,
            args: ids,
            plan,
        });
    });
}

/// After the call [`before`] recorded: what its written arguments hold now.
pub(crate) fn after<K: Kernel>(args: &[&[f32]]) {
    RECORDER.with(|r| {
        let mut r = r.borrow_mut();
        let Some(rec) = r.as_mut() else { return };
        let Some(call) = rec.trace.calls.last().filter(|c| c.kernel == K::ID) else {
            return;
        };
        let ids = call.args.clone();
        for ((arg, values), id) in K::ARGS.iter().zip(args).zip(ids) {
            if arg.access.writes() {
                rec.values[id] = values.to_vec();
                let buffer = &mut rec.trace.buffers[id];
                buffer.overwritten |= buffer.init.is_some();
            }
        }
    });
}

impl Recorder {
    /// The buffer at `values`' address; a new one when the address is new, when an
    /// argument the kernel reads holds other values than the trace left there, or when
    /// an output lands where a buffer with starting values was (which a replay must not
    /// overwrite: it runs again).
    fn sight(&mut self, values: &[f32], reads: bool) -> usize {
        let address = values.as_ptr() as usize;
        let known = self.trace.at.get(&address).copied();
        let same = |id: usize| match reads {
            true => same_bits(&self.values[id], values),
            false => self.trace.buffers[id].init.is_none(),
        };
        let id = match known {
            Some(id) if same(id) => id,
            _ => {
                self.trace.buffers.push(TracedBuffer {
                    words: 0,
                    init: reads.then(|| values.to_vec()),
                    overwritten: false,
                });
                self.values.push(values.to_vec());
                self.trace.at.insert(address, self.trace.buffers.len() - 1);
                self.trace.buffers.len() - 1
            }
        };
        let buffer = &mut self.trace.buffers[id];
        buffer.words = buffer.words.max(values.len());
        id
    }
}

fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Device;

    fn tensor(values: &[f32]) -> Tensor {
        Tensor::from_vec(values.to_vec(), &[values.len()], &Device::Cpu).unwrap()
    }

    #[test]
    fn a_pooled_output_is_the_same_buffer_again() {
        // NOTE: the pool keeps buffers of 1,024 words and more; an odd length that no
        // other test uses, as the pool is the process's.
        let x = tensor(&[0.5; 1031]);
        let ((), trace) = record(|| {
            drop(x.relu()?); // its Vec goes back to the pool ...
            let _y = x.scale(2.0)?; // ... and the next output of that length takes it
            Ok(())
        })
        .unwrap();
        let [relu, scale] = trace.calls() else {
            panic!("{:?}", trace.calls())
        };
        assert_eq!(relu.args[1], scale.args[1]);
        assert_eq!(trace.buffers().len(), 2, "x and the one output buffer");
        assert_eq!(trace.buffers()[relu.args[1]].init, None);
    }

    #[test]
    fn values_changed_outside_the_trace_are_a_new_input() {
        let x = tensor(&[1.0, -2.0]);
        let ((), trace) = record(|| {
            x.relu()?;
            if let Storage::Cpu(v) = &mut *x.storage_mut() {
                v[1] = 5.0; // what no recorded command did
            }
            x.relu()?;
            Ok(())
        })
        .unwrap();
        let [first, second] = trace.calls() else {
            panic!("{:?}", trace.calls())
        };
        assert_ne!(first.args[0], second.args[0]);
        let init = |call: &Call| trace.buffers()[call.args[0]].init.clone();
        assert_eq!(init(first), Some(vec![1.0, -2.0]));
        assert_eq!(init(second), Some(vec![1.0, 5.0]));
    }

    #[test]
    fn a_fresh_zeroed_output_is_cleared_first() {
        // matmul's `c` is a `write` argument the engine zeroes: the plan clears it.
        let a = Tensor::from_vec(vec![1.0, 2.0], &[1, 2], &Device::Cpu).unwrap();
        let (_, trace) = record(|| a.matmul_t(&a)).unwrap();
        let call = &trace.calls()[0];
        assert!(matches!(
            call.plan.commands[0],
            Command::Clear {
                buffer: Buffer::Arg(2),
                words: 1
            }
        ));
    }

    #[test]
    fn a_panic_ends_the_recording_and_nesting_is_refused() {
        let caught = std::panic::catch_unwind(|| record::<()>(|| panic!("in the closure")));
        assert!(caught.is_err());
        let nested = record(|| record(|| Ok(())).map(|_| ()));
        assert!(nested.unwrap_err().to_string().contains("already"));
        assert!(record(|| Ok(())).is_ok(), "the thread records again");
    }
}
