"""Small TFDS datasets built in the tests: prepared as ArrayRecord they are read by index like
ImageNet, and a process that never imported these classes reads them from their files."""

import atexit
import functools
import pathlib
import shutil
import tempfile

import numpy as np
from sklearn.datasets import load_digits

from research.data.tfds_source import import_tfds

tfds = import_tfds()


class TinyDigits(tfds.core.GeneratorBasedBuilder):
    """scikit-learn's digits as a TFDS dataset: PNG-encoded 8x8x1 images, 10 classes."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        features = {
            "image": tfds.features.Image(shape=(8, 8, 1)),
            "label": tfds.features.ClassLabel(num_classes=10),
        }
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(features))

    def _split_generators(self, dl_manager):
        return {
            "train": self._generate_examples(0, 1400),
            "test": self._generate_examples(1400, 1797),
        }

    def _generate_examples(self, start, stop):
        digits = load_digits()
        images = np.round(digits.images * (255 / 16)).astype(np.uint8)[..., None]
        for i in range(start, stop):
            yield i, {"image": images[i], "label": int(digits.target[i])}


class TinyPhotos(tfds.core.GeneratorBasedBuilder):
    """RGB images of different sizes, as ImageNet's are."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        features = {
            "image": tfds.features.Image(shape=(None, None, 3)),
            "label": tfds.features.ClassLabel(num_classes=2),
        }
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(features))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(0, 40), "test": self._generate_examples(40, 50)}

    def _generate_examples(self, start, stop):
        rng = np.random.default_rng(0)
        for i in range(start, stop):
            shape = (int(rng.integers(20, 40)), int(rng.integers(20, 40)), 3)
            yield i, {"image": rng.integers(0, 256, shape, np.uint8), "label": i % 2}


@functools.cache
def prepared() -> pathlib.Path:
    """tiny_digits and tiny_photos prepared as ArrayRecord in ROOT/array_record, tiny_digits
    also as TFRecord in ROOT/tfrecord: once per test process, in a temporary ROOT."""
    root = pathlib.Path(tempfile.mkdtemp(prefix="tiny_tfds_"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    for builder_class in (TinyDigits, TinyPhotos):
        builder_class(data_dir=str(root / "array_record")).download_and_prepare(
            file_format="array_record"
        )
    TinyDigits(data_dir=str(root / "tfrecord")).download_and_prepare()
    return root
