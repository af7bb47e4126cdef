//! Bad calls are errors, never panics: short arguments, indices past their bound,
//! params out of range or built by hand with fields that disagree, on the CPU kernels
//! called directly and through the registry. (The GPU twins' errors for the same calls
//! are compared in `gpu.rs`.)

use kernels::cpu;
use kernels::params::*;
use kernels::registry::{Kernel, ReluForward};
use kernels::KernelError;

#[test]
fn a_label_past_the_classes_is_an_error_and_nothing_is_written() {
    let p = RowParams::new(2, 4).unwrap();
    let (mut loss, mut grad) = ([7.0; 2], [7.0; 8]);
    let err = cpu::cross_entropy_forward(&[0.0; 8], &[1, 4], &mut loss, &mut grad, &p).unwrap_err();
    assert_eq!(
        err,
        KernelError::IndexOutOfRange {
            op: "cross_entropy_forward",
            arg: "labels",
            index: 4,
            bound: 4
        }
    );
    assert_eq!((loss, grad), ([7.0; 2], [7.0; 8]));
    let p = p.with_temperature(2.0);
    let mut loss = [0.0; 4];
    let err = cpu::kd_loss_forward(&[0.0; 8], &[0.0; 8], &[9, 0], &mut loss, &mut grad, &p);
    assert!(
        matches!(err, Err(KernelError::IndexOutOfRange { index: 9, .. })),
        "{err:?}"
    );
}

#[test]
fn a_temperature_that_is_not_positive_is_an_error() {
    for t in [0.0, -1.0, f32::NAN] {
        let p = RowParams::new(1, 3).unwrap().with_temperature(t);
        let err = cpu::softmax_kl_forward(&[0.0; 3], &[0.0; 3], &mut [0.0], &mut [0.0; 3], &p)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("softmax_kl_forward: temperature {t} must be positive")
        );
    }
}

#[test]
fn an_argmax_past_its_plane_is_an_error() {
    // One 2×2 plane pooled to 1×1: the winner's index must be below 4.
    let p = Pool2dParams::new(1, 1, 2, 2, 2, 2).unwrap();
    let err = cpu::max_pool2d_backward(&[1.0], &[4], &mut [0.0; 4], &p).unwrap_err();
    assert_eq!(
        err.to_string(),
        "max_pool2d_backward: `argmax` holds 4, every value must be below 4"
    );
}

#[test]
fn params_built_by_hand_are_checked_before_they_index_anything() {
    // An output size that the input sizes do not give.
    let mut p = Conv2dParams::new(1, 1, 4, 4, 1, 3, 3, 1, 0).unwrap();
    p.h_out = 9;
    let err = cpu::conv2d_forward(&[0.0; 16], &[0.0; 9], &mut [0.0; 81], &p).unwrap_err();
    assert!(
        matches!(
            err,
            KernelError::BadParams {
                op: "Conv2dParams",
                ..
            }
        ),
        "{err}"
    );
    // Sizes whose products wrap a u32 (2^16 · 2^16 = 2^32 → 0).
    let p = Conv2dParams {
        n: 1 << 16,
        c_in: 1 << 16,
        h: 1,
        w: 1,
        c_out: 1,
        kh: 1,
        kw: 1,
        stride: 1,
        h_out: 1,
        w_out: 1,
        ..Conv2dParams::default()
    };
    let err = cpu::conv2d_forward(&[], &[], &mut [], &p).unwrap_err();
    assert!(matches!(err, KernelError::TooLarge { .. }), "{err}");
    let p = Pool2dParams {
        kernel: 0,
        ..Pool2dParams::new(1, 1, 2, 2, 2, 2).unwrap()
    };
    let err = cpu::max_pool2d_forward(&[0.0; 4], &mut [0.0], &mut [0], &p).unwrap_err();
    assert!(matches!(err, KernelError::BadParams { .. }), "{err}");
    // A matmul whose spans pass u32::MAX words.
    let p = MatmulParams {
        m: u32::MAX,
        n: 1,
        k: 2,
        ..MatmulParams::default()
    };
    let err = cpu::matmul(&[], &[0.0; 2], &mut [], &p).unwrap_err();
    assert_eq!(
        err.to_string(),
        "matmul: a = 8589934590 is past 4294967295, the most a 32-bit index reaches"
    );
    assert!(matches!(err, KernelError::TooLarge { .. }), "{err}");
}

#[test]
fn row_kernels_refuse_rows_without_columns_and_odd_loss_tables() {
    let p = RowParams::new(2, 0).unwrap();
    let err = cpu::log_softmax_forward(&[], &mut [], &p).unwrap_err();
    assert!(
        matches!(
            err,
            KernelError::BadParams {
                op: "log_softmax_forward",
                ..
            }
        ),
        "{err}"
    );
    let p = RowParams::new(1, 4).unwrap();
    let err = cpu::row_loss_mean(&[0.0; 4], &mut [0.0], &mut [0.0; 4], &p).unwrap_err();
    assert!(
        matches!(
            err,
            KernelError::BadParams {
                op: "row_loss_mean",
                ..
            }
        ),
        "{err}"
    );
    let p = RowParams::new(1, 1).unwrap().with_temperature(1.0);
    let err =
        cpu::dkd_loss_forward(&[0.0], &[0.0], &[0], &mut [0.0; 3], &mut [0.0], &p).unwrap_err();
    assert!(
        matches!(
            err,
            KernelError::BadParams {
                op: "dkd_loss_forward",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn the_registry_refuses_another_number_of_arguments() {
    let p = ElementwiseParams::new(2).unwrap();
    let err = ReluForward::cpu(&[&[0.0; 2], &[0.0; 2]], &mut [&mut [0.0; 2]], &p).unwrap_err();
    assert_eq!(
        err.to_string(),
        "relu_forward: 2 read and 1 written arguments given; it takes 1 and 1"
    );
    let err = ReluForward::cpu(&[&[0.0; 2]], &mut [], &p).unwrap_err();
    assert!(matches!(err, KernelError::BadParams { .. }), "{err}");
}

#[test]
fn longer_arguments_are_cut_to_their_span_as_on_the_gpu() {
    // Only the first `len` words are read and written, as a GPU binding of that size.
    let p = ElementwiseParams::new(2).unwrap();
    let mut out = [9.0; 3];
    cpu::relu_forward(&[-1.0, 2.0, -3.0], &mut out, &p).unwrap();
    assert_eq!(out, [0.0, 2.0, 9.0]);
}
