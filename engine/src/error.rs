//! Errors name the op and the shapes; a panic is a bug, never the answer to bad input.

use std::fmt;

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// Two operands whose shapes do not fit together.
    ShapeMismatch {
        op: &'static str,
        lhs: Vec<usize>,
        rhs: Vec<usize>,
    },
    /// An operand whose shape the op cannot take (wrong rank, zero size, kernel too big).
    BadShape {
        op: &'static str,
        shape: Vec<usize>,
        expected: &'static str,
    },
    /// Operands on different devices: moving a tensor is explicit (`Tensor::to_device`).
    DeviceMismatch {
        op: &'static str,
        lhs: String,
        rhs: String,
    },
    /// A scalar argument out of its range (a temperature <= 0, a probability > 1, ...).
    BadArgument { op: &'static str, message: String },
    /// A class label that the logits have no column for.
    LabelOutOfRange {
        op: &'static str,
        label: u32,
        classes: usize,
    },
    /// The data length does not match the shape's element count.
    DataLength { shape: Vec<usize>, len: usize },
    /// A storage shorter than the kernel's params say it reads or writes.
    BufferLength {
        op: &'static str,
        arg: &'static str,
        len: usize,
        needed: usize,
    },
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
            Error::BufferLength {
                op,
                arg,
                len,
                needed,
            } => write!(f, "{op}: `{arg}` holds {len} values, the op needs {needed}"),
            Error::Gpu(message) => write!(f, "gpu: {message}"),
        }
    }
}

impl std::error::Error for Error {}

pub(crate) fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}
