//! The weights file is the network's PyTorch `state_dict` and nothing else: its keys and
//! shapes are those of the PyTorch modules the README documents (read from the README
//! itself), and the training state goes to the file beside it.

mod common;

use models::{builtin, checkpoint};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

type Shapes = BTreeMap<String, Vec<usize>>;

/// `(network name, state_dict shapes)` of every `class X(nn.Module):  # NAME` in the
/// README's PyTorch block, from its `self.N = nn.Conv2d(in, out, k, ...)` and
/// `self.N = nn.Linear(in, out)` lines.
fn readme_modules() -> BTreeMap<String, Shapes> {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .expect("reading the README");
    let section = readme
        .split("### Using the weights in PyTorch")
        .nth(1)
        .expect("the README's PyTorch section");
    let code = section
        .split("```python")
        .nth(1)
        .unwrap()
        .split("```")
        .next()
        .unwrap();
    let mut modules = BTreeMap::new();
    let mut current: Option<(String, Shapes)> = None;
    let ints = |args: &str| -> Vec<usize> {
        args.split(',')
            .filter(|a| !a.contains('='))
            .map(|a| {
                a.trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("`{a}` in `{args}`"))
            })
            .collect()
    };
    for line in code.lines() {
        if let Some(name) = line
            .strip_prefix("class ")
            .and_then(|l| l.split("# ").nth(1))
        {
            modules.extend(current.take());
            current = Some((name.trim().to_string(), Shapes::new()));
        }
        let Some((lhs, rhs)) = line
            .trim()
            .strip_prefix("self.")
            .and_then(|l| l.split_once(" = nn."))
        else {
            continue;
        };
        let (kind, args) = rhs.trim_end_matches(')').split_once('(').unwrap();
        let shapes = &mut current.as_mut().expect("a layer outside a class").1;
        let (weight, out) = match (kind, ints(args).as_slice()) {
            ("Conv2d", &[i, o, k]) => (vec![o, i, k, k], o),
            ("Linear", &[i, o]) => (vec![o, i], o),
            other => panic!("a layer this test does not read: {other:?}"),
        };
        shapes.insert(format!("{lhs}.weight"), weight);
        shapes.insert(format!("{lhs}.bias"), vec![out]);
    }
    modules.extend(current);
    modules
}

#[test]
fn the_readme_modules_have_every_built_in_network_s_state_dict() {
    let modules = readme_modules();
    let names: Vec<&str> = modules.keys().map(String::as_str).collect();
    let mut all = builtin::NAMES.to_vec();
    all.sort();
    assert_eq!(names, all, "a class per built-in network");
    for (name, shapes) in &modules {
        let ours: Shapes = builtin::builtin(name)
            .unwrap()
            .parameter_shapes()
            .into_iter()
            .collect();
        assert_eq!(
            &ours, shapes,
            "{name}: the README's module against the network"
        );
    }
}

fn shared_mnist_dir() -> PathBuf {
    common::mnist_dir()
}

#[test]
fn a_trained_weights_file_holds_the_state_dict_alone() {
    let dir = std::env::temp_dir().join(format!("kd-weights-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("student.safetensors");
    let status = common::quick_train("student-cnn", &shared_mnist_dir(), &out)
        .status()
        .unwrap();
    assert!(status.success());
    let weights = checkpoint::read(&out).unwrap();
    let keys: Shapes = weights
        .tensors
        .iter()
        .map(|(name, shape, _)| (name.clone(), shape.clone()))
        .collect();
    assert_eq!(
        keys,
        readme_modules()["student-cnn"],
        "exactly the state_dict"
    );
    for (key, value) in [
        ("input_shape", "[1, 28, 28]"),
        ("input_mean", "0.1307"),
        ("input_std", "0.3081"),
        ("classes", "10"),
        ("dataset", "mnist"),
        ("epoch", "1"),
    ] {
        assert_eq!(weights.metadata[key], value, "metadata `{key}`");
    }
    assert!(!weights.metadata.contains_key("optimizer_steps"));
    // The training state beside it: the same parameters, and Adam's two moments each.
    let state = checkpoint::read(&checkpoint::state_path(&out)).unwrap();
    assert_eq!(state.extra().count(), 2 * keys.len());
    for (name, shape, values) in &weights.tensors {
        assert_eq!(
            state.tensor(name),
            Some((shape.as_slice(), values.as_slice()))
        );
    }
    assert_eq!(state.metadata["optimizer_steps"], "16");
    let _ = std::fs::remove_dir_all(&dir);
}
