"""PyTorch's side of `cargo bench --bench train_step` and `cargo bench --bench inference`.

The same networks (the built-ins of models/src/builtin.rs, input standardisation
included), the same shapes and the same steps, timed the way criterion's flat sampling
times ours, and printed in the same units, so that BENCHMARKS.md can set the two side
by side from one sitting:

    train_step/<layout>/teacher-cnn      forward, cross-entropy, backward, Adam 1e-3; batch 64
    train_step/<layout>/student-cnn      the same for the student
    train_step/<layout>/kd-student-cnn   student forward, the KD loss against precomputed
                                         teacher-cnn logits (T = 5, alpha = 0.1), backward, Adam
    inference/<layout>/<network>/<n>     eval-mode forward under inference_mode, n = 1, 256

<layout> is `pytorch-nchw` (PyTorch's default) or `pytorch-channels-last` (its
faster layout for convolutions on the CPU; the MLPs have no images to lay out).

Run it on the same machine, right after (or before) our bench, with as many threads as
rayon uses (one per core):

    python3 -m venv .venv-torch && .venv-torch/bin/pip install -r benches/pytorch/requirements.txt
    .venv-torch/bin/python benches/pytorch/step.py            # everything, about 3 minutes
    .venv-torch/bin/python benches/pytorch/step.py --filter train_step

Each line gives the median of `--samples` samples (each the mean of as many iterations
as fill `--seconds` / samples), the smallest and largest sample, and GFLOP/s counted as
ours counts them (2 per multiply-add of the conv and linear layers plus 1 per bias
add; a training step is 3 forward passes), or images/s for inference. Every step is
first checked to lower the loss on its fixed batch (over ten steps: PyTorch's
initialisation is not ours, and one Adam step from it need not).
"""

import argparse
import math
import os
import re
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

BATCH = 64
INFERENCE_BATCHES = (1, 256)
TEMPERATURE = 5.0
ALPHA = 0.1
# The MNIST standardisation inside every built-in network.
MEAN, STD = 0.1307, 0.3081


class Standardise(nn.Module):
    def forward(self, x):
        return (x - MEAN) / STD


def conv(c_in, c_out, pad=0):
    return [nn.Conv2d(c_in, c_out, 3, padding=pad), nn.ReLU(), nn.MaxPool2d(2)]


def network(name):
    """The built-in network `name`, layer for layer."""
    layers = {
        "teacher-cnn": [*conv(1, 32), *conv(32, 64), nn.Flatten(),
                        nn.Linear(1600, 128), nn.ReLU(), nn.Linear(128, 10)],
        "teacher-cnn-large": [*conv(1, 32, 1), *conv(32, 64, 1), nn.Flatten(),
                              nn.Dropout(0.25), nn.Linear(3136, 256), nn.ReLU(),
                              nn.Dropout(0.5), nn.Linear(256, 10)],
        "student-cnn": [*conv(1, 16), nn.Flatten(),
                        nn.Linear(2704, 64), nn.ReLU(), nn.Linear(64, 10)],
        "teacher-mlp": [nn.Flatten(), nn.Dropout(0.2), nn.Linear(784, 1200), nn.ReLU(),
                        nn.Dropout(0.5), nn.Linear(1200, 1200), nn.ReLU(),
                        nn.Dropout(0.5), nn.Linear(1200, 10)],
        "student-mlp": [nn.Flatten(), nn.Linear(784, 800), nn.ReLU(),
                        nn.Linear(800, 800), nn.ReLU(), nn.Linear(800, 10)],
    }[name]
    return nn.Sequential(Standardise(), *layers)


NETWORKS = ("teacher-cnn", "teacher-cnn-large", "student-cnn", "teacher-mlp", "student-mlp")


def forward_flops_per_image(net):
    """FLOPs of one image's forward pass, counted as `distill models` counts them."""
    flops = 0

    def count(module, _inputs, output):
        nonlocal flops
        if isinstance(module, nn.Conv2d):
            k = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
            flops += (2 * k + 1) * output[0].numel()
        elif isinstance(module, nn.Linear):
            flops += (2 * module.in_features + 1) * output[0].numel()

    hooks = [m.register_forward_hook(count) for m in net.modules()]
    training = net.training
    with torch.inference_mode():
        net.eval()(torch.zeros(1, 1, 28, 28))
    net.train(training)
    for hook in hooks:
        hook.remove()
    return flops


def images(n, seed):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 28, 28, generator=generator)


def is_conv(name):
    return "cnn" in name


def layout(net, x, channels_last):
    if channels_last:
        return net.to(memory_format=torch.channels_last), x.contiguous(
            memory_format=torch.channels_last)
    return net, x


def training_step(name, channels_last, kd):
    """A function taking one training step and returning its loss, as our bench does."""
    torch.manual_seed(0)
    net = network(name).train()
    x = images(BATCH, 0)
    y = torch.tensor([(i * 7) % 10 for i in range(BATCH)])
    net, x = layout(net, x, channels_last)
    teacher_logits = None
    if kd:
        torch.manual_seed(1)
        teacher, tx = layout(network("teacher-cnn").eval(), x, channels_last)
        with torch.inference_mode():
            teacher_logits = teacher(tx).clone()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)

    def step():
        opt.zero_grad(set_to_none=True)
        logits = net(x)
        if teacher_logits is None:
            loss = F.cross_entropy(logits, y)
        else:
            t = TEMPERATURE
            kl = F.kl_div(F.log_softmax(logits / t, dim=1), F.log_softmax(teacher_logits / t, dim=1),
                          reduction="batchmean", log_target=True)
            loss = (1 - ALPHA) * F.cross_entropy(logits, y) + ALPHA * t * t * kl
        loss.backward()
        opt.step()
        return loss.item()

    return net, step


def inference(name, channels_last, n):
    torch.manual_seed(0)
    net, x = layout(network(name).eval(), images(n, 5), channels_last)

    def run():
        with torch.inference_mode():
            return net(x).sum().item()

    return net, run


def measure(fn, seconds, samples):
    """Criterion's flat sampling: `samples` samples of the same iteration count, each
    reported as its mean time per iteration."""
    deadline = time.perf_counter() + min(1.0, seconds / 4)
    warm = 0
    start = time.perf_counter()
    while time.perf_counter() < deadline or warm < 3:
        fn()
        warm += 1
    per_iter = (time.perf_counter() - start) / warm
    iters = max(1, math.ceil(seconds / samples / per_iter))
    times = []
    for _ in range(samples):
        start = time.perf_counter()
        for _ in range(iters):
            fn()
        times.append((time.perf_counter() - start) / iters)
    return times


def show(seconds):
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3f} ms"
    return f"{seconds * 1e6:.1f} µs"


def report(label, times, work, unit):
    median = statistics.median(times)
    rate = work / median
    rate_text = f"{rate / 1e9:.2f} GFLOP/s" if unit == "flops" else f"{rate:,.0f} images/s"
    print(f"{label:56} median {show(median):>11}  [{show(min(times))} .. {show(max(times))}]"
          f"  {rate_text}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="intra-op threads (default: one per core, as rayon)")
    parser.add_argument("--seconds", type=float, default=4.0,
                        help="measurement time per step (default 4, as train_step)")
    parser.add_argument("--samples", type=int, default=20,
                        help="samples per step (default 20, as train_step)")
    parser.add_argument("--filter", default="", help="a regular expression over the labels")
    args = parser.parse_args()
    if args.threads < 1 or args.seconds <= 0 or args.samples < 1:
        sys.exit("error: --threads, --seconds and --samples must be positive")
    torch.set_num_threads(args.threads)
    wanted = re.compile(args.filter)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{torch.backends.cpu.get_cpu_capability()}; oneDNN: {torch.backends.mkldnn.is_available()}",
          flush=True)

    layouts = (("pytorch-nchw", False), ("pytorch-channels-last", True))
    for tag, channels_last in layouts:
        for label, name, kd in (("teacher-cnn", "teacher-cnn", False),
                                ("student-cnn", "student-cnn", False),
                                ("kd-student-cnn", "student-cnn", True)):
            full = f"train_step/{tag}/{label}"
            if not wanted.search(full):
                continue
            net, step = training_step(name, channels_last, kd)
            before = step()
            for _ in range(9):
                after = step()
            if not after < before:
                sys.exit(f"error: {full}: ten steps did not lower the loss ({before} -> {after})")
            flops = 3 * forward_flops_per_image(net) * BATCH
            report(full, measure(step, args.seconds, args.samples), flops, "flops")

    for tag, channels_last in layouts:
        for name in NETWORKS:
            if channels_last and not is_conv(name):
                continue
            for n in INFERENCE_BATCHES:
                full = f"inference/{tag}/{name}/{n}"
                if not wanted.search(full):
                    continue
                _, run = inference(name, channels_last, n)
                report(full, measure(run, args.seconds / 2, args.samples), n, "images")


if __name__ == "__main__":
    main()
