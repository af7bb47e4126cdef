//! The pipeline cache: each shader is compiled once, on first use.

use super::GpuError;
use crate::registry::KernelId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

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
            "compiling {} (wgsl/{}.wgsl and its libraries): {e}",
            id.name(),
            id.file()
        )));
    }
    let layout = pipeline.get_bind_group_layout(0);
    Ok(Compiled { pipeline, layout })
}
