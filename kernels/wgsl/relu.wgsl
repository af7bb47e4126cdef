// ReLU, pointwise (lib/pointwise_{forward,backward}.wgsl supply bindings and main).
// out = max(x, 0)  =>  dL/dx = dL/dout where x > 0, else 0
// NOTE: NaN stays NaN, and relu'(0) = 0, as PyTorch.

fn forward(x: f32, unused: f32) -> f32 {
    return select(x, 0.0, x < 0.0);
}

fn backward(x: f32, g: f32, unused: f32) -> f32 {
    return select(0.0, g, x > 0.0);
}
