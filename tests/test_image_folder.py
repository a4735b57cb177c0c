"""Tests of research/data/image_folder.py and the CIFAR-subset converter, on tiny folders."""

import json
import pathlib

import ml_collections
import numpy as np
import pytest
from PIL import Image

from launch import cifar_subset_to_folder
from research import data
from research.config import base_config
from research.errors import UserError

CLASSES = ("cat", "ant", "bee")  # created unsorted; label ids follow the sorted names


def _write(path: pathlib.Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def make_folder(root: pathlib.Path, counts: dict[str, int], shape=(6, 5, 3), seed=0) -> None:
    """root/<split>/<class>/<i>.png with random pixels, `counts[split]` images per class."""
    rng = np.random.default_rng(seed)
    for split, count in counts.items():
        for name in CLASSES:
            for i in range(count):
                pixels = rng.integers(0, 256, shape, dtype=np.uint8)
                _write(root / split / name / f"{i}.png", pixels.squeeze())


def _config(path: pathlib.Path, **changes) -> ml_collections.ConfigDict:
    config = base_config("t").data
    config.update(name="image_folder", path=str(path), batch_size=2, **changes)
    return config


def _rows(arrays: dict[str, np.ndarray]) -> set[bytes]:
    return {image.tobytes() for image in arrays["image"]}


def test_labels_follow_sorted_class_names_and_val_is_carved(tmp_path) -> None:
    make_folder(tmp_path, {"train": 10, "test": 2})
    dataset = data.load(_config(tmp_path, validation_fraction=0.2))
    assert dataset.info["class_names"] == ["ant", "bee", "cat"]
    assert dataset.info["num_classes"] == 3 and dataset.info["input_shape"] == (6, 5, 3)
    assert {s: dataset.size(s) for s in ("train", "val", "test")} == {
        "train": 24,
        "val": 6,
        "test": 6,
    }
    for arrays in dataset.splits.values():
        assert arrays["image"].dtype == np.uint8 and arrays["label"].dtype == np.int32
    np.testing.assert_array_equal(dataset.splits["test"]["label"], [0, 0, 1, 1, 2, 2])
    # The file ant/0.png of the test split is the first test image, unchanged.
    first = np.asarray(Image.open(tmp_path / "test" / "ant" / "0.png"))
    np.testing.assert_array_equal(dataset.splits["test"]["image"][0], first)
    train, val = _rows(dataset.splits["train"]), _rows(dataset.splits["val"])
    assert not train & val and len(train | val) == 30
    train_labels = np.concatenate([dataset.splits[s]["label"] for s in ("train", "val")])
    assert np.bincount(train_labels).tolist() == [10, 10, 10]


def test_a_val_folder_is_used_as_is(tmp_path) -> None:
    make_folder(tmp_path, {"train": 3, "val": 2, "test": 1})
    dataset = data.load(_config(tmp_path))
    assert {s: dataset.size(s) for s in ("train", "val", "test")} == {
        "train": 9,
        "val": 6,
        "test": 3,
    }


def test_grayscale_images_have_one_channel(tmp_path) -> None:
    make_folder(tmp_path, {"train": 2, "test": 1}, shape=(4, 4, 1))
    dataset = data.load(_config(tmp_path, validation_fraction=0.5))
    assert dataset.splits["train"]["image"].shape == (3, 4, 4, 1)


def test_a_bad_file_is_named(tmp_path) -> None:
    make_folder(tmp_path, {"train": 2, "test": 1})
    (tmp_path / "train" / "bee" / "broken.png").write_text("not an image")
    with pytest.raises(UserError, match=r"bee/broken\.png"):
        data.load(_config(tmp_path))


def test_hidden_files_and_folders_are_skipped(tmp_path) -> None:
    make_folder(tmp_path, {"train": 2, "val": 1, "test": 1})
    for split in ("train", "val"):
        (tmp_path / split / "ant" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")  # sorts first
        (tmp_path / split / ".ipynb_checkpoints").mkdir()
        (tmp_path / split / ".ipynb_checkpoints" / "0.png").write_text("not an image")
    dataset = data.load(_config(tmp_path))
    assert dataset.info["class_names"] == ["ant", "bee", "cat"]
    assert [dataset.size(s) for s in ("train", "val", "test")] == [6, 3, 3]


@pytest.mark.parametrize(
    "damage, cause",
    [(lambda data: b"not an image", "UnidentifiedImageError"), (lambda data: data[:60], "OSError")],
    ids=["not an image", "truncated"],
)
def test_a_corrupt_first_image_is_named_with_its_cause(tmp_path, damage, cause) -> None:
    make_folder(tmp_path, {"train": 2, "test": 1})
    first = tmp_path / "train" / "ant" / "0.png"  # read first, for the colour mode
    first.write_bytes(damage(first.read_bytes()))
    with pytest.raises(UserError, match=rf"train/ant/0\.png' \({cause}"):
        data.load(_config(tmp_path))


def test_a_class_without_training_images_is_named(tmp_path) -> None:
    make_folder(tmp_path, {"train": 2, "test": 1})
    (tmp_path / "train" / "dog").mkdir()
    (tmp_path / "train" / "dog" / ".DS_Store").write_bytes(b"")
    with pytest.raises(UserError, match=r"classes \['dog'\] in .* hold no training images"):
        data.load(_config(tmp_path))


def test_too_few_images_to_carve_a_validation_split_is_refused(tmp_path) -> None:
    make_folder(tmp_path, {"train": 1, "test": 1})
    with pytest.raises(UserError, match="0.1 of the 3 training images .* no validation image"):
        data.load(_config(tmp_path))


def test_an_odd_size_is_named(tmp_path) -> None:
    make_folder(tmp_path, {"train": 2, "test": 1})
    _write(tmp_path / "test" / "cat" / "big.png", np.zeros((9, 9, 3), np.uint8))
    with pytest.raises(UserError, match=r"cat/big\.png.*9x9"):
        data.load(_config(tmp_path))


@pytest.mark.parametrize(
    "layout, match",
    [({"train": 1}, "no test"), ({"train": 1, "test": 1}, "classes \\['dog'\\]")],
)
def test_bad_layouts_are_refused(tmp_path, layout, match) -> None:
    make_folder(tmp_path, layout)
    if "test" in layout:
        _write(tmp_path / "test" / "dog" / "0.png", np.zeros((6, 5, 3), np.uint8))
    with pytest.raises(UserError, match=match):
        data.load(_config(tmp_path))


def test_converter_writes_each_strip_row_under_its_label(tmp_path, monkeypatch) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    rng = np.random.default_rng(0)
    strips = {n: rng.integers(0, 256, (1000, 1024, 3), dtype=np.uint8) for n in (0, 50)}
    for number, strip in strips.items():
        Image.fromarray(strip).save(src / f"cifar10_batch_{number}.png")
    labels = rng.integers(0, 10, 51_000).tolist()
    (src / "cifar10_labels.json").write_text(json.dumps(labels))
    monkeypatch.setattr(cifar_subset_to_folder, "TRAIN_BATCHES", (0,))
    assert cifar_subset_to_folder.convert(src, out) == {"train": 1000, "test": 1000}
    name = cifar_subset_to_folder.CLASSES[labels[50_007]]
    image = np.asarray(Image.open(out / "test" / name / "50007.png"))
    np.testing.assert_array_equal(image, strips[50][7].reshape(32, 32, 3))
    dataset = data.load(_config(out))
    train = np.concatenate([dataset.splits[s]["label"] for s in ("train", "val")])
    assert (
        np.bincount(train, minlength=10).tolist()
        == np.bincount(labels[:1000], minlength=10).tolist()
    )
