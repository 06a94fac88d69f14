"""Cost of measuring efficiency, against a plain forward pass and a straightforward NumPy reference.

LeNet-5 layout (conv 1→20 5×5, ELU, maxpool; conv 20→50 5×5, ELU, maxpool; conv 50→100 4×4, ELU;
linear 100→10), its three convolutions probed, over the 10,000 MNIST test images. All variants run in
this one process; each round times a variant between two plain passes, and medians over rounds are kept.

    python bench/efficiency.py [--data-dir ../shared/data] [--repeats 9] [--batch-size 1000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from aiq_search.metrics import entropy, measure_efficiency

REPO = Path(__file__).resolve().parent.parent


def lenet5() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 20, 5), nn.ELU(), nn.MaxPool2d(2),
        nn.Conv2d(20, 50, 5), nn.ELU(), nn.MaxPool2d(2),
        nn.Conv2d(50, 100, 4), nn.ELU(),
        nn.Flatten(), nn.Linear(100, 10),
    )


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


def best_time(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    best, value = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - start)
    return best, value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--repeats", type=int, default=9, help="rounds for ours (a third for the reference)")
    parser.add_argument("--batch-size", type=int, default=1000)
    args = parser.parse_args()

    x = load_test_images(args.data_dir)
    if x is None:
        print(f"SKIP: MNIST test images not found under {args.data_dir} (expected mnist/MNIST/raw/t10k-images-idx3-ubyte)")
        return 0
    torch.manual_seed(0)
    model = lenet5().eval()
    bs, reps = args.batch_size, args.repeats

    plain(model, x[:bs], bs)  # warm-up: allocator, kernels
    # This machine's speed drifts by 10-20% over seconds, more than the overhead measured. So each round
    # times a variant between two plain passes, and the overhead is the median over rounds of
    # (variant - mean of its two plain passes) / that mean.
    def overhead(variant: Callable[[], object], rounds: int) -> tuple[float, float, float, object]:
        ratios, plains, variants, value = [], [], [], None
        for _ in range(rounds):
            before = best_time(lambda: plain(model, x, bs), 1)[0]
            t, value = best_time(variant, 1)
            base = (before + best_time(lambda: plain(model, x, bs), 1)[0]) / 2
            ratios.append((t - base) / base)
            plains.append(base)
            variants.append(t)
        return statistics.median(plains), statistics.median(variants), statistics.median(ratios), value

    t_plain, t_ours, over_ours, report = overhead(
        lambda: measure_efficiency(model, x, layers=nn.Conv2d, batch_size=bs), reps)
    _, t_ref, over_ref, ref = overhead(lambda: reference(model, x, bs), max(1, reps // 3))
    ours = report.layer_efficiencies
    identical = ours.keys() == ref.keys() and all(abs(ours[k] - ref[k]) < 1e-12 for k in ours)

    print(f"LeNet-5 on {x.shape[0]:,} MNIST test images, batch {bs}, {torch.get_num_threads()} threads, "
          f"medians of {reps} rounds (reference: {max(1, reps // 3)}), device cpu")
    print(f"{'variant':<34}{'seconds':>10}{'overhead':>12}")
    print(f"{'plain forward':<34}{t_plain:>10.3f}{'':>12}")
    print(f"{'aiq_search.measure_efficiency':<34}{t_ours:>10.3f}{over_ours:>12.3f}")
    print(f"{'reference (packbits + np.unique)':<34}{t_ref:>10.3f}{over_ref:>12.3f}")
    print(f"reference overhead / ours: {over_ref / max(over_ours, 1e-9):.1f}x")
    for name, stats in report.layers.items():
        print(f"  conv {name}: {stats.neurons} neurons, {stats.observations:,} observations, "
              f"{stats.unique_states:,} states, efficiency {stats.efficiency:.6f} (reference {ref[name]:.6f})")
    print(f"efficiencies identical: {identical}")
    targets = over_ours <= 0.25 and over_ref >= 5 * over_ours
    print(f"targets (overhead <= 0.25, >= 5x below reference): {'met' if targets else 'NOT met'}")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
