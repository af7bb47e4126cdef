//! Why a kernel, or a params constructor, refused its arguments: the same answer on the
//! CPU and on the GPU, so that bad input is an error on either device, never a panic.

use std::fmt;

/// The most words a kernel argument may span, and the largest size a params field holds:
/// WGSL indexes a buffer with a `u32`, and the params structs are its uniforms.
pub const MAX_WORDS: u64 = u32::MAX as u64;

/// A kernel's refusal: a short argument, an index past its bound, params out of range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KernelError {
    /// An argument holds fewer words than its params say the kernel reads or writes.
    TooShort {
        /// The kernel's name (`matmul`, `conv2d_forward`).
        op: &'static str,
        /// The argument that is short, as the kernel names it.
        arg: &'static str,
        /// Words it holds.
        len: usize,
        /// Words the params say it spans.
        needed: usize,
    },
    /// A size, or the words an argument spans, past [`MAX_WORDS`].
    TooLarge {
        /// The params struct (`Conv2dParams`) or the kernel that met it.
        op: &'static str,
        /// The size or span, in words (`m·k`, `n·c_in·h·w`).
        what: &'static str,
        /// Its value.
        value: u128,
    },
    /// An index argument (a class label, a row of a gather, an argmax position) past the
    /// bound its params give.
    IndexOutOfRange {
        /// The kernel's name.
        op: &'static str,
        /// The index argument.
        arg: &'static str,
        /// The first index that is out of range.
        index: u32,
        /// Every index must be below it.
        bound: usize,
    },
    /// Params that make no valid call: a zero size where the op needs one, a window
    /// larger than its input, a temperature that is not positive.
    BadParams {
        /// The params struct or the kernel that refused them.
        op: &'static str,
        /// What is wrong, with the values given.
        message: String,
    },
}

impl fmt::Display for KernelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KernelError::TooShort {
                op,
                arg,
                len,
                needed,
            } => write!(
                f,
                "{op}: `{arg}` holds {len} values, the params need {needed}"
            ),
            KernelError::TooLarge { op, what, value } => write!(
                f,
                "{op}: {what} = {value} is past {MAX_WORDS}, the most a 32-bit index reaches"
            ),
            KernelError::IndexOutOfRange {
                op,
                arg,
                index,
                bound,
            } => write!(
                f,
                "{op}: `{arg}` holds {index}, every value must be below {bound}"
            ),
            KernelError::BadParams { op, message } => write!(f, "{op}: {message}"),
        }
    }
}

impl std::error::Error for KernelError {}

/// The first `needed` words of the argument `arg`, or [`KernelError::TooShort`] (or
/// [`KernelError::TooLarge`] for a span no index reaches). Every kernel, on either device,
/// checks each argument this way and touches only those words.
pub fn words<'a, T>(
    op: &'static str,
    arg: &'static str,
    s: &'a [T],
    needed: usize,
) -> Result<&'a [T], KernelError> {
    span(op, arg, needed)?;
    s.get(..needed).ok_or(KernelError::TooShort {
        op,
        arg,
        len: s.len(),
        needed,
    })
}

/// [`words`] of an argument the kernel writes.
pub fn words_mut<'a, T>(
    op: &'static str,
    arg: &'static str,
    s: &'a mut [T],
    needed: usize,
) -> Result<&'a mut [T], KernelError> {
    span(op, arg, needed)?;
    let len = s.len();
    s.get_mut(..needed).ok_or(KernelError::TooShort {
        op,
        arg,
        len,
        needed,
    })
}

/// [`KernelError::TooLarge`] when `needed` words are more than an index reaches.
pub(crate) fn span(op: &'static str, what: &'static str, needed: usize) -> Result<(), KernelError> {
    match needed as u64 > MAX_WORDS {
        true => Err(KernelError::TooLarge {
            op,
            what,
            value: needed as u128,
        }),
        false => Ok(()),
    }
}

/// The first index of `index` that is not below `bound`, as an error.
pub fn check_indices(
    op: &'static str,
    arg: &'static str,
    index: &[u32],
    bound: usize,
) -> Result<(), KernelError> {
    match index.iter().find(|&&i| i as usize >= bound) {
        Some(&index) => Err(KernelError::IndexOutOfRange {
            op,
            arg,
            index,
            bound,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_cut_to_the_span_and_refuse_a_short_argument() {
        let x = [1.0f32, 2.0, 3.0];
        assert_eq!(words("op", "x", &x, 2), Ok(&x[..2]));
        let err = words("op", "x", &x, 4).unwrap_err();
        assert_eq!(
            err,
            KernelError::TooShort {
                op: "op",
                arg: "x",
                len: 3,
                needed: 4
            }
        );
        assert_eq!(err.to_string(), "op: `x` holds 3 values, the params need 4");
        let past = MAX_WORDS as usize + 1;
        assert!(matches!(
            words("op", "x", &x, past),
            Err(KernelError::TooLarge { value, .. }) if value == past as u128
        ));
    }

    #[test]
    fn indices_name_the_first_one_out_of_range() {
        assert_eq!(check_indices("op", "labels", &[0, 9, 3], 10), Ok(()));
        let err = check_indices("op", "labels", &[0, 10, 11], 10).unwrap_err();
        assert_eq!(
            err.to_string(),
            "op: `labels` holds 10, every value must be below 10"
        );
    }
}
