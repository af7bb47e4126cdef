//! Every kernel's WGSL, as [`kernels::wgsl::source`] puts it together, parses and
//! validates with naga (the compiler inside wgpu), with no device: a shader typo fails
//! here on any machine, not only on one with a GPU.

use kernels::wgsl::{source, KERNELS};
use std::path::Path;

fn kernel_names() -> Vec<&'static str> {
    KERNELS.iter().map(|(name, _, _)| *name).collect()
}

fn parse(name: &str) -> Result<(naga::Module, String), String> {
    let src = source(name).ok_or_else(|| format!("{name}: no such kernel"))?;
    let module = naga::front::wgsl::parse_str(&src)
        .map_err(|e| e.emit_to_string_with_path(&src, &format!("{name} (composed)")))?;
    Ok((module, src))
}

fn validate(name: &str) -> Result<naga::valid::ModuleInfo, String> {
    let (module, src) = parse(name)?;
    let mut validator = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::all(),
    );
    validator
        .validate(&module)
        .map_err(|e| e.emit_to_string_with_path(&src, &format!("{name} (composed)")))
}

#[test]
fn every_shader_parses_and_validates() {
    let failures: Vec<String> = kernel_names()
        .into_iter()
        .filter_map(|name| validate(name).err())
        .collect();
    assert!(
        failures.is_empty(),
        "invalid WGSL:\n{}",
        failures.join("\n")
    );
}

/// `wgsl/` holds one file per kernel of [`KERNELS`] and nothing else (the shared pieces
/// are in `wgsl/lib/`).
#[test]
fn one_shader_per_kernel_and_no_strays() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("wgsl");
    let mut found: Vec<String> = std::fs::read_dir(dir)
        .expect("kernels/wgsl exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "wgsl"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    let mut expected: Vec<String> = kernel_names().iter().map(|s| s.to_string()).collect();
    found.sort();
    expected.sort();
    assert_eq!(found, expected);
}

/// Every shader has one entry point `main` (the launchers ask for it by name) and binds
/// its params as a uniform at `@binding(0)`.
#[test]
fn every_shader_has_main_and_a_uniform_at_binding_0() {
    for name in kernel_names() {
        let (module, _) = parse(name).unwrap();
        let names: Vec<&str> = module
            .entry_points
            .iter()
            .map(|e| e.name.as_str())
            .collect();
        assert_eq!(names, ["main"], "{name}");
        let uniform_at_0 = module.global_variables.iter().any(|(_, g)| {
            g.space == naga::AddressSpace::Uniform
                && g.binding.as_ref().is_some_and(|b| b.binding == 0)
        });
        assert!(uniform_at_0, "{name}: params uniform at @binding(0)");
    }
}

/// The WGSL params structs have the sizes of their Rust twins, so a launcher's bytes
/// fill the uniform exactly.
#[test]
fn wgsl_params_structs_have_the_rust_sizes() {
    use kernels::params::*;
    use std::mem::size_of;
    let (module, _) = parse("matmul").unwrap();
    let rust = [
        ("MatmulParams", size_of::<MatmulParams>()),
        ("Conv2dParams", size_of::<Conv2dParams>()),
        ("Pool2dParams", size_of::<Pool2dParams>()),
        ("ElementwiseParams", size_of::<ElementwiseParams>()),
        ("AxisParams", size_of::<AxisParams>()),
        ("RowParams", size_of::<RowParams>()),
        ("DropoutParams", size_of::<DropoutParams>()),
        ("SgdParams", size_of::<SgdParams>()),
        ("AdamParams", size_of::<AdamParams>()),
    ];
    for (name, size) in rust {
        let (_, ty) = module
            .types
            .iter()
            .find(|(_, t)| t.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("{name} is not in lib/params.wgsl"));
        let naga::TypeInner::Struct { span, .. } = ty.inner else {
            panic!("{name} is not a struct");
        };
        assert_eq!(span as usize, size, "{name}: WGSL size vs Rust size");
    }
}

#[cfg(feature = "gpu")]
#[test]
fn kernel_ids_match_the_shader_files() {
    let ids: Vec<&str> = kernels::gpu::KernelId::ALL
        .iter()
        .map(|k| k.name())
        .collect();
    assert_eq!(ids, kernel_names());
}
