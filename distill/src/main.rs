//! `distill`: train an MNIST teacher and student, distill one from the other, compare.

use clap::{Args, Parser, Subcommand};
use distill::data::{self, DatasetKind, Mnist, OFFICIAL_TRAIN_LEN};
use distill::optim::{OptimizerConfig, OptimizerKind, Schedule, ScheduleKind};
use distill::presets;
use distill::progress::{say, ProgressMode};
use distill::study::{self, StudyOptions};
use distill::sweep::{self, SweepOptions};
use distill::train::{self, Distillation, Loss, TrainOptions, TrainReport};
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
    /// Train one network on MNIST or Fashion-MNIST with labels alone.
    Train(TrainArgs),
    /// Train a student from a frozen teacher's softened outputs and the labels.
    Distill(DistillArgs),
    /// The whole study: train the teacher, the student alone and the student distilled
    /// from the teacher, then compare them (Markdown, JSON and an SVG plot).
    Run(RunArgs),
    /// Choose a recipe on the validation split: a grid over T and alpha (or, with
    /// --widths, student sizes alone and distilled), every cell over several seeds.
    Sweep(SweepArgs),
    /// Evaluate a checkpoint on the test set of the data set it was trained on.
    Eval(EvalArgs),
    /// List the built-in networks (and any named) with their parameter counts and
    /// forward FLOPs per image.
    Models(ModelsArgs),
    /// Write a checkpoint's network for other runtimes: a standard ONNX model.
    Export(ExportArgs),
    /// Fetch a data set's four files from public mirrors and verify their hashes.
    Download {
        /// mnist or fashion-mnist.
        #[arg(long, default_value = "mnist")]
        dataset: DatasetKind,
        /// Where to put them [default: $MNIST_DIR or $FASHION_MNIST_DIR, else
        /// ./data/mnist or ./data/fashion-mnist].
        #[arg(long)]
        data: Option<PathBuf>,
    },
}

/// The options every training run takes.
#[derive(Args, Clone)]
struct Common {
    /// Epochs to train.
    #[arg(long, default_value_t = 3, allow_negative_numbers = true)]
    epochs: usize,
    /// Examples per step.
    #[arg(long, default_value_t = 64, allow_negative_numbers = true)]
    batch: usize,
    /// Learning rate (the schedule's base rate).
    #[arg(long, default_value_t = 1e-3, allow_negative_numbers = true)]
    lr: f32,
    /// How the rate changes: constant, cosine (to 0 at the last step) or step (x0.1 at
    /// 50 % and again at 75 % of the steps).
    #[arg(long, default_value = "constant")]
    schedule: ScheduleKind,
    /// Epochs of linear warm-up before the schedule (may be a fraction).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    warmup: f32,
    /// Training images held out for validation (the same ones in every run); each
    /// epoch is judged on them, the test set only after the last.
    #[arg(long, default_value_t = 5000, allow_negative_numbers = true)]
    val: usize,
    /// sgd (momentum 0.9), adam or adamw.
    #[arg(long, default_value = "adam")]
    optimizer: OptimizerKind,
    /// Weight decay (L2 for sgd and adam, decoupled for adamw).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    weight_decay: f32,
    /// Max-norm constraint: after each step, every unit's incoming weights (each row of
    /// a weight) longer than this L2 norm are scaled onto it.
    #[arg(long, allow_negative_numbers = true)]
    max_norm: Option<f32>,
    /// Seeds the initialisation, the batch order, dropout and jitter.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    seed: u64,
    /// Random ±2-pixel shifts of the training images.
    #[arg(long)]
    jitter: bool,
    /// Continue from the checkpoint at --out if there is one.
    #[arg(long)]
    resume: bool,
    /// Overwrite the checkpoint at --out (and its metrics file) if there is one; without
    /// this or --resume an existing checkpoint is refused.
    #[arg(long, conflicts_with = "resume")]
    force: bool,
    #[command(flatten)]
    place: Place,
    #[command(flatten)]
    output: Output,
}

/// Where a command runs and which data it reads: every command that touches the data.
#[derive(Args, Clone)]
struct Place {
    /// auto (a hardware GPU if there is one, else the CPU), gpu (any adapter, software
    /// ones included) or cpu.
    #[arg(long, default_value = "auto")]
    device: String,
    /// mnist or fashion-mnist.
    #[arg(long, default_value = "mnist")]
    dataset: DatasetKind,
    /// The data set's folder [default: $MNIST_DIR or $FASHION_MNIST_DIR, else
    /// ./data/mnist or ./data/fashion-mnist].
    #[arg(long)]
    data: Option<PathBuf>,
    /// Never fetch the data set: a folder that lacks one of its files is an error (by
    /// default the missing files are downloaded into it and verified, as `distill
    /// download` does; $DISTILL_MIRROR names a mirror to use instead of the public ones).
    #[arg(long)]
    no_download: bool,
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
    /// A built-in network (teacher-cnn, teacher-cnn-large, student-cnn, teacher-mlp,
    /// student-mlp) or a network description file (JSON; see the README).
    #[arg(long)]
    model: String,
    /// The checkpoint to write after every epoch [default: runs/MODEL.safetensors, MODEL
    /// the name or the description file's stem].
    #[arg(long)]
    out: Option<PathBuf>,
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
    #[arg(long = "T", default_value_t = 5.0, allow_negative_numbers = true)]
    temperature: f32,
    /// Weight of the distillation term; 1 - alpha weighs the labels' cross-entropy. With
    /// --loss dkd, the weight of the target-class term [default: 0.1, or 1 with dkd].
    #[arg(long, allow_negative_numbers = true)]
    alpha: Option<f32>,
    #[command(flatten)]
    loss: LossFlags,
    /// The student's checkpoint to write after every epoch [default:
    /// runs/STUDENT-from-TEACHER.safetensors, TEACHER the teacher checkpoint's stem].
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    common: Common,
}

#[derive(Args)]
struct RunArgs {
    /// Print the presets and exit.
    #[arg(long)]
    list_presets: bool,
    /// The teacher's seed and the first student seed (initialisation, batch order,
    /// dropout, jitter).
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    seed: u64,
    /// Student seeds, each giving a pair (alone, distilled) from identical initial
    /// parameters and batch order: SEED, SEED + 1, ...
    #[arg(long, default_value_t = 5, allow_negative_numbers = true)]
    seeds: usize,
    /// Training images held out for validation (the same ones in every run).
    #[arg(long, default_value_t = 5000, allow_negative_numbers = true)]
    val: usize,
    /// Override the preset's temperature.
    #[arg(long = "T", allow_negative_numbers = true)]
    temperature: Option<f32>,
    /// Override the preset's distillation weight [default: the preset's, or 1 when
    /// --loss dkd replaces the preset's KD].
    #[arg(long, allow_negative_numbers = true)]
    alpha: Option<f32>,
    /// Where the checkpoints and the comparison go [default: runs/PRESET-seedSEED;
    /// PRESET-fashion-mnist on Fashion-MNIST, PRESET-dkd-b8 with --loss dkd].
    #[arg(long)]
    out_dir: Option<PathBuf>,
    #[command(flatten)]
    recipe: StudyRecipe,
    #[command(flatten)]
    place: Place,
    #[command(flatten)]
    output: Output,
}

#[derive(Args)]
struct SweepArgs {
    /// Temperatures, comma-separated [default: the preset's].
    #[arg(
        long = "T",
        value_delimiter = ',',
        num_args = 1..,
        allow_negative_numbers = true
    )]
    temperatures: Option<Vec<f32>>,
    /// Distillation weights, comma-separated [default: the preset's, or 1 when --loss
    /// dkd replaces the preset's KD].
    #[arg(
        long = "alpha",
        value_delimiter = ',',
        num_args = 1..,
        allow_negative_numbers = true
    )]
    alphas: Option<Vec<f32>>,
    /// Conv channels of student-cnn-shaped students (hidden layer 4x): a capacity sweep
    /// at the first T and alpha instead of the grid.
    #[arg(long, value_delimiter = ',', num_args = 1.., allow_negative_numbers = true)]
    widths: Option<Vec<usize>>,
    /// The teacher's seed and the first student seed.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    seed: u64,
    /// Student seeds per cell.
    #[arg(long, default_value_t = 3, allow_negative_numbers = true)]
    seeds: usize,
    /// Training images held out for validation; the sweep is judged on them.
    #[arg(long, default_value_t = 5000, allow_negative_numbers = true)]
    val: usize,
    /// Where the teacher, each run's result and the report go; a restarted sweep reads
    /// the results already there [default: runs/sweep-PRESET, with capacity- before
    /// PRESET for --widths, -fashion-mnist on Fashion-MNIST, -dkd-b8 with --loss dkd].
    #[arg(long)]
    out_dir: Option<PathBuf>,
    #[command(flatten)]
    recipe: StudyRecipe,
    #[command(flatten)]
    place: Place,
    #[command(flatten)]
    output: Output,
}

/// The recipe of `run` and `sweep`: a preset and the command line's overrides.
#[derive(Args)]
struct StudyRecipe {
    /// The recipe: default, fashion, seed-example or hinton-mnist (see `run --list-presets`).
    #[arg(long, default_value = "default")]
    preset: String,
    /// Replace the preset's teacher: a built-in network or a description file.
    #[arg(long)]
    teacher: Option<String>,
    /// Replace the preset's student: a built-in network or a description file (a
    /// sweep with --widths builds student-cnn's family instead).
    #[arg(long)]
    student: Option<String>,
    /// Override the preset's student epochs.
    #[arg(long, allow_negative_numbers = true)]
    epochs: Option<usize>,
    /// Override the preset's student schedule: constant, cosine or step.
    #[arg(long)]
    schedule: Option<ScheduleKind>,
    /// Jitter the students' training images (the teacher then runs on each one).
    #[arg(long)]
    jitter: bool,
    #[command(flatten)]
    loss: LossFlags,
}

/// `--loss` and `--beta`.
#[derive(Args)]
struct LossFlags {
    /// The distillation loss: kd (Hinton et al.: (1 - alpha)·CE + alpha·T²·KL) or dkd
    /// (decoupled KD, Zhao et al. 2022: CE + alpha·T²·TCKD + beta·T²·NCKD) [default:
    /// kd, or the preset's].
    #[arg(long)]
    loss: Option<String>,
    /// The weight of decoupled KD's non-target term (--loss dkd) [default: 8].
    #[arg(long, allow_negative_numbers = true)]
    beta: Option<f32>,
}

impl LossFlags {
    /// The loss the flags name, `default` where `--loss` is not given.
    fn resolve(&self, default: Loss) -> Result<Loss> {
        match (&self.loss, self.beta) {
            (None, None) => Ok(default),
            (None, Some(_)) => Loss::from_flags(default.name(), self.beta),
            (Some(name), beta) => Loss::from_flags(name, beta),
        }
    }
}

impl StudyRecipe {
    /// The preset with the overrides applied, and its teacher and student networks
    /// (checked, not built).
    fn resolve(&self, place: &Place) -> Result<(presets::Preset, NetworkSpec, NetworkSpec)> {
        let mut preset = *presets::find(&self.preset).map_err(DistillError::Config)?;
        let students = &mut preset.student_recipe;
        students.epochs = self.epochs.unwrap_or(students.epochs);
        if let Some(kind) = self.schedule {
            students.schedule.kind = kind;
        }
        students.jitter |= self.jitter;
        let loss = self.loss.resolve(preset.loss)?;
        if let (Loss::Kd, Loss::Dkd { .. }) = (preset.loss, loss) {
            // The preset's alpha is a KD blend weight; decoupled KD's target-class weight
            // is another scale.
            preset.alpha = Loss::DKD_ALPHA;
        }
        preset.loss = loss;
        if let Some(kind) = preset.dataset.filter(|&k| k != place.dataset) {
            return Err(DistillError::Config(format!(
                "preset `{}` is for --dataset {kind}, not {}",
                preset.name, place.dataset
            )));
        }
        if students.epochs == 0 {
            return Err(DistillError::Config("--epochs must be at least 1".into()));
        }
        let teacher = place.network(self.teacher.as_deref().unwrap_or(preset.teacher))?;
        let student = place.network(self.student.as_deref().unwrap_or(preset.student))?;
        Ok((preset, teacher, student))
    }
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

#[derive(Args)]
struct ExportArgs {
    /// The checkpoint whose network is exported (any network: its description is in
    /// it). web takes several (`--checkpoint student.safetensors --checkpoint
    /// teacher.safetensors`): the page shows them side by side, named by file.
    #[arg(long, required = true)]
    checkpoint: Vec<PathBuf>,
    /// onnx: an ONNX model, opset 13, the input standardisation inside the graph; input
    /// `input` (batch, 1, 28, 28) pixels in [0, 1], output `logits` (batch, 10).
    /// web: a folder that runs the networks in a browser on WebGPU with the project's
    /// own WGSL kernels (open it through any static file server).
    #[arg(long, value_enum)]
    format: ExportFormat,
    /// The file (onnx) or folder (web) to write.
    #[arg(long)]
    out: PathBuf,
    /// Replace --out if it exists; without this an existing file, or a folder that is
    /// not empty, is refused.
    #[arg(long)]
    force: bool,
    /// web: how many test images of the networks' data set the page offers (the first
    /// ones of its test set); 0 for none (drawing only).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(0..=10000))]
    samples: u64,
    /// web: the data set's folder, for the test images [default: as `eval`'s --data].
    #[arg(long)]
    data: Option<PathBuf>,
    /// web: never fetch the data set (a folder that lacks it is an error).
    #[arg(long)]
    no_download: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ExportFormat {
    Onnx,
    Web,
}

fn main() -> ExitCode {
    if std::env::var_os("NODEVICE_SELECT").is_none() {
        // NOTE: Mesa's device-select Vulkan layer prints "XDG_RUNTIME_DIR is invalid" on
        // headless machines; the program ranks the adapters itself, so the layer has
        // nothing to add. Set before any thread exists.
        std::env::set_var("NODEVICE_SELECT", "1");
    }
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
        Command::Sweep(args) => cmd_sweep(args),
        Command::Eval(args) => cmd_eval(args),
        Command::Export(args) => cmd_export(args),
        Command::Models(args) => cmd_models(args),
        Command::Download { dataset, data } => Ok(data::download(
            dataset,
            &data::resolve_data_dir(dataset, data.as_deref()),
        )?),
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
    /// The device `--device` names and the data set's files under `--data`, with `val`
    /// training images held out, saying which.
    fn open(&self, mode: ProgressMode, val: usize) -> Result<(Device, Mnist)> {
        let (device, note) = Device::select(&self.device)?;
        say(mode, &note);
        let dir = data::resolve_data_dir(self.dataset, self.data.as_deref());
        if !self.no_download {
            // NOTE: even a --quiet run says what it fetches, on stderr.
            data::fetch_missing(self.dataset, &dir).map_err(|e| {
                DistillError::Config(format!(
                    "{e}\n{} is not in {} and could not be downloaded: put its four files \
                     there (from `distill download` on a machine with a network), point \
                     --data or ${} at them, or set ${} to a mirror",
                    self.dataset.title(),
                    dir.display(),
                    self.dataset.env_var(),
                    data::MIRROR_ENV
                ))
            })?;
        }
        let data = Mnist::load_dataset(self.dataset, &dir)?.hold_out(val)?;
        say(
            mode,
            &format!(
                "{} from {}: {} train, {} validation, {} test",
                self.dataset.title(),
                dir.display(),
                data.train.len(),
                data.val.len(),
                data.test.len()
            ),
        );
        Ok((device, data))
    }

    /// What default output folders add for the data set: nothing for MNIST or for a
    /// preset made for one data set, `-fashion-mnist` otherwise.
    fn folder_suffix(&self, preset: &presets::Preset) -> String {
        match (self.dataset, preset.dataset) {
            (DatasetKind::Mnist, _) | (_, Some(_)) => String::new(),
            (other, None) => format!("-{other}"),
        }
    }

    /// A built-in network's name or a description file; a built-in network takes the
    /// data set's normalisation statistics.
    fn network(&self, model: &str) -> Result<NetworkSpec> {
        let mut spec = NetworkSpec::resolve(model)?;
        if builtin::builtin(model).is_some() {
            let (mean, std) = self.dataset.normalize();
            spec.normalize = models::Normalize { mean, std };
        }
        Ok(spec)
    }
}

/// `--val` leaves training images: checked before anything is loaded.
fn check_val(val: usize) -> Result<()> {
    if val >= OFFICIAL_TRAIN_LEN {
        return Err(DistillError::Config(format!(
            "--val must be less than the {OFFICIAL_TRAIN_LEN} training images, got {val}"
        )));
    }
    Ok(())
}

/// A checkpoint trained on another data set is refused.
fn check_dataset(
    ckpt: &checkpoint::Checkpoint,
    path: &std::path::Path,
    kind: DatasetKind,
) -> Result<()> {
    // NOTE: checkpoints from before Fashion-MNIST existed were trained on MNIST.
    let trained = ckpt.metadata.get("dataset").map_or("mnist", String::as_str);
    if trained != kind.name() {
        return Err(DistillError::Config(format!(
            "{} was trained on {trained}, not {}; pass --dataset {trained}",
            path.display(),
            kind.name()
        )));
    }
    Ok(())
}

fn options(out: PathBuf, c: &Common) -> TrainOptions {
    let mut optimizer = OptimizerConfig::new(c.optimizer, c.lr);
    optimizer.weight_decay = c.weight_decay;
    optimizer.max_norm = c.max_norm;
    TrainOptions {
        epochs: c.epochs,
        batch_size: c.batch,
        optimizer,
        schedule: Schedule {
            kind: c.schedule,
            warmup_epochs: c.warmup,
        },
        seed: c.seed,
        jitter: c.jitter,
        out,
        resume: c.resume,
        progress: c.output.progress(),
    }
}

/// Where a default `--out` goes.
const RUNS_DIR: &str = "runs";

/// `--out`, or `runs/NAME.safetensors`.
fn out_path(given: &Option<PathBuf>, name: &str) -> PathBuf {
    given
        .clone()
        .unwrap_or_else(|| PathBuf::from(RUNS_DIR).join(format!("{name}.safetensors")))
}

/// Makes `runs/` when `--out` was left to its default, once the run is about to start
/// (a given `--out` in a missing folder stays an error).
fn make_default_dir(given: &Option<PathBuf>) -> Result<()> {
    let dir = PathBuf::from(RUNS_DIR);
    match given {
        Some(_) => Ok(()),
        None => {
            std::fs::create_dir_all(&dir).map_err(|source| DistillError::Io { path: dir, source })
        }
    }
}

/// The file stem of a network argument: a built-in name itself, or a description
/// file's name without `.json`.
fn stem(arg: &str) -> String {
    std::path::Path::new(arg)
        .file_stem()
        .map_or_else(|| arg.to_string(), |s| s.to_string_lossy().into_owned())
}

/// An existing checkpoint at `--out` (or its training state beside it) is continued with
/// `--resume`, replaced with `--force`, and otherwise refused: a run never overwrites
/// one by accident.
fn check_overwrite(opts: &TrainOptions, force: bool) -> Result<()> {
    let exists = opts.out.exists() || models::checkpoint::state_path(&opts.out).exists();
    if exists && !opts.resume && !force {
        return Err(DistillError::Config(format!(
            "{} already exists: pass --resume to continue it or --force to overwrite it",
            opts.out.display()
        )));
    }
    Ok(())
}

fn cmd_train(args: TrainArgs) -> Result<()> {
    let opts = options(out_path(&args.out, &stem(&args.model)), &args.common);
    // Check the cheap things before loading anything.
    train::validate(&opts)?;
    check_val(args.common.val)?;
    check_overwrite(&opts, args.common.force)?;
    let spec = args.common.place.network(&args.model)?;
    let (device, data) = args.common.place.open(opts.progress, args.common.val)?;
    let network = Network::new(&spec, opts.seed, &device)?;
    make_default_dir(&args.out)?;
    let profiling = start_profile(args.common.output.profile);
    let report = train::train(&opts, &network, &data, &device, None)?;
    summary(&opts, &network, &report);
    print_profile(profiling, &[report.queue()]);
    Ok(())
}

fn cmd_distill(args: DistillArgs) -> Result<()> {
    let teacher_stem = stem(&args.teacher.to_string_lossy());
    let name = format!("{}-from-{teacher_stem}", stem(&args.student));
    let opts = options(out_path(&args.out, &name), &args.common);
    // Check the cheap things before loading anything.
    let loss = args.loss.resolve(Loss::Kd)?;
    let alpha = args.alpha.unwrap_or(match loss {
        Loss::Kd => 0.1,
        Loss::Dkd { .. } => Loss::DKD_ALPHA,
    });
    Distillation::check(args.temperature, alpha, loss)?;
    train::validate(&opts)?;
    check_val(args.common.val)?;
    check_overwrite(&opts, args.common.force)?;
    let spec = args.common.place.network(&args.student)?;
    let (device, data) = args.common.place.open(opts.progress, args.common.val)?;
    let (teacher, ckpt) = checkpoint::load_network(&args.teacher, &device)?;
    check_dataset(&ckpt, &args.teacher, data.kind)?;
    say(
        opts.progress,
        &format!(
            "teacher: {} from {}",
            teacher.name(),
            args.teacher.display()
        ),
    );
    let kd = Distillation::with_loss(loss, &teacher, args.temperature, alpha)?;
    let student = Network::new(&spec, opts.seed, &device)?;
    make_default_dir(&args.out)?;
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
    let (mut preset, teacher, student) = args.recipe.resolve(&args.place)?;
    preset.temperature = args.temperature.unwrap_or(preset.temperature);
    preset.alpha = args.alpha.unwrap_or(preset.alpha);
    Distillation::check(preset.temperature, preset.alpha, preset.loss)?;
    if args.seeds == 0 {
        return Err(DistillError::Config("--seeds must be at least 1".into()));
    }
    check_val(args.val)?;
    let progress = args.output.progress();
    let out_dir = args.out_dir.unwrap_or_else(|| {
        let dataset = args.place.folder_suffix(&preset);
        let loss = preset.loss.suffix();
        PathBuf::from(format!(
            "runs/{}{dataset}{loss}-seed{}",
            preset.name, args.seed
        ))
    });
    let (device, data) = args.place.open(progress, args.val)?;
    let opts = StudyOptions {
        preset,
        teacher,
        student,
        seed: args.seed,
        seeds: args.seeds,
        out_dir: out_dir.clone(),
        progress,
    };
    let profiling = start_profile(args.output.profile);
    let report = study::run_study(&opts, &data, &device)?;
    print!("\n{}", study::markdown(&report));
    println!(
        "\nwritten: {0}/comparison.md, {0}/comparison.json, {0}/accuracy.svg, {0}/reliability.svg",
        out_dir.display()
    );
    let runs: Vec<_> = std::iter::once(&report.teacher)
        .chain(report.pairs.iter().flat_map(|(a, d)| [a, d]))
        .map(|r| (r.train_steps, r.gpu_queue))
        .collect();
    print_profile(profiling, &runs);
    Ok(())
}

fn cmd_sweep(args: SweepArgs) -> Result<()> {
    let (preset, teacher, student) = args.recipe.resolve(&args.place)?;
    check_val(args.val)?;
    if args.val == 0 {
        return Err(DistillError::Config(
            "--val must be at least 1: a sweep is judged on the validation images".into(),
        ));
    }
    let progress = args.output.progress();
    let dataset = args.place.folder_suffix(&preset);
    let capacity = if args.widths.is_some() {
        "capacity-"
    } else {
        ""
    };
    let opts = SweepOptions {
        teacher,
        student,
        temperatures: args.temperatures.unwrap_or(vec![preset.temperature]),
        alphas: args.alphas.unwrap_or(vec![preset.alpha]),
        widths: args.widths.unwrap_or_default(),
        seed: args.seed,
        seeds: args.seeds,
        out_dir: args.out_dir.unwrap_or_else(|| {
            let loss = preset.loss.suffix();
            PathBuf::from(format!(
                "runs/sweep-{capacity}{}{dataset}{loss}",
                preset.name
            ))
        }),
        progress,
        preset,
    };
    opts.check()?;
    let (device, data) = args.place.open(progress, args.val)?;
    let report = sweep::run_sweep(&opts, &data, &device)?;
    let name = if opts.widths.is_empty() {
        "sweep"
    } else {
        "capacity"
    };
    let md = opts.out_dir.join(format!("{name}.md"));
    print!(
        "\n{}",
        std::fs::read_to_string(&md).map_err(|e| DistillError::Io {
            path: md.clone(),
            source: e
        })?
    );
    println!(
        "\n{} runs, {} trained now; written: {}/{name}.md, {name}.json, {}",
        report.results.len(),
        report.trained_now,
        opts.out_dir.display(),
        if opts.widths.is_empty() {
            "heatmap.svg"
        } else {
            "capacity.svg"
        }
    );
    Ok(())
}

fn cmd_export(args: ExportArgs) -> Result<()> {
    match args.format {
        ExportFormat::Onnx => export_onnx(&args),
        ExportFormat::Web => export_web(&args),
    }
}

fn export_onnx(args: &ExportArgs) -> Result<()> {
    let [path] = &args.checkpoint[..] else {
        return Err(DistillError::Config(format!(
            "--format onnx writes one network: {} checkpoints given",
            args.checkpoint.len()
        )));
    };
    if args.out.exists() && !args.force {
        return Err(DistillError::Config(format!(
            "{} already exists: pass --force to replace it",
            args.out.display()
        )));
    }
    let ckpt = checkpoint::read(path)?;
    let Some(spec) = &ckpt.spec else {
        return Err(checkpoint::CheckpointError::NoDescription { path: path.clone() }.into());
    };
    let bytes = models::onnx::export(spec, |name| {
        ckpt.tensor(name).map(|(_, values)| values.to_vec())
    })
    .map_err(|e| DistillError::Config(format!("{}: {e}", path.display())))?;
    study::write_atomic(&args.out, &bytes)?;
    let [c, h, w] = spec.input;
    println!(
        "{}: {} as ONNX (opset {}, {} bytes): input `input` (batch, {c}, {h}, {w}) pixels in \
         [0, 1], output `logits` (batch, {})",
        args.out.display(),
        spec.name,
        models::onnx::OPSET,
        bytes.len(),
        ckpt.metadata.get("classes").map_or("?", String::as_str)
    );
    Ok(())
}

fn export_web(args: &ExportArgs) -> Result<()> {
    // Checked before any work, and again when the folder is written.
    if study::check_folder_target(&args.out, args.force)? {
        for path in &args.checkpoint {
            let inside = |p: &std::path::Path| p.canonicalize().ok();
            if let (Some(file), Some(out)) = (inside(path), inside(&args.out)) {
                if file.starts_with(&out) {
                    return Err(DistillError::Config(format!(
                        "{} is inside {}, which the export would replace: write the \
                         folder elsewhere",
                        path.display(),
                        args.out.display()
                    )));
                }
            }
        }
    }
    let mut networks = Vec::new();
    let mut kind = None;
    for path in &args.checkpoint {
        let (network, ckpt) = checkpoint::load_network(path, &Device::Cpu)?;
        let dataset = ckpt.metadata.get("dataset").map_or("mnist", String::as_str);
        let this: DatasetKind = dataset.parse().map_err(|_| {
            DistillError::Config(format!(
                "{}: unknown data set `{dataset}` in its metadata",
                path.display()
            ))
        })?;
        match kind {
            Some(k) if k != this => {
                return Err(DistillError::Config(format!(
                    "{} was trained on {}, {} on {}: the page shows networks of one data set",
                    args.checkpoint[0].display(),
                    DatasetKind::name(k),
                    path.display(),
                    this.name()
                )))
            }
            _ => kind = Some(this),
        }
        // The page's name for it, from the file's: plain characters only (`models::web`).
        let stem: String = path
            .file_stem()
            .map_or("network".into(), |s| s.to_string_lossy().into_owned())
            .chars()
            .map(|c| match c.is_ascii_alphanumeric() || "_-.".contains(c) {
                true => c,
                false => '-',
            })
            .collect();
        let stem = match stem.starts_with('.') || stem.is_empty() {
            true => format!("network{stem}"),
            false => stem,
        };
        let mut name = stem.clone();
        for i in 2.. {
            if !networks.iter().any(|(n, _): &(String, _)| *n == name) {
                break;
            }
            name = format!("{stem}-{i}");
        }
        networks.push((name, network));
    }
    let kind = kind.unwrap_or(DatasetKind::Mnist);
    let samples = match args.samples {
        0 => models::web::Samples::default(),
        n => {
            let dir = data::resolve_data_dir(kind, args.data.as_deref());
            if !args.no_download {
                data::fetch_missing(kind, &dir)?;
            }
            let test = Mnist::load_dataset(kind, &dir)?.test;
            let n = (n as usize).min(test.len());
            models::web::Samples {
                pixels: test.pixels()[..n * data::IMAGE_PIXELS].to_vec(),
                labels: test.labels()[..n].to_vec(),
            }
        }
    };
    let classes: Vec<String> = kind.classes().iter().map(|c| c.to_string()).collect();
    let named: Vec<(String, &models::Network)> =
        networks.iter().map(|(n, net)| (n.clone(), net)).collect();
    let files = models::web::export(&named, &classes, &samples).map_err(DistillError::Config)?;
    study::write_folder_atomic(&args.out, &files, args.force)?;
    let bytes: usize = files.iter().map(|(_, b)| b.len()).sum();
    println!(
        "{}: {} for WebGPU ({} files, {bytes} bytes, {} test images); serve it, e.g. \
         `python3 -m http.server -d {} 8000`, and open http://127.0.0.1:8000/",
        args.out.display(),
        named
            .iter()
            .map(|(n, net)| format!("{n} ({})", net.name()))
            .collect::<Vec<_>>()
            .join(" and "),
        files.len(),
        samples.labels.len(),
        args.out.display()
    );
    Ok(())
}

fn cmd_eval(args: EvalArgs) -> Result<()> {
    let (device, data) = args.place.open(ProgressMode::Auto, 0)?;
    let (network, ckpt) = checkpoint::load_network(&args.checkpoint, &device)?;
    check_dataset(&ckpt, &args.checkpoint, data.kind)?;
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
        if builtin::builtin(model).is_none() {
            specs.push(NetworkSpec::resolve(model)?);
        }
    }
    let width = specs.iter().map(|s| s.name.len()).max().unwrap_or(0).max(5);
    println!(
        "{:<width$} {:>12} {:>16}",
        "model", "parameters", "forward FLOPs"
    );
    for spec in specs {
        // Counted from the description: a network too large to build is still listed.
        println!(
            "{:<width$} {:>12} {:>16}",
            spec.name,
            spec.parameter_count(),
            spec.forward_flops_per_image()
        );
    }
    Ok(())
}
