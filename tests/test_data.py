"""Tests of research/data: digits splits, image statistics, and batches as functions of step."""

import ml_collections
import numpy as np
import pytest

from research import data
from research.config import base_config
from research.errors import UserError

DIGITS_SIZE = 1797


def _data_config(**changes) -> ml_collections.ConfigDict:
    config = base_config("t").data
    config.update(changes)
    return config


@pytest.fixture(scope="module")
def digits() -> data.Dataset:
    return data.load(_data_config())


def _rows(arrays: dict[str, np.ndarray]) -> set[bytes]:
    """Each example as bytes of image and label, so splits can be compared as sets."""
    return {
        image.tobytes() + label.tobytes()
        for image, label in zip(arrays["image"], arrays["label"], strict=True)
    }


def test_digits_split_sizes(digits) -> None:
    sizes = {split: digits.size(split) for split in ("train", "val", "test")}
    assert sizes == {"train": 1294, "val": 144, "test": 359}
    assert sum(sizes.values()) == DIGITS_SIZE


def test_digits_splits_are_disjoint_and_cover_the_dataset(digits) -> None:
    train, val, test = (_rows(digits.splits[s]) for s in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (1294, 144, 359)  # no duplicates inside
    assert not train & val and not train & test and not val & test
    assert len(train | val | test) == DIGITS_SIZE


def test_digits_splits_identical_across_loads(digits) -> None:
    again = data.load(_data_config())
    for split in ("train", "val", "test"):
        for name in ("image", "label"):
            np.testing.assert_array_equal(again.splits[split][name], digits.splits[split][name])


def test_test_split_does_not_depend_on_validation_fraction(digits) -> None:
    other = data.load(_data_config(validation_fraction=0.3))
    np.testing.assert_array_equal(other.splits["test"]["image"], digits.splits["test"]["image"])
    np.testing.assert_array_equal(other.splits["test"]["label"], digits.splits["test"]["label"])
    assert other.size("val") == round(1438 * 0.3)
    assert other.size("train") + other.size("val") == 1438
    assert _rows(other.splits["train"]) | _rows(other.splits["val"]) == _rows(
        digits.splits["train"]
    ) | _rows(digits.splits["val"])


def test_digits_arrays_dtype_shape_and_range(digits) -> None:
    for split in ("train", "val", "test"):
        images, labels = digits.splits[split]["image"], digits.splits[split]["label"]
        assert images.dtype == np.uint8
        assert images.shape == (digits.size(split), 8, 8, 1)
        assert labels.shape == (digits.size(split),)
    images = np.concatenate([digits.splits[s]["image"] for s in ("train", "val", "test")])
    labels = np.concatenate([digits.splits[s]["label"] for s in ("train", "val", "test")])
    assert images.min() == 0 and images.max() == 255  # gray levels 0..16 scaled to 0..255
    assert sorted(np.unique(labels).tolist()) == list(range(10))
    assert np.bincount(labels).min() >= 170  # every class is well represented


def test_digits_info(digits) -> None:
    info = digits.info
    assert info["num_classes"] == 10
    assert info["input_shape"] == (8, 8, 1)
    pixels = digits.splits["train"]["image"].astype(np.float64)
    assert info["mean"] == pytest.approx([pixels.mean()], rel=1e-12)
    assert info["std"] == pytest.approx([pixels.std() + 1e-6], rel=1e-12)
    assert 50 < info["mean"][0] < 110 and 70 < info["std"][0] < 120


def test_image_info_is_per_channel() -> None:
    images = np.zeros((4, 2, 3, 3), np.uint8)
    images[..., 0] = 10  # constant channel: std is the epsilon only
    images[..., 1] = np.array([0, 100, 0, 100], np.uint8)[:, None, None]
    images[..., 2] = np.array([0, 0, 0, 200], np.uint8)[:, None, None]
    info = data.image_info({"image": images}, num_classes=3)
    assert info["num_classes"] == 3
    assert info["input_shape"] == (2, 3, 3)
    assert info["mean"] == pytest.approx([10.0, 50.0, 50.0])
    assert info["std"] == pytest.approx([1e-6, 50.0 + 1e-6, np.sqrt(7500.0) + 1e-6])


def test_carve_validation_is_fixed_and_rounds() -> None:
    arrays = {"x": np.arange(10), "y": np.arange(10) * 2}
    train, val = data.carve_validation(arrays, 0.25, seed=3)
    assert len(val["x"]) == 2 and len(train["x"]) == 8  # round(2.5) == 2
    np.testing.assert_array_equal(train["y"], train["x"] * 2)  # rows stay aligned
    assert sorted(np.concatenate([train["x"], val["x"]]).tolist()) == list(range(10))
    train2, val2 = data.carve_validation(arrays, 0.25, seed=3)
    np.testing.assert_array_equal(val["x"], val2["x"])


def test_train_batch_is_a_pure_function_of_seed_epoch_step(digits) -> None:
    first = data.train_batch(digits, seed=0, epoch=1, step=2, batch_size=32)
    again = data.train_batch(digits, seed=0, epoch=1, step=2, batch_size=32)
    assert first["image"].shape == (32, 8, 8, 1) and first["label"].shape == (32,)
    np.testing.assert_array_equal(first["image"], again["image"])
    np.testing.assert_array_equal(first["label"], again["label"])
    for other in (
        data.train_batch(digits, seed=1, epoch=1, step=2, batch_size=32),
        data.train_batch(digits, seed=0, epoch=2, step=2, batch_size=32),
        data.train_batch(digits, seed=0, epoch=1, step=3, batch_size=32),
    ):
        assert _rows(other) != _rows(first)
        assert len(_rows(other) & _rows(first)) < 8  # about 32*32/1294 overlap by chance


def test_train_batch_epoch_is_disjoint_and_drops_the_remainder(digits) -> None:
    n, batch_size = digits.size("train"), 100
    steps = n // batch_size
    seen: set[bytes] = set()
    for step in range(steps):
        rows = _rows(data.train_batch(digits, seed=5, epoch=0, step=step, batch_size=batch_size))
        assert len(rows) == batch_size
        assert not rows & seen
        seen |= rows
    assert len(seen) == steps * batch_size == 1200
    assert seen <= _rows(digits.splits["train"])
    partial = data.train_batch(digits, seed=5, epoch=0, step=steps, batch_size=batch_size)
    assert len(partial["label"]) == n - steps * batch_size == 94


def test_train_batch_epochs_reshuffle(digits) -> None:
    epoch0 = data.train_batch(
        digits, seed=0, epoch=0, step=0, batch_size=len(digits.splits["train"]["label"])
    )
    epoch1 = data.train_batch(digits, seed=0, epoch=1, step=0, batch_size=len(epoch0["label"]))
    assert _rows(epoch0) == _rows(epoch1) == _rows(digits.splits["train"])
    assert not np.array_equal(epoch0["label"], epoch1["label"])


def test_train_batch_process_shares_partition_the_global_batch(digits) -> None:
    whole = data.train_batch(digits, seed=3, epoch=4, step=5, batch_size=64)
    halves = [
        data.train_batch(digits, seed=3, epoch=4, step=5, batch_size=64, process=(i, 2))
        for i in range(2)
    ]
    assert [len(h["label"]) for h in halves] == [32, 32]
    assert not _rows(halves[0]) & _rows(halves[1])
    for name in ("image", "label"):
        np.testing.assert_array_equal(
            np.concatenate([halves[0][name], halves[1][name]]), whole[name]
        )


def test_eval_batches_cover_split_once_with_padding(digits) -> None:
    batch_size = 100
    batches = list(data.eval_batches(digits, "test", batch_size))
    assert len(batches) == 4  # 359 = 3 * 100 + 59
    assert all(b["image"].shape == (batch_size, 8, 8, 1) for b in batches)
    masks = np.concatenate([b["mask"] for b in batches])
    assert masks.dtype == np.float32
    assert masks.sum() == digits.size("test") == 359
    np.testing.assert_array_equal(masks[:359], 1.0)
    np.testing.assert_array_equal(masks[359:], 0.0)
    real = np.concatenate([b["label"] for b in batches])[masks == 1]
    np.testing.assert_array_equal(real, digits.splits["test"]["label"])
    images = np.concatenate([b["image"] for b in batches])[masks == 1]
    np.testing.assert_array_equal(images, digits.splits["test"]["image"])


def test_eval_batches_exact_multiple_has_no_padding(digits) -> None:
    batches = list(data.eval_batches(digits, "val", 48))  # 144 = 3 * 48
    assert len(batches) == 3
    assert all(b["mask"].sum() == 48 for b in batches)


def test_eval_batches_process_shares_cover_split_once(digits) -> None:
    shares = []
    for index in range(2):
        batches = list(data.eval_batches(digits, "val", 64, process=(index, 2)))
        assert [len(b["mask"]) for b in batches] == [32, 32, 32]  # 144 = 2 * 64 + 16
        shares.append(
            {
                name: np.concatenate([b[name][b["mask"] == 1] for b in batches])
                for name in ("image", "label")
            }
        )
    assert len(shares[0]["label"]) + len(shares[1]["label"]) == 144
    assert not _rows(shares[0]) & _rows(shares[1])
    assert _rows(shares[0]) | _rows(shares[1]) == _rows(digits.splits["val"])


def test_batch_size_larger_than_train_split_is_refused() -> None:
    with pytest.raises(UserError, match=r"data\.batch_size=1295") as error:
        data.load(_data_config(batch_size=1295))
    assert "1294" in str(error.value)


def test_batch_size_equal_to_train_split_is_accepted() -> None:
    dataset = data.load(_data_config(batch_size=1294))
    batch = data.train_batch(dataset, seed=0, epoch=0, step=0, batch_size=1294)
    assert len(batch["label"]) == 1294
