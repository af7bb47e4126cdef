//! `distill`: train an MNIST teacher and student, distill one from the other, compare.

use clap::{Args, Parser, Subcommand};
use distill::data::{self, Mnist};
use distill::optim::{OptimizerConfig, OptimizerKind};
use distill::presets;
use distill::progress::{say, ProgressMode};
use distill::study::{self, StudyOptions};
use distill::train::{self, Distillation, TrainOptions, TrainReport};
use distill::{DistillError, Result};
use engine::{profile, Device, QueueStats};
use models::{builtin, checkpoint, Network, NetworkSpec};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

#[derive(Parser)]
#[command(
    name = "distill",
    version,
    about = "Knowledge distillation on MNIST, from WGSL kernels up"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train one network on MNIST with labels alone.
    Train(TrainArgs),
    /// Train a student from a frozen teacher's softened outputs and the labels.
    Distill(DistillArgs),
    /// The whole study: train the teacher, the student alone and the student distilled
    /// from the teacher, then compare them (Markdown, JSON and an SVG plot).
    Run(RunArgs),
    /// Evaluate a checkpoint on the MNIST test set.
    Eval(EvalArgs),
    /// List the built-in networks (and any named) with their parameter counts and
    /// forward FLOPs per image.
    Models(ModelsArgs),
    /// Fetch the four MNIST files from public mirrors and verify their hashes.
    Download {
        /// Where to put them [default: $MNIST_DIR, else ./data/mnist].
        #[arg(long)]
        data: Option<PathBuf>,
    },
}

/// The options every training run takes.
#[derive(Args, Clone)]
struct Common {
    /// Epochs to train.
    #[arg(long, default_value_t = 3)]
    epochs: usize,
    /// Examples per step.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Learning rate.
    #[arg(long, default_value_t = 1e-3)]
    lr: f32,
    /// sgd (momentum 0.9), adam or adamw.
    #[arg(long, default_value = "adam")]
    optimizer: OptimizerKind,
    /// Weight decay (L2 for sgd and adam, decoupled for adamw).
    #[arg(long, default_value_t = 0.0)]
    weight_decay: f32,
    /// Seeds the initialisation, the batch order, dropout and jitter.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Random ±2-pixel shifts of the training images.
    #[arg(long)]
    jitter: bool,
    /// Continue from the checkpoint at --out if there is one.
    #[arg(long)]
    resume: bool,
    #[command(flatten)]
    place: Place,
    #[command(flatten)]
    output: Output,
}

/// Where a command runs and where it reads MNIST: every command that touches the data.
#[derive(Args, Clone)]
struct Place {
    /// auto (a hardware GPU if there is one, else the CPU), gpu (any adapter, software
    /// ones included) or cpu.
    #[arg(long, default_value = "auto")]
    device: String,
    /// The MNIST folder [default: $MNIST_DIR, else ./data/mnist].
    #[arg(long)]
    data: Option<PathBuf>,
}

/// What a training command prints.
#[derive(Args, Clone)]
struct Output {
    /// Plain progress lines even on a terminal.
    #[arg(long, conflicts_with = "quiet")]
    plain: bool,
    /// Print only the summary.
    #[arg(long)]
    quiet: bool,
    /// At the end, print the time and calls per kernel (all runs together) and the time
    /// outside them.
    #[arg(long)]
    profile: bool,
}

#[derive(Args)]
struct TrainArgs {
    /// A built-in network (teacher-cnn, student-cnn, teacher-mlp, student-mlp) or a
    /// network description file (JSON; see the README).
    #[arg(long)]
    model: String,
    /// The checkpoint to write after every epoch.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    common: Common,
}

#[derive(Args)]
struct DistillArgs {
    /// The teacher's checkpoint.
    #[arg(long)]
    teacher: PathBuf,
    /// The student to train: a built-in network or a description file.
    #[arg(long)]
    student: String,
    /// Softmax temperature of the distillation term.
    #[arg(long = "T", default_value_t = 5.0)]
    temperature: f32,
    /// Weight of the distillation term; 1 - alpha weighs the labels' cross-entropy.
    #[arg(long, default_value_t = 0.1)]
    alpha: f32,
    /// The student's checkpoint to write after every epoch.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    common: Common,
}

#[derive(Args)]
struct RunArgs {
    /// The study's recipe: `default` or `hinton-mnist` (see `--list-presets`).
    #[arg(long, default_value = "default")]
    preset: String,
    /// Print the presets and exit.
    #[arg(long)]
    list_presets: bool,
    /// Replace the preset's teacher: a built-in network or a description file.
    #[arg(long)]
    teacher: Option<String>,
    /// Replace the preset's student: a built-in network or a description file.
    #[arg(long)]
    student: Option<String>,
    /// Seeds all three runs (initialisation, batch order, dropout, jitter).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Override the preset's epochs (all three runs).
    #[arg(long)]
    epochs: Option<usize>,
    /// Override the preset's temperature.
    #[arg(long = "T")]
    temperature: Option<f32>,
    /// Override the preset's distillation weight.
    #[arg(long)]
    alpha: Option<f32>,
    /// Where the checkpoints and the comparison go [default: runs/PRESET-seedSEED].
    #[arg(long)]
    out_dir: Option<PathBuf>,
    #[command(flatten)]
    place: Place,
    #[command(flatten)]
    output: Output,
}

#[derive(Args)]
struct ModelsArgs {
    /// Networks to describe besides the built-in ones: names or description files.
    models: Vec<String>,
}

#[derive(Args)]
struct EvalArgs {
    #[arg(long)]
    checkpoint: PathBuf,
    #[command(flatten)]
    place: Place,
}

fn main() -> ExitCode {
    if std::env::var_os("NODEVICE_SELECT").is_none() {
        // NOTE: Mesa's device-select Vulkan layer prints "XDG_RUNTIME_DIR is invalid" on
        // headless machines; the program ranks the adapters itself, so the layer has
        // nothing to add. Set before any thread exists.
        std::env::set_var("NODEVICE_SELECT", "1");
    }
    engine::host_memory::retain_freed_memory();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Train(args) => cmd_train(args),
        Command::Distill(args) => cmd_distill(args),
        Command::Run(args) => cmd_run(args),
        Command::Eval(args) => cmd_eval(args),
        Command::Models(args) => cmd_models(args),
        Command::Download { data } => Ok(data::download(&data::resolve_data_dir(data.as_deref()))?),
    }
}

impl Output {
    fn progress(&self) -> ProgressMode {
        match (self.quiet, self.plain) {
            (true, _) => ProgressMode::Quiet,
            (_, true) => ProgressMode::Plain,
            _ => ProgressMode::Auto,
        }
    }
}

impl Place {
    /// The device `--device` names and the MNIST files under `--data`, saying which.
    fn open(&self, mode: ProgressMode) -> Result<(Device, Mnist)> {
        let (device, note) = Device::select(&self.device)?;
        say(mode, &note);
        let dir = data::resolve_data_dir(self.data.as_deref());
        let mnist = Mnist::load(&dir)?;
        say(
            mode,
            &format!(
                "MNIST from {}: {} train, {} test",
                dir.display(),
                mnist.train.len(),
                mnist.test.len()
            ),
        );
        Ok((device, mnist))
    }
}

fn options(out: PathBuf, c: &Common) -> TrainOptions {
    let mut optimizer = OptimizerConfig::new(c.optimizer, c.lr);
    optimizer.weight_decay = c.weight_decay;
    TrainOptions {
        epochs: c.epochs,
        batch_size: c.batch,
        optimizer,
        seed: c.seed,
        jitter: c.jitter,
        out,
        resume: c.resume,
        progress: c.output.progress(),
    }
}

fn cmd_train(args: TrainArgs) -> Result<()> {
    let opts = options(args.out, &args.common);
    // Check the cheap things before loading anything.
    train::validate(&opts)?;
    let spec = NetworkSpec::resolve(&args.model)?;
    let (device, data) = args.common.place.open(opts.progress)?;
    let network = Network::new(&spec, opts.seed, &device)?;
    let profiling = start_profile(args.common.output.profile);
    let report = train::train(&opts, &network, &data, &device, None)?;
    summary(&opts, &network, &report);
    print_profile(profiling, &[report.queue()]);
    Ok(())
}

fn cmd_distill(args: DistillArgs) -> Result<()> {
    let opts = options(args.out, &args.common);
    // Check the cheap things before loading anything.
    Distillation::check(args.temperature, args.alpha)?;
    train::validate(&opts)?;
    let spec = NetworkSpec::resolve(&args.student)?;
    let (device, data) = args.common.place.open(opts.progress)?;
    let (teacher, _) = checkpoint::load_network(&args.teacher, &device)?;
    say(
        opts.progress,
        &format!(
            "teacher: {} from {}",
            teacher.name(),
            args.teacher.display()
        ),
    );
    let kd = Distillation::new(&teacher, args.temperature, args.alpha)?;
    let student = Network::new(&spec, opts.seed, &device)?;
    // The teacher's logits, computed once inside `train`, are part of the profile.
    let profiling = start_profile(args.common.output.profile);
    let report = train::train(&opts, &student, &data, &device, Some(&kd))?;
    summary(&opts, &student, &report);
    print_profile(profiling, &[report.queue()]);
    Ok(())
}

/// With `--profile`: counts kernel calls and times from now on, and starts the clock.
fn start_profile(on: bool) -> Option<Instant> {
    on.then(|| {
        profile::reset();
        profile::enable(true);
        Instant::now()
    })
}

/// With `--profile`: the table of kernel times against the wall time since
/// [`start_profile`]: per-epoch evaluation and checkpoints included; and on a GPU, the
/// queue's submits and dispatches per training step.
fn print_profile(started: Option<Instant>, runs: &[(usize, Option<QueueStats>)]) {
    let Some(t0) = started else { return };
    profile::enable(false);
    // Collected first: on the GPU it waits for the last kernels, which is training time.
    let stats = profile::report();
    let wall = t0.elapsed().as_secs_f64();
    print!("\n{}", profile::table(&stats, wall));
    let steps: usize = runs.iter().map(|(steps, _)| steps).sum();
    let queues = runs.iter().filter_map(|(_, q)| *q);
    let (submits, dispatches) = queues.fold((0, 0), |(s, d), q| (s + q.submits, d + q.dispatches));
    if steps > 0 && runs.iter().any(|(_, q)| q.is_some()) {
        let per = |n: u64| n as f64 / steps as f64;
        println!(
            "GPU queue in the {steps} training steps: {submits} submits ({:.2} a step), \
             {dispatches} dispatches ({:.1} a step){}",
            per(submits),
            per(dispatches),
            match profile::gpu_submits_per_kernel() {
                true => "; the profile's own submit around each kernel included",
                false => "",
            }
        );
    }
}

fn summary(opts: &TrainOptions, network: &Network, report: &TrainReport) {
    let Some(test) = report.final_test() else {
        println!(
            "{}: all {} epochs were already done in {}",
            network.name(),
            opts.epochs,
            opts.out.display()
        );
        return;
    };
    println!(
        "{}: test accuracy {:.2}% ({} errors of {}), trained {:.1}s, checkpoint {}, metrics {}",
        network.name(),
        100.0 * test.accuracy,
        test.errors,
        test.total,
        report.train_seconds,
        opts.out.display(),
        train::metrics_path(&opts.out).display()
    );
}

fn cmd_run(args: RunArgs) -> Result<()> {
    if args.list_presets {
        for p in presets::PRESETS {
            println!("{:<14} {}", p.name, p.about);
        }
        return Ok(());
    }
    let mut preset = *presets::find(&args.preset).map_err(DistillError::Config)?;
    preset.epochs = args.epochs.unwrap_or(preset.epochs);
    preset.temperature = args.temperature.unwrap_or(preset.temperature);
    preset.alpha = args.alpha.unwrap_or(preset.alpha);
    Distillation::check(preset.temperature, preset.alpha)?;
    if preset.epochs == 0 {
        return Err(DistillError::Config("--epochs must be at least 1".into()));
    }
    let teacher = NetworkSpec::resolve(args.teacher.as_deref().unwrap_or(preset.teacher))?;
    let student = NetworkSpec::resolve(args.student.as_deref().unwrap_or(preset.student))?;
    let progress = args.output.progress();
    let out_dir = args
        .out_dir
        .unwrap_or_else(|| PathBuf::from(format!("runs/{}-seed{}", preset.name, args.seed)));
    let (device, data) = args.place.open(progress)?;
    let opts = StudyOptions {
        preset,
        teacher,
        student,
        seed: args.seed,
        out_dir: out_dir.clone(),
        progress,
    };
    let profiling = start_profile(args.output.profile);
    let rows = study::run_study(&opts, &data, &device)?;
    print!("{}", study::markdown(&preset, args.seed, &device, &rows));
    println!(
        "\nwritten: {0}/comparison.md, {0}/comparison.json, {0}/accuracy.svg",
        out_dir.display()
    );
    let runs: Vec<_> = rows.iter().map(|r| (r.train_steps, r.gpu_queue)).collect();
    print_profile(profiling, &runs);
    Ok(())
}

fn cmd_eval(args: EvalArgs) -> Result<()> {
    let (device, data) = args.place.open(ProgressMode::Auto)?;
    let (network, ckpt) = checkpoint::load_network(&args.checkpoint, &device)?;
    let e = train::evaluate(&network, &data.test, 1000, &device)?;
    let epoch = ckpt.metadata.get("epoch").map_or("?", String::as_str);
    println!(
        "{} (epoch {epoch}): test accuracy {:.2}% ({} errors of {}), loss {:.4}, {:.1} µs/image",
        network.name(),
        100.0 * e.accuracy,
        e.errors,
        e.total,
        e.loss,
        1e6 * e.seconds / e.total.max(1) as f64
    );
    Ok(())
}

fn cmd_models(args: ModelsArgs) -> Result<()> {
    let mut specs = builtin::all();
    for model in &args.models {
        specs.push(NetworkSpec::resolve(model)?);
    }
    println!(
        "{:<16} {:>12} {:>16}",
        "model", "parameters", "forward FLOPs"
    );
    for spec in specs {
        // Counted from the description: a network too large to build is still listed.
        println!(
            "{:<16} {:>12} {:>16}",
            spec.name,
            spec.parameter_count(),
            spec.forward_flops_per_image()
        );
    }
    Ok(())
}
