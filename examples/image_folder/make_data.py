"""Write a tiny image-folder data set: circles, squares and triangles drawn at random, as PNG files.

    python examples/image_folder/make_data.py          # -> examples/image_folder/shapes/{train,test}/<class>/
    aiq-search run examples/image_folder/study.toml

The images come in several sizes and in color, as real ones would; the study resizes them to 16×16 gray.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from PIL import Image, ImageDraw

CLASSES = ("circle", "square", "triangle")


def draw(shape: str, rng: random.Random) -> Image.Image:
    """One shape of random size, place and color on a noisy background of random size."""
    side = rng.randint(20, 32)
    image = Image.new("RGB", (side, side), tuple(rng.randint(0, 60) for _ in range(3)))
    pen = ImageDraw.Draw(image)
    for _ in range(side * 2):  # background speckle
        pen.point((rng.randrange(side), rng.randrange(side)), fill=tuple(rng.randint(0, 90) for _ in range(3)))
    size = rng.randint(side // 2, side - 4)
    x, y = rng.randint(0, side - size - 1), rng.randint(0, side - size - 1)
    color = tuple(rng.randint(140, 255) for _ in range(3))
    if shape == "circle":
        pen.ellipse((x, y, x + size, y + size), fill=color)
    elif shape == "square":
        pen.rectangle((x, y, x + size, y + size), fill=color)
    else:
        pen.polygon([(x + size // 2, y), (x, y + size), (x + size, y + size)], fill=color)
    return image


def make(out: Path, per_class: int = 100, test_per_class: int = 20, seed: int = 0) -> Path:
    """Write ``out/train/<class>/*.png`` and ``out/test/<class>/*.png``; returns ``out``."""
    rng = random.Random(seed)
    for split, count in (("train", per_class), ("test", test_per_class)):
        for shape in CLASSES:
            folder = out / split / shape
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                draw(shape, rng).save(folder / f"{shape}-{i:04d}.png")
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", nargs="?", type=Path, default=Path("examples/image_folder/shapes"))
    parser.add_argument("--per-class", type=int, default=100, help="training images per class")
    args = parser.parse_args()
    print(make(args.out, args.per_class))
