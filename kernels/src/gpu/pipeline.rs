//! The kernel list and the pipeline cache: each shader is compiled once, on first use.

use super::GpuError;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// One variant per `wgsl/<name>.wgsl`, named as the CPU function in `kernels::cpu`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KernelId {
    Matmul,
    Conv2dForward,
    Conv2dBackwardInput,
    Conv2dBackwardWeight,
    BiasForward,
    BiasBackward,
    MaxPool2dForward,
    MaxPool2dBackward,
    ReluForward,
    ReluBackward,
    DropoutForward,
    DropoutBackward,
    Add,
    Mul,
    Scale,
    Axpy,
    SumAxis,
    SumAxisBackward,
    LogSoftmaxForward,
    LogSoftmaxBackward,
    CrossEntropyForward,
    SoftmaxKlForward,
    KdLossForward,
    ArgmaxRows,
    SgdStep,
    AdamStep,
}

impl KernelId {
    /// Every kernel, in the order of the enum.
    pub const ALL: [KernelId; 26] = [
        KernelId::Matmul,
        KernelId::Conv2dForward,
        KernelId::Conv2dBackwardInput,
        KernelId::Conv2dBackwardWeight,
        KernelId::BiasForward,
        KernelId::BiasBackward,
        KernelId::MaxPool2dForward,
        KernelId::MaxPool2dBackward,
        KernelId::ReluForward,
        KernelId::ReluBackward,
        KernelId::DropoutForward,
        KernelId::DropoutBackward,
        KernelId::Add,
        KernelId::Mul,
        KernelId::Scale,
        KernelId::Axpy,
        KernelId::SumAxis,
        KernelId::SumAxisBackward,
        KernelId::LogSoftmaxForward,
        KernelId::LogSoftmaxBackward,
        KernelId::CrossEntropyForward,
        KernelId::SoftmaxKlForward,
        KernelId::KdLossForward,
        KernelId::ArgmaxRows,
        KernelId::SgdStep,
        KernelId::AdamStep,
    ];

    /// The file stem of the shader and the name of the CPU twin.
    pub fn name(self) -> &'static str {
        match self {
            KernelId::Matmul => "matmul",
            KernelId::Conv2dForward => "conv2d_forward",
            KernelId::Conv2dBackwardInput => "conv2d_backward_input",
            KernelId::Conv2dBackwardWeight => "conv2d_backward_weight",
            KernelId::BiasForward => "bias_forward",
            KernelId::BiasBackward => "bias_backward",
            KernelId::MaxPool2dForward => "max_pool2d_forward",
            KernelId::MaxPool2dBackward => "max_pool2d_backward",
            KernelId::ReluForward => "relu_forward",
            KernelId::ReluBackward => "relu_backward",
            KernelId::DropoutForward => "dropout_forward",
            KernelId::DropoutBackward => "dropout_backward",
            KernelId::Add => "add",
            KernelId::Mul => "mul",
            KernelId::Scale => "scale",
            KernelId::Axpy => "axpy",
            KernelId::SumAxis => "sum_axis",
            KernelId::SumAxisBackward => "sum_axis_backward",
            KernelId::LogSoftmaxForward => "log_softmax_forward",
            KernelId::LogSoftmaxBackward => "log_softmax_backward",
            KernelId::CrossEntropyForward => "cross_entropy_forward",
            KernelId::SoftmaxKlForward => "softmax_kl_forward",
            KernelId::KdLossForward => "kd_loss_forward",
            KernelId::ArgmaxRows => "argmax_rows",
            KernelId::SgdStep => "sgd_step",
            KernelId::AdamStep => "adam_step",
        }
    }

    /// The WGSL source as compiled: see [`crate::wgsl`].
    pub fn source(self) -> String {
        crate::wgsl::source(self.name()).expect("every KernelId has a shader")
    }
}

/// A compiled kernel and the layout of its bind group 0 (derived from the shader).
pub(crate) struct Compiled {
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
}

#[derive(Default)]
pub(crate) struct PipelineCache {
    compiled: Mutex<HashMap<KernelId, Arc<Compiled>>>,
}

impl PipelineCache {
    /// The pipeline of `id`, compiling it on first use; a shader that fails to compile
    /// is an error (not cached, so every launch reports it).
    pub(crate) fn get(
        &self,
        device: &wgpu::Device,
        id: KernelId,
    ) -> Result<Arc<Compiled>, GpuError> {
        let mut compiled = self.compiled.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = compiled.get(&id) {
            return Ok(c.clone());
        }
        let c = Arc::new(compile(device, id)?);
        compiled.insert(id, c.clone());
        Ok(c)
    }
}

fn compile(device: &wgpu::Device, id: KernelId) -> Result<Compiled, GpuError> {
    let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some(id.name()),
        source: wgpu::ShaderSource::Wgsl(id.source().into()),
    });
    let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(id.name()),
        layout: None,
        module: &module,
        entry_point: Some("main"),
        compilation_options: Default::default(),
        cache: None,
    });
    if let Some(e) = pollster::block_on(scope.pop()) {
        return Err(GpuError::Device(format!(
            "compiling {}.wgsl: {e}",
            id.name()
        )));
    }
    let layout = pipeline.get_bind_group_layout(0);
    Ok(Compiled { pipeline, layout })
}
