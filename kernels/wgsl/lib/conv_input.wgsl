// The im2col gather shared by conv2d_forward, conv2d_relu_pool_forward and
// conv2d_backward_weight (prepended to them: kernels/src/registry.rs), which read their
// input x (n, c_in, h, w) through it instead of through an im2col buffer:
//   cols[(ci, ky, kx), (b, oy, ox)] = x[b, ci, oy*s + ky - pad, ox*s + kx - pad], zero outside x.
// `window` is the cols row (ci, ky, kx); the kernel's own file declares `p` and `x`.
fn conv_input(b: u32, window: u32, oy: u32, ox: u32) -> f32 {
    let khw = p.kh * p.kw;
    let ci = window / khw;
    let r = window % khw;
    let iy = i32(oy * p.stride + r / p.kw) - i32(p.pad);
    let ix = i32(ox * p.stride + r % p.kw) - i32(p.pad);
    if (iy < 0 || ix < 0 || iy >= i32(p.h) || ix >= i32(p.w)) {
        return 0.0;
    }
    return x[((b * p.c_in + ci) * p.h + u32(iy)) * p.w + u32(ix)];
}
