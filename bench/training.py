"""One training epoch on full MNIST: aiq_search's tensor trainer against the common DataLoader baseline.

The baseline is the usual loop: torchvision ``MNIST`` with ``ToTensor()`` through
``DataLoader(batch_size=200, shuffle=True)``. The trainer runs `aiq_search.training._trainer.train` for one epoch
over the same 60,000 training images (its validation pass and efficiency probe are timed apart). Both
train the same model from the same initial weights with SGD (lr 0.01, momentum 0.9), batch 200, in this
one process, after a short warm-up of each; the epochs alternate and the best of ``--repeats`` is kept for
each, because on a shared 2-core machine any other process stalls both OpenMP threads. The arithmetic rate
is the training FLOPs per second (2 per multiply-add, for the forward pass, the weight gradients and the
input gradients of every layer but the first, whose input needs none), beside the peak of a large
float32 matrix product.

    python bench/training.py [--data-dir ../shared/data] [--warmup-batches 30] [--repeats 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from aiq_search.data import load_dataset
from aiq_search.errors import DataError
from aiq_search.families import build_model
from aiq_search.training import EpochReport, TrainConfig, train

REPO = Path(__file__).resolve().parent.parent
BATCH = 200
SPECS = {
    "LeNet-300-100": {"family": "lenet300", "input_shape": [1, 28, 28], "num_classes": 10, "widths": [300, 100],
                      "batch_norm": False, "dropout": 0.0},
    "LeNet-5 20/50/100": {"family": "lenet5", "input_shape": [1, 28, 28], "num_classes": 10,
                          "channels": [20, 50, 100], "activation": "elu", "batch_norm": False, "dropout": 0.0},
}


def training_flops(model: nn.Module, input_shape: list[int]) -> int:
    """FLOPs of one sample's training step in the Linear and Conv2d layers: 2 per multiply-add for the
    forward pass, again for the weight gradient, and again for the input gradient except in the first layer."""
    total = 0

    def count(module: nn.Module, _inputs: object, out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Linear):
            macs = module.in_features * module.out_features
        else:
            macs = out[0].numel() * module.weight[0].numel()  # output size × (in_channels / groups × kh × kw)
        total += 2 * macs * (2 if total == 0 else 3)

    layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    handles = [m.register_forward_hook(count) for m in layers]
    with torch.no_grad():
        model(torch.zeros(1, *input_shape))
    for h in handles:
        h.remove()
    return total


def peak_flops(n: int = 4096, repeats: int = 3) -> float:
    """FLOP/s of the best of a few n×n float32 matrix products."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def baseline_epoch(model: nn.Module, loader: torch.utils.data.DataLoader, max_batches: int | None = None) -> float:
    """Seconds of the common loop over ``loader`` (all of it, or its first ``max_batches``)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()
    start = time.perf_counter()
    for i, (x, y) in enumerate(loader):
        if max_batches is not None and i == max_batches:
            break
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def trainer_epoch(model: nn.Module, data, max_rows: int | None = None) -> tuple[float, float]:
    """Seconds of the trainer's training pass and of its whole ``train`` call (adds validation + probe)."""
    if max_rows is not None:
        data = dataclasses.replace(data, train_x=data.train_x[:max_rows], train_y=data.train_y[:max_rows])
    reports: list[EpochReport] = []
    config = TrainConfig(optimizer="sgd", lr=0.01, momentum=0.9, batch_size=BATCH, max_epochs=1, patience=None)
    start = time.perf_counter()
    train(model, data, config, device="cpu", epoch_callback=reports.append)
    return reports[0].seconds, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--warmup-batches", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    try:
        splits = load_dataset("mnist", data_dir=args.data_dir, val_size=0.1)
    except DataError as exc:
        print(f"skip: MNIST is not available ({exc})")
        return 0
    # The trainer's epoch covers the full 60,000 training images, as the baseline's does.
    full = dataclasses.replace(splits, train_x=torch.cat([splits.train_x, splits.val_x]),
                               train_y=torch.cat([splits.train_y, splits.val_y]))
    root = next(r for r in (args.data_dir / "mnist", args.data_dir) if (r / "MNIST" / "raw").is_dir())
    from torchvision import datasets, transforms

    dataset = datasets.MNIST(str(root), train=True, transform=transforms.ToTensor())
    loader = torch.utils.data.DataLoader(dataset, batch_size=BATCH, shuffle=True)
    n = len(dataset)
    peak = peak_flops()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {n:,} images per epoch, batch {BATCH}; "
          f"float32 matmul peak {peak / 1e9:.1f} GFLOP/s\n")

    header = (f"{'model':<18} {'baseline s':>10} {'trainer s':>9} {'speed-up':>8} {'+val/probe s':>12} "
              f"{'train GFLOP/s':>13} {'% of peak':>9}")
    print(header)
    print("-" * len(header))
    for name, spec in SPECS.items():
        warm = build_model(spec, seed=0)
        baseline_epoch(warm, loader, args.warmup_batches)
        trainer_epoch(warm, full, args.warmup_batches * BATCH)
        base_s = train_s = total_s = float("inf")
        for _ in range(args.repeats):
            base_s = min(base_s, baseline_epoch(build_model(spec, seed=0), loader))
            train_s, total_s = min((train_s, total_s), trainer_epoch(build_model(spec, seed=0), full))
        flops = training_flops(build_model(spec), spec["input_shape"]) * n
        rate = flops / train_s
        print(f"{name:<18} {base_s:>10.2f} {train_s:>9.2f} {base_s / train_s:>7.2f}x {total_s - train_s:>12.2f} "
              f"{rate / 1e9:>13.1f} {100 * rate / peak:>8.1f}%")
    print(f"\nbaseline s, trainer s: one training epoch (best of {args.repeats}); +val/probe s: the rest of "
          "train() (validation pass under the efficiency probe, test accuracy)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
