"""A small stand-in for ImageNet's official archives (`launch.fake_imagenet` writes it), to
test and benchmark the ImageNet path on machines without the 150 GB download.

`write` makes `ILSVRC2012_img_train.tar` (one inner tar of JPEGs per synset, all 1,000 of
TFDS's) and `ILSVRC2012_img_val.tar` (`ILSVRC2012_val_%08d.JPEG`, labelled by TFDS's own
list): the files `launch.prepare_data imagenet2012 --from=DIR` reads, so the stand-in goes
through the same prepare and read path as the real data. Images are JPEGs of random sizes
(smooth colour fields whose hue follows the class, so the stand-in is learnable).
"""

import io
import pathlib
import tarfile

import numpy as np
from PIL import Image

VAL_LABELS = 50_000


def jpeg(rng: np.random.Generator, label: int, sides: tuple[int, int]) -> bytes:
    """A JPEG of random size: a 4x4 colour field around the class's hue, upsampled."""
    width, height = (int(side) for side in rng.integers(sides[0], sides[1] + 1, 2))
    hue = np.array([label % 10, label // 10 % 10, label // 100], np.float64) * 25
    field = np.clip(hue + rng.normal(0, 20, (4, 4, 3)), 0, 255).astype(np.uint8)
    image = Image.fromarray(field).resize((width, height), Image.BILINEAR)
    encoded = io.BytesIO()
    image.save(encoded, "JPEG", quality=90)
    return encoded.getvalue()


def _add(archive: tarfile.TarFile, name: str, content: bytes) -> None:
    member = tarfile.TarInfo(name)
    member.size = len(content)
    archive.addfile(member, io.BytesIO(content))


def write(out: pathlib.Path, per_class: int, val_images: int, sides=(64, 160), seed=0) -> None:
    """The two archives in `out`, from `seed`: the same bytes on every run."""
    import tensorflow_datasets as tfds

    def listed(name: str) -> list[str]:
        return tfds.core.tfds_path(f"datasets/imagenet2012/{name}").read_text().split()

    synsets, val_synsets = listed("labels.txt"), listed("validation_labels.txt")
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    with tarfile.open(out / "ILSVRC2012_img_train.tar", "w") as train:
        for label, synset in enumerate(synsets):
            inner = io.BytesIO()
            with tarfile.open(fileobj=inner, mode="w") as images:
                for i in range(per_class):
                    _add(images, f"{synset}_{i}.JPEG", jpeg(rng, label, sides))
            _add(train, f"{synset}.tar", inner.getvalue())
    with tarfile.open(out / "ILSVRC2012_img_val.tar", "w") as val:
        for i in range(val_images):
            label = synsets.index(val_synsets[i])
            _add(val, f"ILSVRC2012_val_{i + 1:08d}.JPEG", jpeg(rng, label, sides))
