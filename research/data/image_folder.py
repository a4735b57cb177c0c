"""Local image folders `DIR/<split>/<class>/<image>` as uint8 images, decoded with PIL.

Each image is a record read by its index (research.data.Records): decoded once into memory, or
each time a batch needs it when the folder is larger than memory (data.storage). PIL rather
than TFDS's ImageFolder builder: it skips TensorFlow's seconds of start-up and names the exact
file it cannot read.
"""

import contextlib
import pathlib
from collections.abc import Iterator

import ml_collections
import numpy as np
from PIL import Image

from research.data import (
    SOURCES,
    Dataset,
    Records,
    Split,
    carve_validation,
    decoders,
    image_info,
    in_memory,
    keep_in_memory,
    size,
)
from research.errors import UserError

VALIDATION_NAMES = ("val", "validation")


@contextlib.contextmanager
def _opened(path: pathlib.Path) -> Iterator[Image.Image]:
    """PIL's image at `path`; any failure to read it, now or while decoding, names the file."""
    try:
        with Image.open(path) as image:
            yield image
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise UserError(
            f"Cannot read image {str(path)!r} ({type(error).__name__}: {error}). Remove or "
            "replace the file; every file under DIR/<split>/<class>/ must be an image (hidden "
            "ones, such as .DS_Store, are skipped)."
        ) from None


def _visible(directory: pathlib.Path) -> list[pathlib.Path]:
    """The entries of `directory` by name, without hidden ones (.DS_Store, .ipynb_checkpoints)."""
    return sorted(p for p in directory.iterdir() if not p.name.startswith("."))


def _images(directory: pathlib.Path) -> list[pathlib.Path]:
    return [p for p in _visible(directory) if p.is_file()]


def _decode(path: pathlib.Path, mode: str) -> np.ndarray:
    with _opened(path) as image:
        pixels = np.asarray(image.convert(mode), dtype=np.uint8)
    return pixels[..., None] if pixels.ndim == 2 else pixels


def _read_split(directory: pathlib.Path, classes: list[str], mode: str, shape: tuple) -> Records:
    """Records of `image` [height, width, channels] uint8 in (class, file name) order and
    `label`; an image of another shape than `shape` is a UserError when it is read."""
    unknown = sorted({d.name for d in _visible(directory) if d.is_dir()} - set(classes))
    if unknown:
        raise UserError(
            f"{str(directory)!r} has classes {unknown} that the train split lacks; every "
            "class must have training images."
        )
    files = [
        (path, label)
        for label, name in enumerate(classes)
        if (directory / name).is_dir()
        for path in _images(directory / name)
    ]
    if not files:
        raise UserError(f"{str(directory)!r} holds no images in DIR/<split>/<class>/<image>.")

    def example(index: int) -> dict[str, np.ndarray]:
        path, label = files[index]
        image = _decode(path, mode)
        if image.shape != shape:
            raise UserError(
                f"Image {str(path)!r} is {image.shape[1]}x{image.shape[0]} but the first "
                f"training image is {shape[1]}x{shape[0]}; images in a folder dataset must "
                "share one size. Resize them first."
            )
        return {"image": image, "label": np.int32(label)}

    def read(rows: list[int]) -> list[dict[str, np.ndarray]]:
        return list(decoders().map(example, rows))  # PIL releases the GIL while it decodes

    return Records(read, np.arange(len(files)))


def _first_image(path: pathlib.Path) -> tuple[str, tuple]:
    """The mode every image is read in (grayscale "L" when the first training image is, else
    RGB) and the shape they must share: the first training image's."""
    with _opened(path) as image:
        mode = "L" if image.mode in ("1", "L", "I;16") else "RGB"
    return mode, _decode(path, mode).shape


@SOURCES.register("image_folder", reads=("path", "validation_fraction", "storage"))
def load(config: ml_collections.ConfigDict) -> Dataset:
    """Reads `config.path`/{train, val or validation, test}; label ids are sorted class names.

    Without a validation folder, `config.validation_fraction` of train is carved off by a
    fixed permutation (the same for every run seed).
    """
    if config.path is None:
        raise UserError(
            "data.name='image_folder' needs the folder: pass --config.data.path=DIR with "
            "DIR/train/<class>/<image> and DIR/test/<class>/<image>."
        )
    root = pathlib.Path(config.path)
    missing = [split for split in ("train", "test") if not (root / split).is_dir()]
    if missing:
        raise UserError(
            f"The image folder {str(root)!r} has no {' or '.join(missing)} directory; it must "
            "hold DIR/train/<class>/<image> and DIR/test/<class>/<image> (DIR/val optional)."
        )
    classes = [d.name for d in _visible(root / "train") if d.is_dir()]
    if not classes:
        raise UserError(f"{str(root / 'train')!r} has no class directories.")
    empty = [name for name in classes if not _images(root / "train" / name)]
    if empty:
        raise UserError(
            f"The classes {empty} in {str(root / 'train')!r} hold no training images; every "
            "class needs some. Add images or remove those folders."
        )
    mode, shape = _first_image(_images(root / "train" / classes[0])[0])
    splits: dict[str, Split] = {
        split: _read_split(root / split, classes, mode, shape) for split in ("train", "test")
    }
    validation = [root / name for name in VALIDATION_NAMES if (root / name).is_dir()]
    if validation:
        splits["val"] = _read_split(validation[0], classes, mode, shape)
    else:
        splits["train"], splits["val"] = carve_validation(
            splits["train"], config.validation_fraction
        )
        if not size(splits["val"]):
            raise UserError(
                f"data.validation_fraction={config.validation_fraction} of the "
                f"{size(splits['train'])} training images in {str(root)!r} rounds to no "
                "validation image. Add a DIR/val/<class>/ folder, more training images, or "
                "raise data.validation_fraction."
            )
    if keep_in_memory(config, size(splits["train"]) * int(np.prod(shape))):
        splits = {name: in_memory(split) for name, split in splits.items()}
    info = image_info(splits["train"], len(classes))
    info["class_names"] = classes
    return Dataset(splits, info)
