"""Local image folders `DIR/<split>/<class>/<image>` read once into uint8 arrays with PIL.

PIL rather than TFDS's ImageFolder builder: the whole folder is decoded into memory anyway,
and PIL skips TensorFlow's seconds of start-up and names the exact file it cannot read.
"""

import pathlib
from concurrent.futures import ThreadPoolExecutor

import ml_collections
import numpy as np
from PIL import Image, UnidentifiedImageError

from research.data import Arrays, Dataset, carve_validation, image_info
from research.errors import UserError

VALIDATION_NAMES = ("val", "validation")


def _decode(path: pathlib.Path, mode: str) -> np.ndarray:
    try:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert(mode), dtype=np.uint8)
    except (OSError, UnidentifiedImageError) as error:
        raise UserError(
            f"Cannot read image {str(path)!r} ({error}). Remove or replace the file; every "
            "file under DIR/<split>/<class>/ must be an image."
        ) from None
    return pixels[..., None] if pixels.ndim == 2 else pixels


def _read_split(directory: pathlib.Path, classes: list[str], mode: str) -> Arrays:
    """images [n, height, width, channels] uint8 in (class, file name) order; labels [n]."""
    unknown = sorted({d.name for d in directory.iterdir() if d.is_dir()} - set(classes))
    if unknown:
        raise UserError(
            f"{str(directory)!r} has classes {unknown} that the train split lacks; every "
            "class must have training images."
        )
    files = [
        (path, label)
        for label, name in enumerate(classes)
        if (directory / name).is_dir()
        for path in sorted(p for p in (directory / name).iterdir() if p.is_file())
    ]
    if not files:
        raise UserError(f"{str(directory)!r} holds no images in DIR/<split>/<class>/<image>.")
    with ThreadPoolExecutor(8) as pool:  # PIL releases the GIL while it decodes
        images = list(pool.map(lambda item: _decode(item[0], mode), files))
    shape = images[0].shape
    for image, (path, _) in zip(images, files, strict=True):
        if image.shape != shape:
            raise UserError(
                f"Image {str(path)!r} is {image.shape[1]}x{image.shape[0]} but "
                f"{str(files[0][0])!r} is {shape[1]}x{shape[0]}; images in a folder dataset "
                "must share one size. Resize them first."
            )
    labels = np.asarray([label for _, label in files], np.int32)
    return {"image": np.stack(images), "label": labels}


def _image_mode(train: pathlib.Path, classes: list[str]) -> str:
    """Grayscale ("L") when the first training image is, else RGB for every image."""
    first = next(p for p in sorted((train / classes[0]).iterdir()) if p.is_file())
    with Image.open(first) as image:
        return "L" if image.mode in ("1", "L", "I;16") else "RGB"


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
    classes = sorted(d.name for d in (root / "train").iterdir() if d.is_dir())
    if not classes:
        raise UserError(f"{str(root / 'train')!r} has no class directories.")
    mode = _image_mode(root / "train", classes)
    splits = {split: _read_split(root / split, classes, mode) for split in ("train", "test")}
    validation = [root / name for name in VALIDATION_NAMES if (root / name).is_dir()]
    if validation:
        splits["val"] = _read_split(validation[0], classes, mode)
    else:
        splits["train"], splits["val"] = carve_validation(
            splits["train"], config.validation_fraction
        )
    info = image_info(splits["train"], len(classes))
    info["class_names"] = classes
    return Dataset(splits, info)


LOADERS = {"image_folder": load}
