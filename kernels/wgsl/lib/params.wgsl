// Every params struct, field for field the #[repr(C)] struct of the same name in
// kernels/src/params.rs (sizes padded to 16 bytes there): the bytes a launcher uploads are
// the kernel's uniform `p`. Prepended to every kernel (kernels/src/registry.rs).

struct MatmulParams {
    m: u32,
    n: u32,
    k: u32,
    trans_a: u32,
    trans_b: u32,
    accumulate: u32,
    _pad0: u32,
    _pad1: u32,
}

struct Conv2dParams {
    n: u32,
    c_in: u32,
    h: u32,
    w: u32,
    c_out: u32,
    kh: u32,
    kw: u32,
    stride: u32,
    pad: u32,
    h_out: u32,
    w_out: u32,
    _pad0: u32,
}

struct Pool2dParams {
    n: u32,
    c: u32,
    h: u32,
    w: u32,
    kernel: u32,
    stride: u32,
    h_out: u32,
    w_out: u32,
}

struct ElementwiseParams {
    len: u32,
    alpha: f32,
    _pad0: u32,
    _pad1: u32,
}

struct AxisParams {
    outer: u32,
    channels: u32,
    inner: u32,
    _pad0: u32,
}

struct RowParams {
    rows: u32,
    cols: u32,
    temperature: f32,
    alpha: f32,
    beta: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

struct DropoutParams {
    len: u32,
    seed: u32,
    threshold: u32,
    scale: f32,
}

struct SgdParams {
    len: u32,
    lr: f32,
    momentum: f32,
    weight_decay: f32,
}

struct MaxNormParams {
    rows: u32,
    cols: u32,
    max_norm: f32,
    _pad0: u32,
}

struct AdamParams {
    len: u32,
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    weight_decay: f32,
    bias_correction1: f32,
    bias_correction2: f32,
    decoupled: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

struct GatherParams {
    rows: u32,
    cols: u32,
    src_rows: u32,
    _pad0: u32,
}
