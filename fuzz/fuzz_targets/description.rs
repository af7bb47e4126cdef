//! A network description file (JSON), then the shape and cost checks `distill` runs on
//! one that parses before building it.
#![no_main]
use libfuzzer_sys::fuzz_target;
use models::NetworkSpec;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(spec) = NetworkSpec::from_json(&text) {
        let _ = spec.output_shape();
        let _ = spec.parameter_shapes();
        let _ = spec.forward_flops_per_image();
    }
});
