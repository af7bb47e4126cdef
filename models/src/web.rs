//! Web export: networks as a static folder that runs them in a browser on WebGPU, with
//! the same WGSL kernels the desktop runs.
//!
//! ```text
//! index.html, host.js, page.js   the page (models/web/): host.js replays a manifest,
//!                                page.js draws, picks test images, shows predictions
//! manifest.json                  per network: its kernels, buffers and commands
//! weights/NAME.bin               per network: the values its buffers start with
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
//!     "weights": "weights/NAME.bin", "input_buffer": i, "output_buffer": o,
//!     "outputs": classes,
//!     "buffers": [ { "words": n, "init": [word offset in the weights, words] | null } ],
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
/// by: unique, of letters, digits, `_`, `-` and `.`), `classes` (the names of the output
/// classes) and `samples`: relative paths and their bytes. The networks must be on the
/// CPU and take the same input.
pub fn export(
    networks: &[(String, &Network)],
    classes: &[String],
    samples: &Samples,
) -> Result<Vec<(String, Vec<u8>)>, String> {
    let mut files: Vec<(String, Vec<u8>)> = PAGE
        .iter()
        .map(|(name, text)| (name.to_string(), text.as_bytes().to_vec()))
        .collect();
    let input = networks.first().map(|(_, n)| n.spec().input);
    let mut kernels = BTreeSet::new();
    let mut described = Vec::new();
    let mut names = BTreeSet::new();
    for (name, network) in networks {
        check_name(name)?;
        if !names.insert(name.as_str()) {
            return Err(format!("two networks are named `{name}`"));
        }
        if Some(network.spec().input) != input {
            return Err(format!(
                "{name} takes {:?} images, {} {:?}: the page feeds every network the same",
                network.spec().input,
                networks[0].0,
                input.unwrap_or_default()
            ));
        }
        let (manifest, weights) = network_manifest(name, network, classes, &mut kernels)?;
        described.push(manifest);
        files.push((format!("weights/{name}.bin"), weights));
    }
    for kernel in &kernels {
        let source = kernel.source().into_bytes();
        files.push((format!("kernels/{}.wgsl", kernel.name()), source));
    }
    let image: usize = input.map_or(0, |s| s.iter().product());
    if samples.pixels.len() != samples.labels.len() * image {
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

/// A network's name becomes a file name and a URL: plain characters only.
fn check_name(name: &str) -> Result<(), String> {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-.".contains(c);
    match !name.is_empty() && !name.starts_with('.') && name.chars().all(plain) {
        true => Ok(()),
        false => Err(format!(
            "`{name}` cannot name a network of the page: letters, digits, `_`, `-` and `.` \
             only, not first"
        )),
    }
}

/// The manifest entry of one network and the bytes of its `weights/NAME.bin`.
fn network_manifest(
    name: &str,
    network: &Network,
    classes: &[String],
    kernels: &mut BTreeSet<KernelId>,
) -> Result<(Value, Vec<u8>), String> {
    let spec = network.spec();
    let fail = |e: engine::Error| format!("recording {name}'s forward pass: {e}");
    let [c, h, w] = spec.input;
    let x = Tensor::zeros(&[1, c, h, w], &Device::Cpu).map_err(fail)?;
    let _no_grad = engine::no_grad();
    let (logits, recorded) = trace::record(|| network.forward(&x, Mode::Eval)).map_err(fail)?;
    let missing = |what: &str| format!("{name}: the recorded forward pass never used its {what}");
    let input = recorded.buffer_of(&x).ok_or_else(|| missing("input"))?;
    let output = recorded
        .buffer_of(&logits)
        .ok_or_else(|| missing("output"))?;
    if !classes.is_empty() && logits.numel() != classes.len() {
        return Err(format!(
            "{name} has {} outputs for {} classes",
            logits.numel(),
            classes.len()
        ));
    }
    let mut layout = Layout::default();
    layout.traced(recorded.buffers(), input);
    for call in recorded.calls() {
        let scratch0 = layout.buffers.len();
        for &words in &call.plan.scratch {
            layout.add(words, None);
        }
        let buffer = |b: Buffer| match b {
            Buffer::Arg(i) => call.args[i],
            Buffer::Scratch(i) => scratch0 + i,
        };
        for command in &call.plan.commands {
            if let Some(command) = command_json(name, command, buffer, kernels)? {
                layout.commands.push(command);
            }
        }
    }
    if let Some(words) = layout
        .buffers
        .iter()
        .filter_map(|b| b["words"].as_u64())
        .max()
    {
        if 4 * words > MAX_BINDING_BYTES {
            return Err(format!(
                "{name}: a buffer of {} bytes, past the {MAX_BINDING_BYTES} every WebGPU \
                 device binds",
                4 * words
            ));
        }
    }
    let commands = [layout.restore, layout.commands].concat();
    let manifest = json!({
        "name": name,
        "architecture": spec.name,
        "parameters": network.parameter_count(),
        "flops": spec.forward_flops_per_image(),
        "input": spec.input,
        "outputs": logits.numel(),
        "weights": format!("weights/{name}.bin"),
        "input_buffer": input,
        "output_buffer": output,
        "buffers": layout.buffers,
        "commands": commands,
    });
    Ok((manifest, layout.weights))
}

/// WebGPU's guaranteed `maxStorageBufferBindingSize`, 128 MiB.
const MAX_BINDING_BYTES: u64 = 128 << 20;

/// A network's buffers as the manifest lists them, and the values they start with.
#[derive(Default)]
struct Layout {
    buffers: Vec<Value>,
    weights: Vec<u8>,
    // copies back of the starting values that a pass overwrites, before each pass
    restore: Vec<Value>,
    commands: Vec<Value>,
}

impl Layout {
    /// A buffer of `words` starting with `init`; its index.
    fn add(&mut self, words: usize, init: Option<&[f32]>) -> usize {
        let init = init.map_or(Value::Null, |values| {
            let offset = self.weights.len() / 4;
            self.weights
                .extend(values.iter().flat_map(|v| v.to_le_bytes()));
            json!([offset, values.len()])
        });
        self.buffers
            .push(json!({ "words": words.max(1), "init": init }));
        self.buffers.len() - 1
    }

    /// The trace's buffers, numbered as in the trace (the network's input starts with
    /// nothing: the page writes it). One a pass overwrites gets a twin holding its
    /// starting values, copied back before each pass.
    fn traced(&mut self, buffers: &[trace::TracedBuffer], input: usize) {
        let mut twins = Vec::new();
        for (id, b) in buffers.iter().enumerate() {
            let init = b.init.as_deref().filter(|_| id != input);
            match init {
                Some(values) if b.overwritten => {
                    self.add(b.words, None);
                    twins.push((id, values));
                }
                _ => {
                    self.add(b.words, init);
                }
            }
        }
        for (id, values) in twins {
            let twin = self.add(values.len(), Some(values));
            let words = values.len();
            self.restore
                .push(json!({ "copy": [twin, id], "words": words }));
        }
    }
}

/// The manifest's form of `command` (none for a dispatch of no workgroups), its
/// buffers numbered by `buffer`.
fn command_json(
    name: &str,
    command: &Command,
    buffer: impl Fn(Buffer) -> usize,
    kernels: &mut BTreeSet<KernelId>,
) -> Result<Option<Value>, String> {
    Ok(Some(match command {
        Command::Dispatch {
            kernel,
            params,
            bindings,
            workgroups,
        } => {
            if *workgroups == 0 {
                return Ok(None);
            }
            kernels.insert(*kernel);
            let grid = plan::grid(*workgroups, WORKGROUPS_PER_DIMENSION).ok_or_else(|| {
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
        Command::Clear { buffer: b, words } => json!({ "clear": buffer(*b), "words": words }),
        Command::Copy { src, dst, words } => {
            json!({ "copy": [buffer(*src), buffer(*dst)], "words": words })
        }
    }))
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
        assert_eq!(file("weights/student.bin").len(), 4 * (params + 1));
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
    fn names_that_are_not_plain_file_names_are_refused() {
        let spec = builtin::builtin("student-mlp").unwrap();
        let net = Network::new(&spec, 3, &Device::Cpu).unwrap();
        for bad in ["", ".hidden", "a b", "a/b", "50%"] {
            let err = export(&[(bad.to_string(), &net)], &[], &Samples::default()).unwrap_err();
            assert!(err.contains("cannot name a network"), "{bad}: {err}");
        }
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
