"""PyTorch's side of one `distill train` epoch, as a whole process, for timing the two
programs against each other from outside (e.g. alternated by a tool such as hyperfine):

    distill train --model teacher-cnn --epochs 1 --device cpu --quiet --force --out A
    .venv-torch/bin/python benches/pytorch/epoch.py --model teacher-cnn --channels-last --out B

It does what that command does, in the same order: read the four MNIST files (raw IDX
or `.gz`) from --data (default $MNIST_DIR, else data/mnist), hold out 5,000 training
images for validation, train one epoch on the other 55,000 in a shuffled order at batch
64 with Adam (lr 1e-3), evaluate the validation and test sets at batch 1,000, and save
the weights (`state_dict`, written to a temporary file and renamed). The network is
step.py's copy of ours, input standardisation included. Not done here, and done by
ours: the SHA-256 check of the four files and a metrics file (a few tens of
milliseconds in all).
"""

import argparse
import gzip
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from step import NETWORKS, network  # noqa: E402

BATCH = 64
EVAL_BATCH = 1000
VALIDATION = 5000
FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def read_idx(folder, name):
    """The file's bytes after its IDX header, from `name` or `name.gz`."""
    for path, opener in ((os.path.join(folder, name), open),
                         (os.path.join(folder, name + ".gz"), gzip.open)):
        if os.path.exists(path):
            with opener(path, "rb") as f:
                data = f.read()
            dims = data[3]
            return torch.frombuffer(bytearray(data[4 + 4 * dims:]), dtype=torch.uint8)
    sys.exit(f"error: {name} (or {name}.gz) is not in {folder}")


def load(folder):
    train_x, train_y, test_x, test_y = (read_idx(folder, name) for name in FILES)
    def images(raw):
        return raw.view(-1, 1, 28, 28).float() / 255.0

    return images(train_x), train_y.long(), images(test_x), test_y.long()


def accuracy(net, x, y, channels_last):
    net.eval()
    correct = 0
    with torch.inference_mode():
        for i in range(0, len(x), EVAL_BATCH):
            batch = x[i:i + EVAL_BATCH]
            if channels_last:
                batch = batch.contiguous(memory_format=torch.channels_last)
            correct += (net(batch).argmax(1) == y[i:i + EVAL_BATCH]).sum().item()
    net.train()
    return correct / len(x)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="teacher-cnn", choices=NETWORKS)
    parser.add_argument("--channels-last", action="store_true",
                        help="PyTorch's faster layout for convolutions on the CPU")
    parser.add_argument("--data", default=os.environ.get("MNIST_DIR", "data/mnist"))
    parser.add_argument("--out", default="pytorch-epoch.pt")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    start = time.perf_counter()
    train_x, train_y, test_x, test_y = load(args.data)
    order = torch.randperm(len(train_x))
    val, train = order[:VALIDATION], order[VALIDATION:]
    val_x, val_y, train_x, train_y = train_x[val], train_y[val], train_x[train], train_y[train]

    net = network(args.model).train()
    if args.channels_last:
        net = net.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    for batch in torch.randperm(len(train_x)).split(BATCH):
        x = train_x[batch]
        if args.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(net(x), train_y[batch]).backward()
        optimizer.step()
    val_acc = accuracy(net, val_x, val_y, args.channels_last)
    test_acc = accuracy(net, test_x, test_y, args.channels_last)
    tmp = f"{args.out}.tmp-{os.getpid()}"
    torch.save(net.state_dict(), tmp)
    os.replace(tmp, args.out)
    print(f"{args.model} ({'channels_last' if args.channels_last else 'NCHW'}, "
          f"{torch.get_num_threads()} threads, {torch.backends.cpu.get_cpu_capability()}): "
          f"val {100 * val_acc:.2f}%, test {100 * test_acc:.2f}%, "
          f"{time.perf_counter() - start:.1f}s")


if __name__ == "__main__":
    main()
