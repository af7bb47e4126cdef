// Leaky ReLU with negative slope `slope` (p.alpha), pointwise (lib/pointwise_*.wgsl).
// out = x where x > 0, else slope * x  =>  dL/dx = dL/dout where x > 0, else slope * dL/dout
// NOTE: the slope applies at x = 0, as PyTorch's leaky_relu_backward; NaN stays NaN.

fn forward(x: f32, slope: f32) -> f32 {
    return select(slope * x, x, x > 0.0);
}

fn backward(x: f32, g: f32, slope: f32) -> f32 {
    return select(slope * g, g, x > 0.0);
}
