//! Errors name the op and the shapes; a panic is a bug, never the answer to bad input.

use kernels::KernelError;
use std::fmt;

/// The engine's result: every fallible op returns one.
pub type Result<T> = std::result::Result<T, Error>;

/// Why an op refused its input, or the device failed.
#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// Two operands whose shapes do not fit together.
    ShapeMismatch {
        /// The op that refused them.
        op: &'static str,
        /// The shape of the left operand (or of `self`).
        lhs: Vec<usize>,
        /// The shape of the right operand (or of the other argument).
        rhs: Vec<usize>,
    },
    /// An operand whose shape the op cannot take (wrong rank, zero size, kernel too big).
    BadShape {
        /// The op that refused it.
        op: &'static str,
        /// The shape it got.
        shape: Vec<usize>,
        /// What shape it takes, in words (`"(rows, classes), both >= 1"`).
        expected: &'static str,
    },
    /// Operands on different devices: moving a tensor is explicit (`Tensor::to_device`).
    DeviceMismatch {
        /// The op that refused them.
        op: &'static str,
        /// The device of the left operand, as displayed.
        lhs: String,
        /// The device of the right operand, as displayed.
        rhs: String,
    },
    /// A scalar argument out of its range (a temperature <= 0, a probability > 1, ...).
    BadArgument {
        /// The op that refused it.
        op: &'static str,
        /// What is wrong, with the value given.
        message: String,
    },
    /// A class label that the logits have no column for.
    LabelOutOfRange {
        /// The op that refused it.
        op: &'static str,
        /// The largest label given.
        label: u32,
        /// Columns of the logits: labels must be below it.
        classes: usize,
    },
    /// The data length does not match the shape's element count.
    DataLength {
        /// The shape of the tensor.
        shape: Vec<usize>,
        /// The number of values given.
        len: usize,
    },
    /// A kernel's refusal, the same on either device: a storage shorter than its params
    /// say, a size past what 32-bit indices reach, an index out of range.
    Kernel(KernelError),
    /// The GPU backend failed (no adapter, a buffer past the device's limits, ...).
    Gpu(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::ShapeMismatch { op, lhs, rhs } => {
                write!(f, "{op}: shapes do not fit: lhs {lhs:?}, rhs {rhs:?}")
            }
            Error::BadShape {
                op,
                shape,
                expected,
            } => {
                write!(f, "{op}: got shape {shape:?}, expected {expected}")
            }
            Error::DeviceMismatch { op, lhs, rhs } => write!(
                f,
                "{op}: operands on different devices ({lhs} and {rhs}); move one with to_device"
            ),
            Error::BadArgument { op, message } => write!(f, "{op}: {message}"),
            Error::LabelOutOfRange { op, label, classes } => {
                write!(f, "{op}: label {label} out of range for {classes} classes")
            }
            Error::DataLength { shape, len } => {
                write!(
                    f,
                    "tensor of shape {shape:?} needs {} values, got {len}",
                    numel(shape)
                )
            }
            Error::Kernel(e) => e.fmt(f),
            Error::Gpu(message) => write!(f, "gpu: {message}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<KernelError> for Error {
    fn from(e: KernelError) -> Self {
        Error::Kernel(e)
    }
}

/// The elements of `shape`, saturated (a shape that overflows is refused at creation).
pub(crate) fn numel(shape: &[usize]) -> usize {
    shape.iter().fold(1usize, |n, &d| n.saturating_mul(d))
}

/// The elements of a new tensor of `shape`, or [`KernelError::TooLarge`] past the
/// `u32::MAX` words that every kernel's indices reach: then every tensor that exists
/// fits every params struct, and no product of its sizes overflows.
pub(crate) fn checked_numel(shape: &[usize]) -> Result<usize> {
    let value = shape
        .iter()
        .fold(1u128, |n, &d| n.saturating_mul(d as u128));
    match value > kernels::MAX_WORDS as u128 {
        true => Err(Error::Kernel(KernelError::TooLarge {
            op: "tensor",
            what: "the elements of its shape",
            value,
        })),
        false => Ok(value as usize),
    }
}
