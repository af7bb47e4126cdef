//! Hand-derived cases through the engine, the errors it names, and no-grad mode.

use engine::{no_grad, Device, Error, Labels, Tensor};

fn t(data: &[f32], shape: &[usize]) -> Tensor {
    Tensor::parameter(data.to_vec(), shape, &Device::Cpu).unwrap()
}

fn close(a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() <= 1e-5 * (1.0 + y.abs()), "{a:?} != {b:?}");
    }
}

#[test]
fn matmul_by_hand() {
    // [[1,2],[3,4]]·[[5,6],[7,8]] = [[1·5+2·7, 1·6+2·8], [3·5+4·7, 3·6+4·8]] = [[19,22],[43,50]]
    let (a, b) = (t(&[1., 2., 3., 4.], &[2, 2]), t(&[5., 6., 7., 8.], &[2, 2]));
    let c = a.matmul(&b).unwrap();
    close(&c.to_vec().unwrap(), &[19., 22., 43., 50.]);
    // d sum(c) / da = ones · bᵀ = row sums of b per column of a: [[11,15],[11,15]];
    // d sum(c) / db = aᵀ · ones = column sums of a repeated: [[4,4],[6,6]].
    let grads = c.sum().unwrap().backward().unwrap();
    close(
        &grads.get(&a).unwrap().to_vec().unwrap(),
        &[11., 15., 11., 15.],
    );
    close(&grads.get(&b).unwrap().to_vec().unwrap(), &[4., 4., 6., 6.]);
}

#[test]
fn cross_entropy_by_hand() {
    // logits [0, ln 3]: softmax = [1/4, 3/4]; label 1: loss = -ln(3/4) ≈ 0.287682;
    // d loss / d logits = softmax - onehot = [1/4, -1/4].
    let x = t(&[0.0, 3f32.ln()], &[1, 2]);
    let y = Labels::new(&[1], &Device::Cpu).unwrap();
    let loss = x.cross_entropy(&y).unwrap();
    close(&[loss.to_scalar().unwrap()], &[-(0.75f32).ln()]);
    let grads = loss.backward().unwrap();
    close(&grads.get(&x).unwrap().to_vec().unwrap(), &[0.25, -0.25]);
}

#[test]
fn gradients_accumulate_over_reuse() {
    // y = x + x = 2x: dy/dx = 2 for each element.
    let x = t(&[1., -2., 3.], &[3]);
    let grads = x.add(&x).unwrap().sum().unwrap().backward().unwrap();
    close(&grads.get(&x).unwrap().to_vec().unwrap(), &[2., 2., 2.]);
}

#[test]
fn softmax_kl_with_huge_logits_stays_finite() {
    let s = t(&[1e4, -1e4, 0.0, 9999.0], &[2, 2]);
    let teacher = Tensor::from_vec(vec![-1e4, 1e4, 1e4, 0.0], &[2, 2], &Device::Cpu).unwrap();
    let loss = s.softmax_kl(&teacher, 2.0).unwrap();
    assert!(loss.to_scalar().unwrap().is_finite());
    let grads = loss.backward().unwrap();
    assert!(grads
        .get(&s)
        .unwrap()
        .to_vec()
        .unwrap()
        .iter()
        .all(|g| g.is_finite()));
}

#[test]
fn shape_errors_name_the_op_and_shapes() {
    let x = t(&vec![0.0; 64 * 784], &[64, 784]);
    let w = t(&vec![0.0; 10 * 128], &[10, 128]);
    let err = x.matmul(&w).unwrap_err();
    assert_eq!(
        err,
        Error::ShapeMismatch {
            op: "matmul",
            lhs: vec![64, 784],
            rhs: vec![10, 128]
        }
    );
    assert_eq!(
        err.to_string(),
        "matmul: shapes do not fit: lhs [64, 784], rhs [10, 128]"
    );
    let img = t(&[0.0; 4], &[1, 1, 2, 2]);
    let kernel = t(&[0.0; 9], &[1, 1, 3, 3]);
    assert!(matches!(
        img.conv2d(&kernel, 1, 0),
        Err(Error::ShapeMismatch { op: "conv2d", .. })
    ));
    assert!(matches!(
        img.max_pool2d(3, 1),
        Err(Error::BadShape {
            op: "max_pool2d",
            ..
        })
    ));
    assert!(matches!(
        img.bias_add(&t(&[0.0; 2], &[2])),
        Err(Error::ShapeMismatch { op: "bias_add", .. })
    ));
    // The fused block: a kernel too big, a bias of another length, an output under 2×2.
    let one = t(&[0.0], &[1]);
    assert!(matches!(
        img.conv2d_relu_pool(&kernel, &one, 1, 0),
        Err(Error::ShapeMismatch {
            op: "conv2d_relu_pool",
            ..
        })
    ));
    let small = t(&[0.0; 4], &[1, 1, 2, 2]);
    assert_eq!(
        img.conv2d_relu_pool(&small, &t(&[0.0; 2], &[2]), 1, 0)
            .unwrap_err(),
        (Error::ShapeMismatch {
            op: "conv2d_relu_pool",
            lhs: vec![1, 1, 2, 2],
            rhs: vec![2]
        })
    );
    let err = img.conv2d_relu_pool(&small, &one, 1, 0).unwrap_err();
    assert!(
        matches!(
            err,
            Error::BadShape {
                op: "conv2d_relu_pool",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("at least 2×2"), "{err}");
    assert_eq!(
        img.conv2d_relu_pool(&small, &one, 1, 1).unwrap().shape(),
        [1, 1, 1, 1]
    );
    assert!(matches!(
        Tensor::from_vec(vec![1.0; 3], &[2, 2], &Device::Cpu),
        Err(Error::DataLength { .. })
    ));
}

#[test]
fn max_norm_rows_by_hand_and_its_arguments() {
    // Rows [3, 4] (norm 5) and [0.3, 0.4] at max_norm 1: [0.6, 0.8] and unchanged.
    let w = t(&[3.0, 4.0, 0.3, 0.4], &[2, 2]);
    w.max_norm_rows(1.0).unwrap();
    close(&w.to_vec().unwrap(), &[0.6, 0.8, 0.3, 0.4]);
    for bad in [0.0, -1.0, f32::NAN, f32::INFINITY] {
        let err = w.max_norm_rows(bad).unwrap_err();
        assert!(err.to_string().contains("max_norm must be > 0"), "{err}");
    }
    let bias = t(&[1.0, 2.0], &[2]);
    assert!(matches!(
        bias.max_norm_rows(1.0),
        Err(Error::BadShape {
            op: "max_norm_rows",
            ..
        })
    ));
}

#[test]
fn loss_arguments_are_checked() {
    let s = t(&[0.0; 4], &[2, 2]);
    let teacher = Tensor::zeros(&[2, 2], &Device::Cpu).unwrap();
    let y = Labels::new(&[0, 1], &Device::Cpu).unwrap();
    for bad_t in [0.0, -1.0, f32::NAN] {
        let err = s.kd_loss(&teacher, &y, bad_t, 0.5).err().unwrap();
        assert!(err.to_string().contains("temperature must be > 0"), "{err}");
    }
    let err = s.kd_loss(&teacher, &y, 2.0, 1.5).err().unwrap();
    assert!(err.to_string().contains("alpha must be in [0, 1]"), "{err}");
    let wide = Tensor::zeros(&[2, 3], &Device::Cpu).unwrap();
    assert!(matches!(
        s.kd_loss(&wide, &y, 2.0, 0.5).err().unwrap(),
        Error::ShapeMismatch { op: "kd_loss", .. }
    ));
    for (alpha, beta, name) in [(-0.5, 1.0, "alpha"), (1.0, f32::NAN, "beta")] {
        let err = s.dkd_loss(&teacher, &y, 2.0, alpha, beta).err().unwrap();
        assert!(
            err.to_string().contains(&format!("{name} must be >= 0")),
            "{err}"
        );
    }
    let one_class = t(&[0.0; 2], &[2, 1]);
    let zeros = Labels::new(&[0, 0], &Device::Cpu).unwrap();
    assert!(matches!(
        one_class
            .dkd_loss(&one_class, &zeros, 2.0, 1.0, 1.0)
            .err()
            .unwrap(),
        Error::BadShape { op: "dkd_loss", .. }
    ));
    let bad_labels = Labels::new(&[0, 7], &Device::Cpu).unwrap();
    assert_eq!(
        s.cross_entropy(&bad_labels).unwrap_err(),
        Error::LabelOutOfRange {
            op: "cross_entropy",
            label: 7,
            classes: 2
        }
    );
    let short = Labels::new(&[0], &Device::Cpu).unwrap();
    assert!(matches!(
        s.cross_entropy(&short),
        Err(Error::ShapeMismatch { .. })
    ));
}

#[test]
fn no_grad_records_nothing() {
    let w = t(&[1., 2., 3., 4.], &[2, 2]);
    let y = {
        let _guard = no_grad();
        w.matmul(&w).unwrap().relu().unwrap()
    };
    assert!(y.op().is_none() && !y.requires_grad());
    // Recording is back on once the guard drops.
    assert!(w.matmul(&w).unwrap().requires_grad());
    assert!(matches!(
        y.sum().unwrap().backward().map(|g| g.len()),
        Ok(0)
    ));
}

#[test]
fn backward_needs_a_scalar() {
    let x = t(&[1., 2.], &[2]);
    assert!(matches!(
        x.relu().unwrap().backward(),
        Err(Error::BadShape { op: "backward", .. })
    ));
}

#[test]
fn kd_loss_two_classes_by_hand() {
    // Student logits s = [0, ln 3], teacher t = [0, 0], label 1, T = 1, alpha = 1/2.
    // softmax(s) = [1/4, 3/4]; softmax(t) = [1/2, 1/2].
    // CE = -ln(3/4); KL(p_t || q_s) = 1/2 ln((1/2)/(1/4)) + 1/2 ln((1/2)/(3/4)) = 1/2 ln(4/3).
    // loss = 1/2·CE + 1/2·1²·KL.
    // grad = 1/2·(q - onehot) + 1/2·1·(q - p) = 1/2·[1/4, -1/4] + 1/2·[-1/4, 1/4] = [0, 0].
    let s = t(&[0.0, 3f32.ln()], &[1, 2]);
    let teacher = Tensor::zeros(&[1, 2], &Device::Cpu).unwrap();
    let y = Labels::new(&[1], &Device::Cpu).unwrap();
    let out = s.kd_loss(&teacher, &y, 1.0, 0.5).unwrap();
    let ce = -(0.75f32).ln();
    let kl = 0.5 * (4.0f32 / 3.0).ln();
    close(&out.parts.to_vec().unwrap(), &[ce, kl]);
    close(&[out.loss.to_scalar().unwrap()], &[0.5 * ce + 0.5 * kl]);
    let grads = out.loss.backward().unwrap();
    close(&grads.get(&s).unwrap().to_vec().unwrap(), &[0.0, 0.0]);
}

#[test]
fn dkd_loss_with_two_classes_is_kd_without_the_blend() {
    // With two classes the non-target softmax is one class with probability 1, so NCKD
    // = 0 and TCKD is the whole KL: DKD = CE + α·T²·KL, whatever β is. The case of
    // `kd_loss_two_classes_by_hand`: CE = -ln(3/4), KL = 1/2 ln(4/3), and with α = 1
    // the gradient is (q - onehot) + (q - p) = [1/4, -1/4] + [-1/4, 1/4] = [0, 0].
    let s = t(&[0.0, 3f32.ln()], &[1, 2]);
    let teacher = Tensor::zeros(&[1, 2], &Device::Cpu).unwrap();
    let y = Labels::new(&[1], &Device::Cpu).unwrap();
    let out = s.dkd_loss(&teacher, &y, 1.0, 1.0, 5.0).unwrap();
    let ce = -(0.75f32).ln();
    let kl = 0.5 * (4.0f32 / 3.0).ln();
    close(&out.parts.to_vec().unwrap(), &[ce, kl, 0.0]);
    close(&[out.loss.to_scalar().unwrap()], &[ce + kl]);
    let grads = out.loss.backward().unwrap();
    close(&grads.get(&s).unwrap().to_vec().unwrap(), &[0.0, 0.0]);
}

#[test]
fn t_squared_keeps_the_gradient_scale_for_large_t() {
    // For large T, T·(softmax(s/T) - softmax(t/T)) -> (s - t - mean(s - t)) / classes,
    // whatever T is: the T² factor keeps the soft term's gradient scale fixed.
    let grad_at = |temperature: f32| {
        let s = t(&[1.0, -2.0, 0.5, 3.0], &[1, 4]);
        let teacher = Tensor::from_vec(vec![2.0, 0.0, -1.0, 1.0], &[1, 4], &Device::Cpu).unwrap();
        let loss = s.softmax_kl(&teacher, temperature).unwrap();
        loss.backward().unwrap().get(&s).unwrap().to_vec().unwrap()
    };
    let (g50, g100) = (grad_at(50.0), grad_at(100.0));
    // s - t = [-1, -2, 1.5, 2], mean 0.125 -> limit [-1.125, -2.125, 1.375, 1.875] / 4.
    let limit = [-1.125f32 / 4.0, -2.125 / 4.0, 1.375 / 4.0, 1.875 / 4.0];
    for ((a, b), l) in g50.iter().zip(&g100).zip(limit) {
        // The distance to the limit shrinks as 1/T.
        assert!((a - l).abs() < 0.05 * l.abs(), "{g50:?} vs limit {limit:?}");
        assert!(
            (b - l).abs() < 0.025 * l.abs(),
            "{g100:?} vs limit {limit:?}"
        );
    }
}

/// An optimizer step reads the gradient while it writes the parameter and its state:
/// any two of them sharing their values would wait on each other's lock forever, so
/// each such call is an error naming the two, and the parameter is left as it was.
#[test]
fn an_optimizer_step_on_aliased_tensors_is_an_error_not_a_deadlock() {
    use engine::{Adam, Sgd};
    let p = t(&[1., 2.], &[2]);
    let (g, m, v) = (t(&[0.5, 0.5], &[2]), t(&[0., 0.], &[2]), t(&[0., 0.], &[2]));
    let sgd = Sgd {
        lr: 0.1,
        momentum: 0.9,
        weight_decay: 0.0,
    };
    let adam = Adam {
        lr: 0.1,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
        decoupled: false,
    };
    let message = |r: engine::Result<()>| r.unwrap_err().to_string();
    assert!(message(p.sgd_step(&p, &v, &sgd)).contains("gradient is the parameter itself"));
    assert!(message(p.sgd_step(&g, &g, &sgd)).contains("gradient and the velocity"));
    let g_alias = g.reshape(&[2]).unwrap();
    assert!(message(p.sgd_step(&g, &g_alias, &sgd)).contains("gradient and the velocity"));
    assert!(message(p.adam_step(&g, &g, &v, &adam, 1)).contains("gradient and the first moment"));
    assert!(message(p.adam_step(&g, &m, &g, &adam, 1)).contains("gradient and the second moment"));
    assert!(message(p.adam_step(&g, &m, &m, &adam, 1)).contains("first moment and the second"));
    assert_eq!(p.to_vec().unwrap(), [1., 2.]);
    // Distinct tensors step.
    p.adam_step(&g, &m, &v, &adam, 1).unwrap();
    assert_ne!(p.to_vec().unwrap(), [1., 2.]);
}

/// Shapes past the `u32::MAX` elements that kernels index are refused where they are
/// made, before anything is allocated; no product of sizes overflows or wraps.
#[test]
fn shapes_past_32_bit_indices_are_errors_not_wrapped_sizes() {
    let cpu = Device::Cpu;
    for shape in [&[1usize << 20, 1 << 20][..], &[usize::MAX, 2], &[1 << 32]] {
        let err = Tensor::zeros(shape, &cpu).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("tensor: the elements of its shape = "),
            "{err}"
        );
    }
    // 2^32 · 2^32 wraps to 0 in 64 bits: it must not pass for an empty tensor's shape.
    let empty = Tensor::zeros(&[0], &cpu).unwrap();
    assert!(empty.reshape(&[1 << 32, 1 << 32]).is_err());
    assert!(Tensor::from_vec(vec![], &[1 << 32, 1 << 32], &cpu).is_err());
    // A one-pixel image padded by 40,000: an 80,001² output, 6.4 G values.
    let (x, w) = (t(&[1.0], &[1, 1, 1, 1]), t(&[1.0], &[1, 1, 1, 1]));
    let err = x.conv2d(&w, 1, 40_000).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Conv2dParams: n·c_out·h_out·w_out (out) = 6400160001 is past 4294967295, \
         the most a 32-bit index reaches"
    );
}
