//! The kernel profiler: what it counts on each device, and that off means nothing.
//!
//! The profiler is global state, so the tests of this file take one lock each.

use engine::profile::{self, KernelStat};
use engine::{Device, Tensor};
use std::sync::Mutex;

static PROFILER: Mutex<()> = Mutex::new(());

/// `sum(relu(x · w))` and its backward: x (2, 3), w (3, 4), both parameters.
fn forward_backward(device: &Device) {
    // Positive entries, so that no pre-activation sits on relu's kink.
    let x = Tensor::parameter(vec![0.5, 1.0, 1.5, 2.0, 2.5, 3.0], &[2, 3], device).unwrap();
    let w =
        Tensor::parameter((1..=12).map(|i| i as f32 / 10.0).collect(), &[3, 4], device).unwrap();
    let loss = x.matmul(&w).unwrap().relu().unwrap().sum().unwrap();
    let grads = loss.backward().unwrap();
    assert_eq!(grads.get(&x).unwrap().to_vec().unwrap().len(), 6);
    assert_eq!(grads.get(&w).unwrap().to_vec().unwrap().len(), 12);
}

fn find<'a>(stats: &'a [KernelStat], name: &str, device: &str) -> Option<&'a KernelStat> {
    stats.iter().find(|s| s.name == name && s.device == device)
}

/// The GPU device, or `None` after a loud skip message; with `KD_REQUIRE_GPU=1` a
/// missing adapter fails the test instead.
fn gpu() -> Option<Device> {
    match Device::select("gpu") {
        Ok((device, _)) => Some(device),
        Err(e) if std::env::var("KD_REQUIRE_GPU").as_deref() == Ok("1") => {
            panic!("KD_REQUIRE_GPU=1 but no GPU adapter: {e}")
        }
        Err(e) => {
            eprintln!(
                "\n*** SKIPPED: no GPU adapter ({e}); set KD_REQUIRE_GPU=1 to fail instead ***\n"
            );
            None
        }
    }
}

#[test]
fn cpu_kernels_are_counted_only_while_enabled() {
    let _lock = PROFILER.lock().unwrap_or_else(|e| e.into_inner());
    profile::enable(false);
    profile::reset();
    forward_backward(&Device::Cpu);
    assert_eq!(profile::report(), vec![], "profiling is off by default");

    profile::enable(true);
    forward_backward(&Device::Cpu);
    profile::enable(false);
    let stats = profile::report();
    // Forward: one product; backward: dx = g · wᵀ and dw = xᵀ · g.
    let count = |name| find(&stats, name, "cpu").map_or(0, |s| s.calls);
    assert_eq!(count("matmul"), 3, "{stats:?}");
    assert_eq!(count("relu_forward"), 1, "{stats:?}");
    assert_eq!(count("relu_backward"), 1, "{stats:?}");
    assert!(stats.iter().all(|s| s.device == "cpu" && s.seconds >= 0.0));
    assert!(stats.windows(2).all(|w| w[0].seconds >= w[1].seconds));

    let table = profile::table(&stats, 1.0);
    assert!(
        table.contains("matmul") && table.contains("other:"),
        "{table}"
    );

    // Disabled again: nothing more is counted, and reset forgets.
    forward_backward(&Device::Cpu);
    assert_eq!(profile::report(), stats);
    profile::reset();
    assert_eq!(profile::report(), vec![]);
}

#[test]
fn gpu_kernels_are_timed_on_the_device() {
    let _lock = PROFILER.lock().unwrap_or_else(|e| e.into_inner());
    let Some(device) = gpu() else { return };
    profile::enable(false);
    profile::reset();
    forward_backward(&device);
    assert_eq!(profile::report(), vec![], "profiling is off by default");

    profile::enable(true);
    forward_backward(&device);
    profile::enable(false);
    let stats = profile::report();
    let matmul = find(&stats, "matmul", "gpu").unwrap_or_else(|| panic!("{stats:?}"));
    assert_eq!(matmul.calls, 3, "{stats:?}");
    let relu = find(&stats, "relu_backward", "gpu").unwrap_or_else(|| panic!("{stats:?}"));
    assert_eq!(relu.calls, 1, "{stats:?}");
    assert!(stats.iter().all(|s| s.device == "gpu"), "{stats:?}");
    assert!(
        stats.iter().all(|s| s.calls > 0 && s.seconds > 0.0),
        "{stats:?}"
    );
    let table = profile::table(&stats, 1.0);
    assert!(table.contains("GPU times:"), "{table}");
    eprintln!("{table}");
    profile::reset();
    assert_eq!(profile::report(), vec![]);
}
