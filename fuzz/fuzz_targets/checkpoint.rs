//! A checkpoint file: the safetensors header length, JSON header, offsets, dtypes,
//! shapes and metadata (the network description in it included), then what the program
//! reads from a checkpoint that parses.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    if let Ok(ckpt) = models::checkpoint::parse(data, Path::new("fuzz.safetensors")) {
        let _ = (ckpt.epoch(), ckpt.seed(), ckpt.metrics());
        if let Some(spec) = &ckpt.spec {
            let _ = spec.output_shape();
            let _ = spec.forward_flops_per_image();
        }
    }
});
