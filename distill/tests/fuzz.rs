//! The in-suite short run of the fuzz targets in `fuzz/`: real inputs (the official MNIST
//! files cut to a few images, a checkpoint `save` writes, a built-in network's
//! description) mutated by proptest (bytes flipped, runs overwritten with extreme
//! 32-bit values, cut, spliced, inserted) and handed to the same parsers. Each must give
//! its value or an error, never a panic (a panic fails the case, and proptest shrinks it
//! to the smallest input). The long runs are `fuzz/run.sh`'s, from the seeds that
//! [`seeds_for_cargo_fuzz`] writes.

mod common;

use distill::data::{self as idx, Dataset};
use engine::Device;
use models::{builtin, checkpoint, Network, NetworkSpec};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::OnceLock;

const CASES: u32 = 20_000;

fn mnist(name: &str) -> Vec<u8> {
    let path = common::mnist_dir();
    idx::read_file(&path, name).unwrap().1
}

/// A real IDX file's header and first `count` items of `item` bytes, its count set to
/// `count`.
fn cut(bytes: &[u8], header: usize, item: usize, count: u32) -> Vec<u8> {
    let mut out = bytes[..header + item * count as usize].to_vec();
    out[4..8].copy_from_slice(&count.to_be_bytes());
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

struct Seeds {
    images: Vec<u8>,
    labels: Vec<u8>,
    images_gz: Vec<u8>,
    checkpoint: Vec<u8>,
    description: String,
}

fn seeds() -> &'static Seeds {
    static SEEDS: OnceLock<Seeds> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let images = cut(&mnist("t10k-images-idx3-ubyte"), 16, 784, 3);
        let labels = cut(&mnist("t10k-labels-idx1-ubyte"), 8, 1, 40);
        // A small described network, so that each case parses a few KiB.
        let spec = NetworkSpec::new("fuzz")
            .conv2d("conv1", 1, 2, 3)
            .relu()
            .max_pool2d(2)
            .flatten()
            .linear("fc1", 338, 10);
        let net = Network::new(&spec, 0, &Device::Cpu).unwrap();
        let dir = std::env::temp_dir().join(format!("kd-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("seed.safetensors");
        let mut meta = BTreeMap::new();
        for (k, v) in [("epoch", "1"), ("seed", "0"), ("optimizer", "adam")] {
            meta.insert(k.to_string(), v.to_string());
        }
        meta.insert("optimizer_steps".into(), "7".into());
        meta.insert("metrics".into(), "{\"epoch\":1}".into());
        checkpoint::save(&path, &net, &meta, &[]).unwrap();
        let checkpoint = std::fs::read(&path).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        Seeds {
            images_gz: gzip(&images),
            images,
            labels,
            checkpoint,
            description: builtin::builtin("teacher-cnn-large").unwrap().to_json(),
        }
    })
}

/// One edit of a byte string.
#[derive(Clone, Debug)]
enum Edit {
    Flip { at: usize, mask: u8 },
    Word { at: usize, value: u32 },
    Cut { at: usize },
    Insert { at: usize, bytes: Vec<u8> },
    Splice { from: usize, to: usize, len: usize },
}

fn edit() -> impl Strategy<Value = Edit> {
    let words = prop_oneof![
        Just(0u32),
        Just(1),
        Just(u32::MAX),
        Just(i32::MAX as u32),
        Just(0x8000_0000),
        Just(28),
        Just(784),
        any::<u32>(),
    ];
    prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(at, mask)| Edit::Flip { at, mask }),
        (any::<usize>(), words).prop_map(|(at, value)| Edit::Word { at, value }),
        any::<usize>().prop_map(|at| Edit::Cut { at }),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(at, bytes)| Edit::Insert { at, bytes }),
        (any::<usize>(), any::<usize>(), 1..64usize).prop_map(|(from, to, len)| Edit::Splice {
            from,
            to,
            len
        }),
    ]
}

/// `seed` with `edits` applied in turn; a position is taken modulo the current length,
/// and most edits land in the first 64 bytes, where the headers are.
fn mutate(seed: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for e in edits {
        let len = b.len().max(1);
        let pos = |at: usize| {
            if at.is_multiple_of(4) {
                at % len
            } else {
                at % len.min(64)
            }
        };
        match e {
            Edit::Flip { at, mask } if !b.is_empty() => {
                let i = pos(*at);
                b[i] ^= mask;
            }
            Edit::Word { at, value } => {
                let i = pos(*at).min(b.len().saturating_sub(4));
                let word = value.to_be_bytes();
                for (k, w) in word.iter().enumerate() {
                    if let Some(slot) = b.get_mut(i + k) {
                        *slot = *w;
                    }
                }
            }
            Edit::Cut { at } => b.truncate(pos(*at)),
            Edit::Insert { at, bytes } => {
                let i = pos(*at).min(b.len());
                b.splice(i..i, bytes.iter().copied());
            }
            Edit::Splice { from, to, len: n } if !b.is_empty() => {
                let (from, to) = (pos(*from), pos(*to));
                let n = (*n).min(b.len() - from).min(b.len() - to);
                let piece = b[from..from + n].to_vec();
                b[to..to + n].copy_from_slice(&piece);
            }
            _ => {}
        }
    }
    b
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    prop::collection::vec(edit(), 1..5)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: CASES,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn mutated_idx_files_parse_or_fail_cleanly(image_edits in edits(), label_edits in edits()) {
        let s = seeds();
        let images = mutate(&s.images, &image_edits);
        let labels = mutate(&s.labels, &label_edits);
        let _ = idx::parse_idx_images(&images, "images");
        let _ = idx::parse_idx_labels(&labels, "labels");
        let _ = Dataset::from_idx(&images, "images", &labels, "labels");
    }

    #[test]
    fn mutated_gzip_files_decompress_or_fail_cleanly(gz_edits in edits()) {
        let gz = mutate(&seeds().images_gz, &gz_edits);
        if let Ok(raw) = idx::gunzip(&gz, "images.gz") {
            let _ = idx::parse_idx_images(&raw, "images.gz");
        }
    }

    #[test]
    fn mutated_checkpoints_parse_or_fail_cleanly(ckpt_edits in edits()) {
        let bytes = mutate(&seeds().checkpoint, &ckpt_edits);
        if let Ok(ckpt) = checkpoint::parse(&bytes, Path::new("fuzz.safetensors")) {
            // What the program does next with a checkpoint that reads.
            let _ = ckpt.epoch();
            let _ = ckpt.seed();
            if let Some(spec) = &ckpt.spec {
                let _ = spec.output_shape();
                let _ = spec.forward_flops_per_image();
            }
        }
    }

    #[test]
    fn mutated_descriptions_parse_or_fail_cleanly(json_edits in edits()) {
        let bytes = mutate(seeds().description.as_bytes(), &json_edits);
        let text = String::from_utf8_lossy(&bytes);
        if let Ok(spec) = NetworkSpec::from_json(&text) {
            let _ = spec.output_shape();
            let _ = spec.parameter_shapes();
            let _ = spec.forward_flops_per_image();
        }
    }
}

#[test]
fn the_seeds_themselves_parse() {
    let s = seeds();
    assert_eq!(
        idx::parse_idx_images(&s.images, "i").unwrap().len(),
        3 * 784
    );
    assert_eq!(idx::parse_idx_labels(&s.labels, "l").unwrap().len(), 40);
    assert_eq!(idx::gunzip(&s.images_gz, "g").unwrap(), s.images);
    checkpoint::parse(&s.checkpoint, Path::new("seed")).unwrap();
    NetworkSpec::from_json(&s.description).unwrap();
}

/// Not a test: writes the seeds above as cargo-fuzz's seed corpus, `DIR/<target>/<name>`
/// with `KD_FUZZ_CORPUS=DIR`, for `fuzz/run.sh` (which runs it with `--ignored`).
#[test]
#[ignore = "writes cargo-fuzz's seed corpus; fuzz/run.sh runs it"]
fn seeds_for_cargo_fuzz() {
    let dir = std::env::var_os("KD_FUZZ_CORPUS").expect("KD_FUZZ_CORPUS names the corpus folder");
    let s = seeds();
    let dir = Path::new(&dir);
    let mut pair = vec![2, (s.images.len() >> 8) as u8, s.images.len() as u8];
    pair.extend_from_slice(&s.images);
    pair.extend_from_slice(&s.labels);
    let files: [(&str, &str, Vec<u8>); 6] = [
        ("idx", "images", [&[0u8][..], &s.images].concat()),
        ("idx", "labels", [&[1u8][..], &s.labels].concat()),
        ("idx", "pair", pair),
        ("gzip_idx", "images.gz", s.images_gz.clone()),
        ("checkpoint", "seed.safetensors", s.checkpoint.clone()),
        (
            "description",
            "teacher-cnn-large.json",
            s.description.clone().into_bytes(),
        ),
    ];
    for (target, name, bytes) in files {
        std::fs::create_dir_all(dir.join(target)).unwrap();
        std::fs::write(dir.join(target).join(name), bytes).unwrap();
    }
    for name in builtin::NAMES {
        let json = builtin::builtin(name).unwrap().to_json();
        std::fs::write(dir.join("description").join(format!("{name}.json")), json).unwrap();
    }
}
