//! `Tensor`: a shape, f32 storage on a device, and (when recorded) the op that made it.

use crate::autograd::{is_grad_enabled, Op};
use crate::device::Device;
use crate::error::{checked_numel, numel, Error, Result};
use crate::storage::Storage;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Identifies a tensor for the gradient store; unique within the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TensorId(u64);

impl TensorId {
    fn next() -> TensorId {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        TensorId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

/// A reference-counted f32 array. Cloning is cheap and shares the values.
#[derive(Clone)]
pub struct Tensor(Arc<Inner>);

struct Inner {
    id: TensorId,
    shape: Vec<usize>,
    // NOTE: shared by reshapes of the same values, and written in place only by
    // optimizer steps, which is why it sits behind a lock.
    storage: Arc<RwLock<Storage>>,
    device: Device,
    op: Option<Op>,
    requires_grad: bool,
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tensor")
            .field("id", &self.0.id)
            .field("shape", &self.0.shape)
            .field("device", &self.0.device)
            .field("requires_grad", &self.0.requires_grad)
            .finish()
    }
}

impl Tensor {
    /// A constant (no gradient) from host values.
    pub fn from_vec(data: Vec<f32>, shape: &[usize], device: &Device) -> Result<Tensor> {
        if data.len() != checked_numel(shape)? {
            return Err(Error::DataLength {
                shape: shape.to_vec(),
                len: data.len(),
            });
        }
        let storage = Storage::from_vec(data, device)?;
        Ok(Tensor::leaf(storage, shape.to_vec(), device.clone(), false))
    }

    /// A trainable leaf: `backward` computes its gradient.
    pub fn parameter(data: Vec<f32>, shape: &[usize], device: &Device) -> Result<Tensor> {
        if data.len() != checked_numel(shape)? {
            return Err(Error::DataLength {
                shape: shape.to_vec(),
                len: data.len(),
            });
        }
        let storage = Storage::from_vec(data, device)?;
        Ok(Tensor::leaf(storage, shape.to_vec(), device.clone(), true))
    }

    /// A constant of zeros.
    pub fn zeros(shape: &[usize], device: &Device) -> Result<Tensor> {
        let storage = Storage::zeros(checked_numel(shape)?, device)?;
        Ok(Tensor::leaf(storage, shape.to_vec(), device.clone(), false))
    }

    /// A constant of shape `[]` holding `value`.
    pub fn scalar(value: f32, device: &Device) -> Result<Tensor> {
        Tensor::from_vec(vec![value], &[], device)
    }

    fn leaf(
        storage: impl Into<Arc<RwLock<Storage>>>,
        shape: Vec<usize>,
        device: Device,
        requires_grad: bool,
    ) -> Tensor {
        Tensor(Arc::new(Inner {
            id: TensorId::next(),
            shape,
            storage: storage.into(),
            device,
            op: None,
            requires_grad,
        }))
    }

    /// The result of an op: records `op` when gradients are on and an input needs one.
    pub(crate) fn from_op(storage: Storage, shape: Vec<usize>, device: &Device, op: Op) -> Tensor {
        let record = is_grad_enabled() && op.inputs().iter().any(|t| t.requires_grad());
        Tensor(Arc::new(Inner {
            id: TensorId::next(),
            shape,
            storage: Arc::new(RwLock::new(storage)),
            device: device.clone(),
            op: if record { Some(op) } else { None },
            requires_grad: record,
        }))
    }

    /// The same values under another shape; shares the storage.
    pub(crate) fn view(&self, shape: Vec<usize>, op: Op) -> Tensor {
        let record = is_grad_enabled() && self.requires_grad();
        Tensor(Arc::new(Inner {
            id: TensorId::next(),
            shape,
            storage: self.0.storage.clone(),
            device: self.0.device.clone(),
            op: if record { Some(op) } else { None },
            requires_grad: record,
        }))
    }

    /// This tensor's id; a reshape or a detach gets a new one though it shares the values.
    pub fn id(&self) -> TensorId {
        self.0.id
    }

    /// The size of each axis; `[]` for a scalar.
    pub fn shape(&self) -> &[usize] {
        &self.0.shape
    }

    /// The number of values: the product of the shape (1 for a scalar).
    pub fn numel(&self) -> usize {
        numel(&self.0.shape)
    }

    /// The device that holds the values.
    pub fn device(&self) -> &Device {
        &self.0.device
    }

    /// True for a parameter, and for the result of an op recorded because an input needs a
    /// gradient.
    pub fn requires_grad(&self) -> bool {
        self.0.requires_grad
    }

    /// The recorded op that made this tensor; `None` for a leaf or an unrecorded result.
    pub fn op(&self) -> Option<&Op> {
        self.0.op.as_ref()
    }

    /// The same values, cut from the graph: no gradient flows through the result.
    pub fn detach(&self) -> Tensor {
        Tensor::leaf(
            self.0.storage.clone(),
            self.0.shape.clone(),
            self.0.device.clone(),
            false,
        )
    }

    /// Read access to the values (on the GPU, a buffer handle, not host values).
    pub fn storage(&self) -> RwLockReadGuard<'_, Storage> {
        // NOTE: a poisoned lock means a panic while writing, which is already a bug;
        // the values are still there, so carry on with them.
        self.0.storage.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Write access for in-place updates (optimizer steps, loading a checkpoint).
    pub fn storage_mut(&self) -> RwLockWriteGuard<'_, Storage> {
        self.0.storage.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Copies the values to the host; on the GPU this is the one place that waits.
    pub fn to_vec(&self) -> Result<Vec<f32>> {
        self.storage().to_vec()
    }

    /// The single value of a one-element tensor.
    pub fn to_scalar(&self) -> Result<f32> {
        if self.numel() != 1 {
            return Err(Error::BadShape {
                op: "to_scalar",
                shape: self.shape().to_vec(),
                expected: "one element",
            });
        }
        Ok(self.to_vec()?[0])
    }

    /// A copy on `device` (a constant: moving is not recorded for autograd).
    pub fn to_device(&self, device: &Device) -> Result<Tensor> {
        let storage = if self.device().same(device) {
            self.storage().duplicate()?
        } else {
            Storage::from_vec(self.to_vec()?, device)?
        };
        Ok(Tensor::leaf(
            storage,
            self.shape().to_vec(),
            device.clone(),
            false,
        ))
    }

    /// Overwrites the values in place with host values of the same length.
    pub fn assign(&self, data: Vec<f32>) -> Result<()> {
        if data.len() != self.numel() {
            return Err(Error::DataLength {
                shape: self.shape().to_vec(),
                len: data.len(),
            });
        }
        *self.storage_mut() = Storage::from_vec(data, self.device())?;
        Ok(())
    }

    /// True when both share their values (a reshape or a detach of the other).
    pub(crate) fn shares_storage(&self, other: &Tensor) -> bool {
        Arc::ptr_eq(&self.0.storage, &other.0.storage)
    }

    pub(crate) fn check_same_device(&self, op: &'static str, other: &Tensor) -> Result<()> {
        if self.device().same(other.device()) {
            Ok(())
        } else {
            Err(Error::DeviceMismatch {
                op,
                lhs: self.device().to_string(),
                rhs: other.device().to_string(),
            })
        }
    }
}

impl From<Storage> for Arc<RwLock<Storage>> {
    fn from(storage: Storage) -> Self {
        Arc::new(RwLock::new(storage))
    }
}

/// `u32` values `(len)` on a device: the class labels of a batch for the losses, or the
/// row indices of [`Tensor::gather_rows`].
#[derive(Clone, Debug)]
pub struct Labels {
    storage: Arc<Storage>,
    len: usize,
    device: Device,
    // The largest value, checked by every op against what it indexes.
    max: u32,
}

impl Labels {
    /// `labels` on `device`.
    pub fn new(labels: &[u32], device: &Device) -> Result<Labels> {
        let max = labels.iter().copied().max().unwrap_or(0);
        let storage = Storage::from_u32(labels, device)?;
        Ok(Labels {
            storage: Arc::new(storage),
            len: labels.len(),
            device: device.clone(),
            max,
        })
    }

    /// How many values.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Where the values live.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The words behind them (`u32` bit patterns).
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// The values, copied to the host.
    pub fn to_vec(&self) -> Result<Vec<u32>> {
        self.storage.to_vec_u32()
    }

    pub(crate) fn max(&self) -> u32 {
        self.max
    }
}

impl Tensor {
    /// A constant around a storage that an op or backward produced.
    pub(crate) fn from_storage(storage: Storage, shape: Vec<usize>, device: &Device) -> Tensor {
        Tensor::leaf(storage, shape, device.clone(), false)
    }
}
