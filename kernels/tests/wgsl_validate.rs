//! Every kernel's WGSL, as [`KernelId::source`] puts it together, parses and validates
//! with naga (the compiler inside wgpu), with no device: a shader typo fails here on any
//! machine, not only on one with a GPU. And each shader's bindings are the ones the
//! registry declares, so the launcher, the CPU function and the shader cannot drift.

use kernels::registry::{Access, KernelId, Word};
use std::collections::BTreeSet;
use std::path::Path;

fn parse(id: KernelId) -> Result<(naga::Module, String), String> {
    let src = id.source();
    let name = id.name();
    let module = naga::front::wgsl::parse_str(&src)
        .map_err(|e| e.emit_to_string_with_path(&src, &format!("{name} (composed)")))?;
    Ok((module, src))
}

fn validate(id: KernelId) -> Result<naga::valid::ModuleInfo, String> {
    let (module, src) = parse(id)?;
    let mut validator = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::all(),
    );
    validator
        .validate(&module)
        .map_err(|e| e.emit_to_string_with_path(&src, &format!("{} (composed)", id.name())))
}

#[test]
fn every_shader_parses_and_validates() {
    let failures: Vec<String> = KernelId::ALL
        .into_iter()
        .filter_map(|id| validate(id).err())
        .collect();
    assert!(
        failures.is_empty(),
        "invalid WGSL:\n{}",
        failures.join("\n")
    );
}

/// `wgsl/` holds the files the registry names and nothing else (the shared pieces are in
/// `wgsl/lib/`).
#[test]
fn every_shader_file_is_used_and_no_strays() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("wgsl");
    let found: BTreeSet<String> = std::fs::read_dir(dir)
        .expect("kernels/wgsl exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "wgsl"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    let named: BTreeSet<String> = KernelId::ALL.iter().map(|k| k.file().into()).collect();
    assert_eq!(found, named);
}

/// Every shader has one entry point `main` (the launchers ask for it by name) and binds
/// its params as a uniform at `@binding(0)`.
#[test]
fn every_shader_has_main_and_a_uniform_at_binding_0() {
    for id in KernelId::ALL {
        let (module, _) = parse(id).unwrap();
        let names: Vec<&str> = module
            .entry_points
            .iter()
            .map(|e| e.name.as_str())
            .collect();
        assert_eq!(names, ["main"], "{}", id.name());
        let uniform_at_0 = module.global_variables.iter().any(|(_, g)| {
            g.space == naga::AddressSpace::Uniform
                && g.binding.as_ref().is_some_and(|b| b.binding == 0)
        });
        assert!(uniform_at_0, "{}: params uniform at @binding(0)", id.name());
    }
}

/// `@binding(i + 1)` is the registry's argument `i`: same name, `read` or `read_write` as
/// its access, `f32` or `u32` as its word; and no other storage binding.
#[test]
fn every_shader_binds_the_registry_arguments_in_order() {
    for id in KernelId::ALL {
        let (module, _) = parse(id).unwrap();
        let mut storage: Vec<(u32, String, Access, Word)> = module
            .global_variables
            .iter()
            .filter_map(|(_, g)| {
                let naga::AddressSpace::Storage { access } = g.space else {
                    return None;
                };
                let binding = g.binding.as_ref()?.binding;
                let writes = access.contains(naga::StorageAccess::STORE);
                let access = if writes { Access::Write } else { Access::Read };
                let naga::TypeInner::Array { base, .. } = module.types[g.ty].inner else {
                    panic!("{}: binding {binding} is not an array", id.name());
                };
                let word = match module.types[base].inner {
                    naga::TypeInner::Scalar(naga::Scalar::F32) => Word::F32,
                    naga::TypeInner::Scalar(naga::Scalar::U32) => Word::U32,
                    ref other => panic!("{}: binding {binding} holds {other:?}", id.name()),
                };
                Some((binding, g.name.clone().unwrap_or_default(), access, word))
            })
            .collect();
        storage.sort_by_key(|(binding, ..)| *binding);
        let declared: Vec<(u32, String, Access, Word)> = id
            .args()
            .iter()
            .zip(1..)
            .map(|(a, binding)| {
                // Both kinds of output are `read_write` in WGSL.
                let access = if a.access.writes() {
                    Access::Write
                } else {
                    Access::Read
                };
                (binding, a.name.to_string(), access, a.word)
            })
            .collect();
        assert_eq!(storage, declared, "{}", id.name());
    }
}

/// The WGSL params structs have the sizes of their Rust twins, so a launcher's bytes
/// fill the uniform exactly.
#[test]
fn wgsl_params_structs_have_the_rust_sizes() {
    use kernels::params::*;
    use std::mem::size_of;
    let (module, _) = parse(KernelId::Matmul).unwrap();
    let rust = [
        ("MatmulParams", size_of::<MatmulParams>()),
        ("Conv2dParams", size_of::<Conv2dParams>()),
        ("Pool2dParams", size_of::<Pool2dParams>()),
        ("ElementwiseParams", size_of::<ElementwiseParams>()),
        ("AxisParams", size_of::<AxisParams>()),
        ("RowParams", size_of::<RowParams>()),
        ("GatherParams", size_of::<GatherParams>()),
        ("DropoutParams", size_of::<DropoutParams>()),
        ("SgdParams", size_of::<SgdParams>()),
        ("AdamParams", size_of::<AdamParams>()),
        ("MaxNormParams", size_of::<MaxNormParams>()),
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

/// Names are unique, and each is the CPU function's, checked by compiling: the registry
/// calls `kernels::cpu::<name>` for every entry.
#[test]
fn kernel_names_are_unique() {
    let names: BTreeSet<&str> = KernelId::ALL.iter().map(|k| k.name()).collect();
    assert_eq!(names.len(), KernelId::COUNT);
}
