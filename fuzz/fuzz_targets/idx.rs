//! IDX images and labels files (decompressed), alone and as a pair: the input's first
//! byte picks which, the rest is the file.
#![no_main]
use distill::data::{parse_idx_images, parse_idx_labels, Dataset};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, file)) = data.split_first() else {
        return;
    };
    match which % 3 {
        0 => drop(parse_idx_images(file, "images")),
        1 => drop(parse_idx_labels(file, "labels")),
        _ => {
            // Two files: the first two bytes give the images file's length.
            let (len, rest) = file.split_at(file.len().min(2));
            let len = len
                .iter()
                .fold(0usize, |n, &b| n << 8 | b as usize)
                .min(rest.len());
            let (images, labels) = rest.split_at(len);
            drop(Dataset::from_idx(images, "images", labels, "labels"));
        }
    }
});
