//! Every `wgsl/*.wgsl` parses and validates with naga (the compiler inside wgpu), with
//! no device: a shader typo fails here on any machine, not only on one with a GPU.

use std::path::{Path, PathBuf};

/// One shader per GPU kernel, named as its CPU twin in `kernels::cpu`.
const KERNELS: [&str; 26] = [
    "matmul",
    "conv2d_forward",
    "conv2d_backward_input",
    "conv2d_backward_weight",
    "bias_forward",
    "bias_backward",
    "max_pool2d_forward",
    "max_pool2d_backward",
    "relu_forward",
    "relu_backward",
    "dropout_forward",
    "dropout_backward",
    "add",
    "mul",
    "scale",
    "axpy",
    "sum_axis",
    "sum_axis_backward",
    "log_softmax_forward",
    "log_softmax_backward",
    "cross_entropy_forward",
    "softmax_kl_forward",
    "kd_loss_forward",
    "argmax_rows",
    "sgd_step",
    "adam_step",
];

fn wgsl_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("wgsl")
}

fn shader_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(wgsl_dir())
        .expect("kernels/wgsl exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "wgsl"))
        .collect();
    files.sort();
    files
}

fn validate(path: &Path) -> Result<naga::valid::ModuleInfo, String> {
    let src = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let name = path.display().to_string();
    let module =
        naga::front::wgsl::parse_str(&src).map_err(|e| e.emit_to_string_with_path(&src, &name))?;
    let mut validator = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::all(),
    );
    validator
        .validate(&module)
        .map_err(|e| e.emit_to_string_with_path(&src, &name))
}

#[test]
fn every_shader_parses_and_validates() {
    let failures: Vec<String> = shader_files()
        .iter()
        .filter_map(|p| validate(p).err())
        .collect();
    assert!(
        failures.is_empty(),
        "invalid WGSL:\n{}",
        failures.join("\n")
    );
}

#[test]
fn one_shader_per_kernel_and_no_strays() {
    let mut found: Vec<String> = shader_files()
        .iter()
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    let mut expected: Vec<String> = KERNELS.iter().map(|s| s.to_string()).collect();
    found.sort();
    expected.sort();
    assert_eq!(found, expected);
}

/// Every shader has one entry point `main` (the launchers ask for it by name) and binds
/// its params as a uniform at `@binding(0)`.
#[test]
fn every_shader_has_main_and_a_uniform_at_binding_0() {
    for path in shader_files() {
        let src = std::fs::read_to_string(&path).unwrap();
        let module = naga::front::wgsl::parse_str(&src).unwrap();
        let names: Vec<&str> = module
            .entry_points
            .iter()
            .map(|e| e.name.as_str())
            .collect();
        assert_eq!(names, ["main"], "{}", path.display());
        let uniform_at_0 = module.global_variables.iter().any(|(_, g)| {
            g.space == naga::AddressSpace::Uniform
                && g.binding.as_ref().is_some_and(|b| b.binding == 0)
        });
        assert!(
            uniform_at_0,
            "{}: params uniform at @binding(0)",
            path.display()
        );
    }
}

#[cfg(feature = "gpu")]
#[test]
fn kernel_ids_match_the_shader_files() {
    let ids: Vec<&str> = kernels::gpu::KernelId::ALL
        .iter()
        .map(|k| k.name())
        .collect();
    assert_eq!(ids, KERNELS);
}
