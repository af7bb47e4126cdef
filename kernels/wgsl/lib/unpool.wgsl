// The gradient of a conv's output at (b, co, oy, ox) when a 2x2 max-pool of stride 2
// follows it: the pooled gradient of its window if it is the window's winner, else 0
// (what max_pool2d_backward writes). Reads the kernel's `grad_out` and `argmax`, both
// (n, c_out, h_out / 2, w_out / 2); `argmax` indexes the (h_out, w_out) plane.
fn unpooled(b: u32, co: u32, oy: u32, ox: u32) -> f32 {
    let hp = p.h_out / 2u;
    let wp = p.w_out / 2u;
    let py = oy / 2u;
    let px = ox / 2u;
    if (py >= hp || px >= wp) {
        return 0.0;
    }
    let i = ((b * p.c_out + co) * hp + py) * wp + px;
    return select(0.0, grad_out[i], argmax[i] == oy * p.w_out + ox);
}
