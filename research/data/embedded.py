"""Datasets that ship inside the dependencies, so every experiment runs offline in seconds."""

import ml_collections
import numpy as np

from research.data import SOURCES, Dataset, carve_validation, image_info


@SOURCES.register("digits", reads=("validation_fraction",))
def digits(config: ml_collections.ConfigDict) -> Dataset:
    """scikit-learn's 1,797 real 8x8 handwritten digits, as uint8 images [n, 8, 8, 1].

    Gray levels 0..16 are scaled to 0..255 so every image source shares one convention.
    The test split (20%) and validation split are carved by fixed permutations.
    """
    from sklearn.datasets import load_digits

    raw = load_digits()
    images = np.round(raw.images * (255 / 16)).astype(np.uint8)[..., None]
    arrays = {"image": images, "label": raw.target.astype(np.int32)}
    rest, test = carve_validation(arrays, 0.2, seed=1)
    train, val = carve_validation(rest, config.validation_fraction, seed=0)
    return Dataset({"train": train, "val": val, "test": test}, image_info(train, 10))
