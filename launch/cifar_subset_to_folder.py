"""One-time converter: the CIFAR-10 subset's PNG strips into an image folder DIR/<split>/<class>/.

`python -m launch.cifar_subset_to_folder --subset=../shared/data/cifar10_subset --folder=DIR`
writes DIR/train (4,000 images) and DIR/test (1,000) as lossless PNGs, readable by
data.name=image_folder. See the subset's SOURCES.md for the strip format.
"""

import json
import pathlib

import numpy as np
from absl import app, flags
from PIL import Image

CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
TRAIN_BATCHES = (0, 1, 2, 3)
TEST_BATCH = 50
TRAIN_SIZE = 50_000
BATCH_ROWS = 1000

flags.DEFINE_string("subset", "../shared/data/cifar10_subset", "Folder with the PNG strips.")
flags.DEFINE_string("folder", "runs/data/cifar10_subset", "Image folder to write.")
FLAGS = flags.FLAGS


def strip_images(path: pathlib.Path) -> np.ndarray:
    """One 1024x1000 RGB strip -> images [1000, 32, 32, 3] uint8 (one image per row)."""
    return np.asarray(Image.open(path).convert("RGB")).reshape(BATCH_ROWS, 32, 32, 3)


def convert(src: pathlib.Path, out: pathlib.Path) -> dict[str, int]:
    """Writes every image as DIR/<split>/<class>/<index>.png; returns the count per split."""
    labels = json.loads((src / "cifar10_labels.json").read_text())
    batches = {"train": TRAIN_BATCHES, "test": (TEST_BATCH,)}
    counts = {}
    for split, numbers in batches.items():
        for name in CLASSES:
            (out / split / name).mkdir(parents=True, exist_ok=True)
        counts[split] = 0
        for number in numbers:
            first = TRAIN_SIZE if number == TEST_BATCH else number * BATCH_ROWS
            images = strip_images(src / f"cifar10_batch_{number}.png")
            for row, image in enumerate(images):
                index = first + row
                label = CLASSES[labels[index]]
                Image.fromarray(image).save(out / split / label / f"{index:05d}.png")
            counts[split] += len(images)
    return counts


def main(argv: list[str]) -> None:
    del argv
    counts = convert(pathlib.Path(FLAGS.subset), pathlib.Path(FLAGS.folder))
    print(f"wrote {counts} images to {FLAGS.folder}", flush=True)


if __name__ == "__main__":
    app.run(main)
