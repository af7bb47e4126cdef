//! How the CPU backend's memory behaves between training steps.
//!
//! Every op allocates its output (`vec![0.0; n]`), and a training step frees them all
//! at its end. By default glibc hands that freed heap back to the operating system after
//! every step, so the next step page-faults every page in again and zeroes it: measured
//! with `cargo bench --bench train_step`, that was half of a teacher-cnn step on the
//! CPU (24.0 ms a step, 12.6 ms with the settings below).

/// Keeps freed heap memory in the process for reuse instead of returning it to the OS
/// (glibc on Linux; elsewhere nothing). Call once at program start; it costs resident
/// memory up to the peak of one training step.
pub fn retain_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes malloc's tuning parameters, under its own lock.
    unsafe {
        // NOTE: setting any of these also turns off glibc's dynamic mmap threshold, so
        // the threshold is set too: activations (up to tens of MiB) stay on the heap.
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TOP_PAD, 256 << 20);
    }
}
