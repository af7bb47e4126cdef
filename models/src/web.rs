//! Web export: networks as a static folder that runs them in a browser on WebGPU, with
//! the same WGSL kernels the desktop runs.
//!
//! ```text
//! index.html, host.js, page.js   the page (models/web/): host.js replays a manifest,
//!                                page.js draws, picks test images, shows predictions
//! manifest.json                  per network: its kernels, buffers and commands
//! NAME.bin                       per network: the values its buffers start with
//! kernels/KERNEL.wgsl            each kernel's composed source (`KernelId::source`)
//! samples.bin                    test images, one byte a pixel (manifest: labels)
//! ```
//!
//! Nothing of a network's logic is written twice: one forward pass at batch 1 is
//! recorded on the CPU ([`engine::trace`]), and each kernel call becomes the GPU
//! commands its launcher would record ([`engine::kernels::plan`]). The manifest lists them:
//!
//! ```text
//! { "format": 1, "classes": [...], "samples": { "file", "count", "shape", "labels" },
//!   "networks": [ { "name", "architecture", "parameters", "flops", "input": [c, h, w],
//!     "weights": "NAME.bin", "input_buffer": i, "output_buffer": o, "outputs": classes,
//!     "buffers": [ { "words": n, "init": [word offset in NAME.bin, words] | null } ],
//!     "commands": [ { "dispatch": "kernel", "params": [u32 ...],
//!                     "bindings": [[buffer, words], ...], "grid": [x, y] }
//!                 | { "clear": buffer, "words": n }
//!                 | { "copy": [src, dst], "words": n } ] } ] }
//! ```
//!
//! A command binds the first `words` words of each buffer, in the shader's `@binding(1..)`
//! order, its params at `@binding(0)`. The input buffer takes `(1, c, h, w)` pixels in
//! `[0, 1]`; the network standardises them itself, as on the desktop.

use crate::module::{Mode, Module};
use crate::network::Network;
use engine::kernels::plan::{self, Buffer, Command};
use engine::kernels::KernelId;
use engine::{trace, Device, Tensor};
use serde_json::{json, Value};
use std::collections::BTreeSet;

/// The page's files, from `models/web/`.
const PAGE: [(&str, &str); 3] = [
    ("index.html", include_str!("../web/index.html")),
    ("host.js", include_str!("../web/host.js")),
    ("page.js", include_str!("../web/page.js")),
];

/// WebGPU's guaranteed `maxComputeWorkgroupsPerDimension`.
const WORKGROUPS_PER_DIMENSION: u32 = 65535;

/// The manifest's layout version.
pub const FORMAT: u32 = 1;

/// Test images for the page to offer: `count` images of `shape` (c, h, w), one byte a
/// pixel (`b / 255`), and their labels.
#[derive(Clone, Debug, Default)]
pub struct Samples {
    /// `(count, c, h, w)` pixel bytes.
    pub pixels: Vec<u8>,
    /// One label (a class index) per image.
    pub labels: Vec<u8>,
}

/// The files of the web folder for `networks` (each with the name the page shows it
/// by, unique), `classes` (the names of the output classes) and `samples`: relative
/// paths and their bytes. The networks must be on the CPU.
pub fn export(
    networks: &[(String, &Network)],
    classes: &[String],
    samples: &Samples,
) -> Result<Vec<(String, Vec<u8>)>, String> {
    let mut files: Vec<(String, Vec<u8>)> = PAGE
        .iter()
        .map(|(name, text)| (name.to_string(), text.as_bytes().to_vec()))
        .collect();
    let mut kernels = BTreeSet::new();
    let mut described = Vec::new();
    let mut names = BTreeSet::new();
    for (name, network) in networks {
        if !names.insert(name.as_str()) {
            return Err(format!("two networks are named `{name}`"));
        }
        let (manifest, weights) = network_manifest(name, network, &mut kernels)?;
        described.push(manifest);
        files.push((format!("{name}.bin"), weights));
    }
    for kernel in &kernels {
        let source = kernel.source().into_bytes();
        files.push((format!("kernels/{}.wgsl", kernel.name()), source));
    }
    let input = networks.first().map(|(_, n)| n.spec().input);
    let image: usize = input.map_or(0, |s| s.iter().product());
    if image > 0 && samples.pixels.len() != samples.labels.len() * image {
        return Err(format!(
            "{} sample pixels for {} labels of {image} pixels each",
            samples.pixels.len(),
            samples.labels.len()
        ));
    }
    let manifest = json!({
        "format": FORMAT,
        "classes": classes,
        "samples": {
            "file": "samples.bin",
            "count": samples.labels.len(),
            "shape": input,
            "labels": samples.labels,
        },
        "networks": described,
    });
    files.push(("samples.bin".into(), samples.pixels.clone()));
    let text = serde_json::to_string_pretty(&manifest).map_err(|e| e.to_string())?;
    files.push(("manifest.json".into(), text.into_bytes()));
    Ok(files)
}

/// The manifest entry of one network and the bytes of its `NAME.bin`.
fn network_manifest(
    name: &str,
    network: &Network,
    kernels: &mut BTreeSet<KernelId>,
) -> Result<(Value, Vec<u8>), String> {
    let spec = network.spec();
    let fail = |e: engine::Error| format!("recording {name}'s forward pass: {e}");
    if !matches!(network.device(), Device::Cpu) {
        return Err(format!("{name} is not on the CPU"));
    }
    let [c, h, w] = spec.input;
    let x = Tensor::zeros(&[1, c, h, w], &Device::Cpu).map_err(fail)?;
    let _no_grad = engine::no_grad();
    let (logits, recorded) = trace::record(|| network.forward(&x, Mode::Eval)).map_err(fail)?;
    let missing = |what: &str| format!("{name}: the recorded forward pass never used its {what}");
    let input = recorded.buffer_of(&x).ok_or_else(|| missing("input"))?;
    let output = recorded
        .buffer_of(&logits)
        .ok_or_else(|| missing("output"))?;

    // Buffers: the trace's, then each call's scratch buffers.
    let mut weights = Vec::new();
    let mut buffers: Vec<Value> = Vec::new();
    for (id, b) in recorded.buffers().iter().enumerate() {
        let init = match &b.init {
            Some(values) if id != input => {
                let offset = weights.len() / 4;
                weights.extend(values.iter().flat_map(|v| v.to_le_bytes()));
                json!([offset, values.len()])
            }
            _ => Value::Null,
        };
        buffers.push(json!({ "words": b.words.max(1), "init": init }));
    }
    let mut commands = Vec::new();
    for call in recorded.calls() {
        let scratch0 = buffers.len();
        for &words in &call.plan.scratch {
            buffers.push(json!({ "words": words.max(1), "init": Value::Null }));
        }
        let buffer = |b: Buffer| match b {
            Buffer::Arg(i) => call.args[i],
            Buffer::Scratch(i) => scratch0 + i,
        };
        for command in &call.plan.commands {
            commands.push(match command {
                Command::Dispatch {
                    kernel,
                    params,
                    bindings,
                    workgroups,
                } => {
                    if *workgroups == 0 {
                        continue;
                    }
                    kernels.insert(*kernel);
                    let grid =
                        plan::grid(*workgroups, WORKGROUPS_PER_DIMENSION).ok_or_else(|| {
                            format!("{name}: {} needs {workgroups} workgroups", kernel.name())
                        })?;
                    let params: Vec<u32> = params
                        .chunks(4)
                        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                        .collect();
                    let bindings: Vec<[usize; 2]> = bindings
                        .iter()
                        .map(|b| [buffer(b.buffer), b.words.max(1)])
                        .collect();
                    json!({
                        "dispatch": kernel.name(),
                        "params": params,
                        "bindings": bindings,
                        "grid": [grid.0, grid.1],
                    })
                }
                Command::Clear { buffer: b, words } => {
                    json!({ "clear": buffer(*b), "words": words })
                }
                Command::Copy { src, dst, words } => {
                    json!({ "copy": [buffer(*src), buffer(*dst)], "words": words })
                }
            });
        }
    }
    let manifest = json!({
        "name": name,
        "architecture": spec.name,
        "parameters": network.parameter_count(),
        "flops": spec.forward_flops_per_image(),
        "input": spec.input,
        "outputs": logits.numel(),
        "weights": format!("{name}.bin"),
        "input_buffer": input,
        "output_buffer": output,
        "buffers": buffers,
        "commands": commands,
    });
    Ok((manifest, weights))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builtin;

    #[test]
    fn a_student_cnn_is_its_kernels_with_the_parameters_as_buffers() {
        let spec = builtin::builtin("student-cnn").unwrap();
        let net = Network::new(&spec, 3, &Device::Cpu).unwrap();
        let samples = Samples {
            pixels: vec![7; 2 * 784],
            labels: vec![1, 2],
        };
        let files = export(
            &[("student".into(), &net)],
            &vec!["0".to_string(); 10],
            &samples,
        )
        .unwrap();
        let file = |name: &str| &files.iter().find(|(n, _)| n == name).unwrap().1;
        let manifest: Value = serde_json::from_slice(file("manifest.json")).unwrap();
        let net_manifest = &manifest["networks"][0];
        // Every parameter value is in student.bin, and the input standardisation's
        // constant besides: nothing else starts with values.
        let params = net.parameter_count();
        assert_eq!(file("student.bin").len(), 4 * (params + 1));
        let dispatched: BTreeSet<&str> = net_manifest["commands"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|c| c["dispatch"].as_str())
            .collect();
        for kernel in &dispatched {
            assert!(files
                .iter()
                .any(|(n, _)| *n == format!("kernels/{kernel}.wgsl")));
        }
        assert!(
            dispatched.contains("conv2d_relu_pool_forward"),
            "{dispatched:?}"
        );
        assert!(dispatched.contains("matmul"), "{dispatched:?}");
        assert_eq!(manifest["samples"]["count"], 2);
        assert_eq!(net_manifest["outputs"], 10);
    }

    #[test]
    fn two_networks_of_one_name_are_refused() {
        let spec = builtin::builtin("student-cnn").unwrap();
        let net = Network::new(&spec, 3, &Device::Cpu).unwrap();
        let both = [("a".to_string(), &net), ("a".to_string(), &net)];
        let err = export(&both, &[], &Samples::default()).unwrap_err();
        assert!(err.contains("two networks are named `a`"), "{err}");
    }
}
