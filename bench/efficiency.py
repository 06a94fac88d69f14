"""Cost of measuring efficiency, against a plain forward pass and a straightforward NumPy reference.

1. LeNet-5 layout (conv 1→20 5×5, ELU, maxpool; conv 20→50 5×5, ELU, maxpool; conv 50→100 4×4, ELU;
   linear 100→10), its three convolutions probed, over the 10,000 MNIST test images, against NumPy.
2. A ResNet-18-sized model (3×3 stem for 32×32 RGB, BatchNorm before each ReLU, ~11 M parameters) on
   1,000 random 32×32 inputs, default layers: its 20 convolutions, each read after its BatchNorm, or, for a
   block's last conv, past the residual add at its ReLU's input (adds watched through a TorchFunctionMode).

All variants run in this one process; each round times a variant between two plain passes, and medians
over rounds are kept.

    python bench/efficiency.py [--data-dir ../shared/data] [--repeats 9] [--resnet-rounds 3]
                               [--batch-size 1000] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from aiq_search.families import build_model
from aiq_search.metrics import ACTIVATION_TYPES, EfficiencyReport, entropy, measure_efficiency

REPO = Path(__file__).resolve().parent.parent


def lenet5() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 20, 5), nn.ELU(), nn.MaxPool2d(2),
        nn.Conv2d(20, 50, 5), nn.ELU(), nn.MaxPool2d(2),
        nn.Conv2d(50, 100, 4), nn.ELU(),
        nn.Flatten(), nn.Linear(100, 10),
    )


def resnet18_sized(num_classes: int = 10) -> nn.Module:
    """The resnet family at ResNet-18's size for 32×32 RGB inputs (stem 64, four stages of two basic blocks,
    64/128/256/512 channels, batch norm before each ReLU): 11.2 M parameters."""
    return build_model({"family": "resnet", "input_shape": [3, 32, 32], "num_classes": num_classes,
                        "stem_width": 64, "blocks": [2, 2, 2, 2], "widths": [64, 128, 256, 512],
                        "activation": "relu", "batch_norm": True, "dropout": 0.0}, seed=0)


def load_test_images(data_dir: Path) -> torch.Tensor | None:
    """The MNIST test images, normalized, read straight from the IDX files torchvision would read."""
    raw = data_dir / "mnist" / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    if not raw.exists():
        raw = data_dir / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    if not raw.exists():
        return None
    data = np.frombuffer(raw.read_bytes(), dtype=np.uint8, offset=16).reshape(-1, 1, 28, 28)
    x = torch.from_numpy(data.astype(np.float32) / 255.0)
    return (x - 0.1307) / 0.3081


def plain(model: nn.Module, x: torch.Tensor, batch_size: int) -> None:
    with torch.inference_mode():
        for xb in x.split(batch_size):
            model(xb)


def reference(model: nn.Module, x: torch.Tensor, batch_size: int) -> dict[str, float]:
    """Capture every convolution's output, then numpy.packbits rows + numpy.unique(axis=0) per layer."""
    convs = {name: m for name, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    captured: dict[str, list[np.ndarray]] = {name: [] for name in convs}

    def hook(name: str) -> Callable:
        def save(_m: nn.Module, _i: object, out: torch.Tensor) -> None:
            captured[name].append(out.movedim(1, -1).reshape(-1, out.shape[1]).gt(0).numpy())
        return save

    handles = [m.register_forward_hook(hook(name)) for name, m in convs.items()]
    try:
        plain(model, x, batch_size)
    finally:
        for h in handles:
            h.remove()
    result = {}
    for name, parts in captured.items():
        bits = np.concatenate(parts)
        _, counts = np.unique(np.packbits(bits, axis=1), axis=0, return_counts=True)
        result[name] = entropy(counts) / bits.shape[1]
    return result


def warm_up(model: nn.Module, x: torch.Tensor, bs: int) -> None:
    """One pass of each variant: the allocator, and oneDNN's kernels for every batch shape they use."""
    plain(model, x, bs)
    measure_efficiency(model, x, batch_size=bs)


def timed(fn: Callable[[], object]) -> tuple[float, float, object]:
    """Wall-clock and CPU seconds (this process, all threads) of one call, and its value."""
    wall, cpu = time.perf_counter(), time.process_time()
    value = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, value


class Overhead(NamedTuple):
    plain: float  # median wall-clock seconds
    variant: float
    wall: float  # median overhead, wall-clock
    cpu: float  # median overhead, CPU time: less swayed by other processes on a shared machine
    value: object


def overhead(model: nn.Module, x: torch.Tensor, bs: int, variant: Callable[[], object], rounds: int) -> Overhead:
    """This machine's speed drifts by 10-20% over seconds, more than the overhead measured. So each round
    times the variant between two plain passes, and the overhead is the median over rounds of
    (variant - mean of its two plain passes) / that mean."""
    plains, variants, walls, cpus, value = [], [], [], [], None
    for _ in range(rounds):
        before = timed(lambda: plain(model, x, bs))
        t, c, value = timed(variant)
        after = timed(lambda: plain(model, x, bs))
        base, base_cpu = (before[0] + after[0]) / 2, (before[1] + after[1]) / 2
        plains.append(base)
        variants.append(t)
        walls.append((t - base) / base)
        cpus.append((c - base_cpu) / base_cpu)
    median = statistics.median
    return Overhead(median(plains), median(variants), median(walls), median(cpus), value)


def conditions(what: str, rounds: str) -> str:
    return (f"{what}, {torch.get_num_threads()} threads, medians of {rounds}, device cpu, "
            f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


def bench_lenet5(data_dir: Path, reps: int, bs: int) -> bool | None:
    """LeNet-5 on MNIST against the NumPy reference; None when the images are not there."""
    x = load_test_images(data_dir)
    if x is None:
        print(f"SKIP LeNet-5: MNIST test images not found under {data_dir} "
              "(expected mnist/MNIST/raw/t10k-images-idx3-ubyte)")
        return None
    torch.manual_seed(0)
    model = lenet5().eval()
    warm_up(model, x[:bs], bs)
    ours = overhead(model, x, bs, lambda: measure_efficiency(model, x, layers=nn.Conv2d, batch_size=bs), reps)
    refs = overhead(model, x, bs, lambda: reference(model, x, bs), max(1, reps // 3))
    report, ref = ours.value, refs.value
    assert isinstance(report, EfficiencyReport) and isinstance(ref, dict)
    mine = report.layer_efficiencies
    identical = mine.keys() == ref.keys() and all(abs(mine[k] - ref[k]) < 1e-12 for k in mine)

    print(conditions(f"LeNet-5 on {x.shape[0]:,} MNIST test images, batch {bs}",
                     f"{reps} rounds (reference: {max(1, reps // 3)})"))
    print(f"{'variant':<34}{'seconds':>10}{'overhead':>10}{'cpu overhead':>14}")
    print(f"{'plain forward':<34}{ours.plain:>10.3f}")
    print(f"{'aiq_search.measure_efficiency':<34}{ours.variant:>10.3f}{ours.wall:>10.3f}{ours.cpu:>14.3f}")
    print(f"{'reference (packbits + np.unique)':<34}{refs.variant:>10.3f}{refs.wall:>10.3f}{refs.cpu:>14.3f}")
    print(f"reference overhead / ours: {refs.wall / max(ours.wall, 1e-9):.1f}x")
    for name, stats in report.layers.items():
        print(f"  conv {name}: {stats.neurons} neurons, {stats.observations:,} observations, "
              f"{stats.unique_states:,} states, efficiency {stats.efficiency:.6f} (reference {ref[name]:.6f})")
    print(f"efficiencies identical: {identical}")
    targets = ours.wall <= 0.25 and refs.wall >= 5 * ours.wall
    print(f"targets (overhead <= 0.25, >= 5x below reference): {'met' if targets else 'NOT met'}")
    return identical


def bench_resnet(rounds: int, bs: int, n: int = 1000) -> None:
    """measure_efficiency against a plain forward on a ResNet-18-sized model, random inputs and weights."""
    torch.manual_seed(0)
    model = resnet18_sized().eval()
    modules = dict(model.named_modules())
    x = torch.randn(n, 3, 32, 32)
    warm_up(model, x[:bs], bs)
    ours = overhead(model, x, bs, lambda: measure_efficiency(model, x, batch_size=bs), rounds)
    report = ours.value
    assert isinstance(report, EfficiencyReport)
    params = sum(p.numel() for p in model.parameters())
    past_add = sum(isinstance(modules[s.read_at], ACTIVATION_TYPES) for s in report.layers.values())
    after_norm = sum(s.read_at != name for name, s in report.layers.items()) - past_add
    print(conditions(f"ResNet-18-sized ({params:,} parameters, 3x3 stem, BatchNorm before ReLU) on {n:,} "
                     f"random 32x32 inputs, batch {bs}", f"{rounds} rounds"))
    print(f"{'variant':<34}{'seconds':>10}{'ratio':>8}{'overhead':>10}{'cpu overhead':>14}")
    print(f"{'plain forward':<34}{ours.plain:>10.3f}{1.0:>8.3f}")
    print(f"{'aiq_search.measure_efficiency':<34}{ours.variant:>10.3f}{ours.variant / ours.plain:>8.3f}"
          f"{ours.wall:>10.3f}{ours.cpu:>14.3f}")
    print(f"  {len(report.layers)} layers probed ({after_norm} read after their normalization, {past_add} past a "
          "residual add), "
          f"skipped: {list(report.skipped)}, network efficiency {report.network:.6f}")
    print(f"target (overhead <= 0.25): {'met' if ours.wall <= 0.25 else 'NOT met'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--repeats", type=int, default=9, help="LeNet-5 rounds (a third for the reference)")
    parser.add_argument("--resnet-rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    identical = bench_lenet5(args.data_dir, args.repeats, args.batch_size)
    print()
    bench_resnet(args.resnet_rounds, args.batch_size)
    return 0 if identical is not False else 1


if __name__ == "__main__":
    sys.exit(main())
