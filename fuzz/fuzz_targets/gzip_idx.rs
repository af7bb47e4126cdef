//! A `.gz` file as the data loader reads it: decompressed, then parsed as images.
#![no_main]
use distill::data::{gunzip, parse_idx_images};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(raw) = gunzip(data, "images.gz") {
        drop(parse_idx_images(&raw, "images.gz"));
    }
});
