//! What every test of the `distill` package that reads a data set shares.

use distill::data::{self, DatasetKind};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The official files of `kind`, found as the program finds them (`$MNIST_DIR` or
/// `$FASHION_MNIST_DIR`, else `data/mnist` or `data/fashion-mnist` in the checkout) and
/// downloaded there once when they are nowhere. Without them (and no network) the test
/// fails saying where to put them.
pub fn data_dir(kind: DatasetKind) -> PathBuf {
    static DIRS: [OnceLock<PathBuf>; 2] = [OnceLock::new(), OnceLock::new()];
    let slot = match kind {
        DatasetKind::Mnist => &DIRS[0],
        DatasetKind::FashionMnist => &DIRS[1],
    };
    slot.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        data::find_or_fetch(kind, &root).unwrap_or_else(|e| {
            panic!(
                "{e}\nthe tests read {} from ${} or from {} in the checkout: put its four \
                 files there (`distill download --dataset {kind}` fetches them)",
                kind.title(),
                kind.env_var(),
                root.join(kind.default_dir()).display()
            )
        })
    })
    .clone()
}

/// [`data_dir`] of MNIST.
pub fn mnist_dir() -> PathBuf {
    data_dir(DatasetKind::Mnist)
}

/// `distill train --model MODEL` for one epoch on 1,000 images (`--val 59000`) on the
/// CPU, quietly, from `data` into `out`: the shortest real training run. More arguments
/// may be added before it is run.
#[allow(dead_code)] // NOTE: not every test file that shares this module trains.
pub fn quick_train(model: &str, data: &Path, out: &Path) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_distill"));
    command
        .args(["train", "--model", model, "--epochs", "1", "--val", "59000"])
        .args(["--device", "cpu", "--quiet"])
        .arg(format!("--data={}", data.display()))
        .arg(format!("--out={}", out.display()));
    command
}

/// An empty folder `kd-NAME-PID` in the temporary directory, made anew.
#[allow(dead_code)]
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kd-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs the `distill` program with `args` and waits for it.
#[allow(dead_code)]
pub fn distill(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_distill"))
        .args(args)
        .output()
        .unwrap()
}

/// Runs [`quick_train`] as it is and checks that it succeeded.
#[allow(dead_code)]
pub fn trained(model: &str, data: &Path, out: &Path) {
    let run = quick_train(model, data, out).output().unwrap();
    assert!(
        run.status.success(),
        "training {model}: {}",
        String::from_utf8_lossy(&run.stderr)
    );
}
