//! A student the library does not know, distilled from a teacher-cnn checkpoint through
//! the public API alone (`distill train --model teacher-cnn --out runs/teacher.safetensors`
//! first): `cargo run --release --example custom_student -- runs/teacher.safetensors [EPOCHS]`
use distill::{data, train};
use engine::Device;
use models::{checkpoint, Network, NetworkSpec};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let teacher = args
        .next()
        .ok_or("usage: custom_student TEACHER [EPOCHS]")?;
    let epochs = args.next().map_or(Ok(1), |e| e.parse())?;
    // 28 -conv3-> 26 -pool-> 13: 8 · 13 · 13 values into one linear layer; 13,610 parameters.
    let spec = NetworkSpec::new("leaky-student")
        .conv2d("conv1", 1, 8, 3)
        .leaky_relu(0.2)
        .max_pool2d(2)
        .flatten()
        .linear("fc1", 8 * 13 * 13, 10);
    let (device, note) = Device::select("auto")?;
    println!("{note}");
    let mnist = data::Mnist::load(&data::resolve_data_dir(data::DatasetKind::Mnist, None))?;
    let (teacher, _) = checkpoint::load_network(teacher.as_ref(), &device)?;
    let student = Network::new(&spec, 0, &device)?;
    std::fs::create_dir_all("runs")?;
    let opts = train::TrainOptions {
        epochs,
        ..train::TrainOptions::new("runs/leaky-student.safetensors")
    };
    let kd = train::Distillation::new(&teacher, 4.0, 0.5)?;
    let report = train::train(&opts, &student, &mnist, &device, Some(&kd))?;
    let test = report.final_test().ok_or("no epoch ran")?;
    let (name, from, errors, total) = (student.name(), teacher.name(), test.errors, test.total);
    println!("{name} distilled from {from}: {errors} test errors of {total}");
    Ok(())
}
