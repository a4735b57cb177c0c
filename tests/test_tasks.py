"""Tests of research/tasks: classification losses and metric sums, normalisation, augmentation."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from research import data
from research.config import base_config
from research.errors import UserError
from research.tasks import build_task
from research.tasks.classification import ImageClassification, random_crop, random_flip


def _task_config(**changes) -> ml_collections.ConfigDict:
    config = base_config("t").task
    config.update(changes)
    return config


INFO = {"num_classes": 4, "mean": [0.0], "std": [1.0]}


@pytest.fixture(scope="module")
def digits() -> data.Dataset:
    return data.load(base_config("t").data)


@pytest.fixture
def logits_and_labels() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(6, 4)).astype(np.float32) * 3, np.array([0, 1, 2, 3, 1, 2], np.int32)


def test_build_task_from_config() -> None:
    task = build_task(_task_config(loss="squared", augment="crop", crop_padding=2), INFO)
    assert isinstance(task, ImageClassification)
    assert (task.loss, task.augment, task.crop_padding, task.num_classes) == (
        "squared",
        "crop",
        2,
        4,
    )
    assert (task.target, task.mode) == ("accuracy", "max")


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"name": "regression"}, "task.name"),
        ({"loss": "hinge"}, "task.loss='hinge'"),
        ({"augment": "mixup"}, "task.augment='mixup'"),
    ],
)
def test_unknown_task_settings_are_refused(changes, match) -> None:
    with pytest.raises(UserError, match=match):
        build_task(_task_config(**changes), INFO)


def test_cross_entropy_is_minus_log_softmax_of_true_class(logits_and_labels) -> None:
    logits, labels = logits_and_labels
    task = build_task(_task_config(), INFO)
    loss, metrics = task.loss_and_metrics(jnp.asarray(logits), {"label": jnp.asarray(labels)}, {})
    shifted = logits.astype(np.float64) - logits.max(-1, keepdims=True)
    log_softmax = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    expected = -log_softmax[np.arange(6), labels]
    assert float(loss) == pytest.approx(expected.mean(), abs=1e-6)
    assert float(metrics["loss"]) == pytest.approx(expected.sum(), abs=1e-5)
    assert float(metrics["count"]) == 6.0


def test_label_smoothing_mixes_in_the_uniform_target(logits_and_labels) -> None:
    logits, labels = logits_and_labels
    task = build_task(_task_config(label_smoothing=0.2), INFO)
    loss, _ = task.loss_and_metrics(jnp.asarray(logits), {"label": jnp.asarray(labels)}, {})
    shifted = logits.astype(np.float64) - logits.max(-1, keepdims=True)
    log_softmax = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    target = np.full((6, 4), 0.2 / 4) + 0.8 * np.eye(4)[labels]
    assert float(loss) == pytest.approx(-(target * log_softmax).sum(-1).mean(), abs=1e-6)


def test_squared_loss_matches_hand_computation(logits_and_labels) -> None:
    logits, labels = logits_and_labels
    task = build_task(_task_config(loss="squared"), INFO)
    loss, metrics = task.loss_and_metrics(jnp.asarray(logits), {"label": jnp.asarray(labels)}, {})
    z = 1 / (1 + np.exp(-logits.astype(np.float64)))
    t = np.eye(4)[labels]
    expected = 0.5 * ((t - z) ** 2).sum(-1)
    assert float(loss) == pytest.approx(expected.mean(), abs=1e-6)
    assert float(metrics["loss"]) == pytest.approx(expected.sum(), abs=1e-5)


def test_accuracy_sum_counts_argmax_equal_label() -> None:
    logits = jnp.array([[5.0, 0, 0, 0], [0, 5.0, 0, 0], [0, 0, 0, 5.0], [0, 0, 5.0, 0]])
    labels = jnp.array([0, 1, 2, 2])  # rows 0, 1 and 3 are right
    _, metrics = build_task(_task_config(), INFO).loss_and_metrics(logits, {"label": labels}, {})
    assert float(metrics["accuracy"]) == 3.0
    assert float(metrics["count"]) == 4.0


@pytest.mark.parametrize("loss_name", ["cross_entropy", "squared"])
def test_masked_examples_change_neither_loss_nor_sums(logits_and_labels, loss_name) -> None:
    logits, labels = logits_and_labels
    task = build_task(_task_config(loss=loss_name), INFO)
    real_loss, real = task.loss_and_metrics(
        jnp.asarray(logits[:4]), {"label": jnp.asarray(labels[:4])}, {}
    )
    garbage = np.concatenate([logits[:4], np.full((2, 4), 50.0, np.float32)])
    padded_loss, padded = task.loss_and_metrics(
        jnp.asarray(garbage),
        {
            "label": jnp.asarray(labels),
            "mask": jnp.array([1, 1, 1, 1, 0, 0], jnp.float32),
        },
        {},
    )
    assert float(padded_loss) == pytest.approx(float(real_loss), abs=1e-6)
    for name in ("loss", "accuracy", "count"):
        assert float(padded[name]) == pytest.approx(float(real[name]), abs=1e-5)
    assert float(padded["count"]) == 4.0


def test_all_masked_batch_gives_zero_not_nan(logits_and_labels) -> None:
    logits, labels = logits_and_labels
    loss, metrics = build_task(_task_config(), INFO).loss_and_metrics(
        jnp.asarray(logits), {"label": jnp.asarray(labels), "mask": jnp.zeros(6)}, {}
    )
    assert float(loss) == 0.0
    assert [float(metrics[k]) for k in ("loss", "accuracy", "count")] == [0.0, 0.0, 0.0]


def test_normalisation_gives_zero_mean_unit_std_on_training_images(digits) -> None:
    task = build_task(_task_config(), digits.info)
    inputs, aux = task.model_inputs(
        {"image": jnp.asarray(digits.splits["train"]["image"])}, jax.random.key(0), train=False
    )
    assert aux == {}  # classification draws nothing the loss needs
    assert inputs.dtype == jnp.float32
    assert inputs.shape == (1294, 8, 8, 1)
    assert float(inputs.mean()) == pytest.approx(0.0, abs=1e-4)
    assert float(inputs.std()) == pytest.approx(1.0, abs=1e-4)


def test_normalisation_is_per_channel() -> None:
    task = ImageClassification(mean=(10.0, 100.0), std=(2.0, 50.0), num_classes=2)
    images = jnp.broadcast_to(jnp.array([14, 0], jnp.uint8), (1, 2, 2, 2))
    inputs, _ = task.model_inputs({"image": images}, jax.random.key(0), train=False)
    np.testing.assert_allclose(inputs[0, 0, 0], [2.0, -2.0])


def _distinct_images(n: int, size: int = 8) -> np.ndarray:
    """Images with no zero pixel and no repeated value in a row, so a shift is identifiable."""
    rng = np.random.default_rng(1)
    return rng.integers(1, 256, size=(n, size, size, 1)).astype(np.uint8)


def _shift(image: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """out[y, x] = image[y + dy, x + dx], zero outside (what padding then cropping gives)."""
    height, width = image.shape[:2]
    out = np.zeros_like(image)
    for y in range(height):
        for x in range(width):
            if 0 <= y + dy < height and 0 <= x + dx < width:
                out[y, x] = image[y + dy, x + dx]
    return out


def test_random_crop_is_a_pixel_exact_shift_within_padding() -> None:
    padding = 2
    images = _distinct_images(64)
    cropped = np.asarray(random_crop(jnp.asarray(images), jax.random.key(3), padding))
    assert cropped.shape == images.shape and cropped.dtype == np.uint8
    shifts = set()
    for image, out in zip(images, cropped, strict=True):
        matches = [
            (dy, dx)
            for dy in range(-padding, padding + 1)
            for dx in range(-padding, padding + 1)
            if np.array_equal(out, _shift(image, dy, dx))
        ]
        assert len(matches) == 1, matches
        shifts.add(matches[0])
    assert len(shifts) >= 15  # 25 possible offsets, 64 draws: most of them appear


def test_random_crop_same_key_same_output_different_keys_differ() -> None:
    images = jnp.asarray(_distinct_images(16))
    first = random_crop(images, jax.random.key(0), 4)
    np.testing.assert_array_equal(first, random_crop(images, jax.random.key(0), 4))
    assert not np.array_equal(first, random_crop(images, jax.random.key(1), 4))


def test_random_crop_with_zero_padding_is_identity() -> None:
    images = jnp.asarray(_distinct_images(4))
    np.testing.assert_array_equal(random_crop(images, jax.random.key(0), 0), images)


def test_random_flip_mirrors_about_half_left_right() -> None:
    images = _distinct_images(2000, size=4)
    flipped = np.asarray(random_flip(jnp.asarray(images), jax.random.key(0)))
    same = np.all(flipped == images, axis=(1, 2, 3))
    mirrored = np.all(flipped == images[:, :, ::-1], axis=(1, 2, 3))
    assert np.all(same ^ mirrored)  # each image is either untouched or mirrored in width
    assert 900 <= mirrored.sum() <= 1100  # Binomial(2000, 1/2): mean 1000, sd 22
    again = np.asarray(random_flip(jnp.asarray(images), jax.random.key(0)))
    np.testing.assert_array_equal(flipped, again)


def test_train_false_applies_no_augmentation() -> None:
    images = jnp.asarray(_distinct_images(32))
    task = build_task(_task_config(augment="crop_flip", crop_padding=2), INFO)
    plain, _ = task.model_inputs({"image": images}, jax.random.key(0), train=False)
    np.testing.assert_array_equal(plain, np.asarray(images, np.float32))
    augmented, _ = task.model_inputs({"image": images}, jax.random.key(0), train=True)
    assert augmented.shape == plain.shape
    assert not np.array_equal(augmented, plain)


def test_augment_none_leaves_training_inputs_alone() -> None:
    images = jnp.asarray(_distinct_images(8))
    task = build_task(_task_config(augment="none"), INFO)
    trained, _ = task.model_inputs({"image": images}, jax.random.key(0), train=True)
    np.testing.assert_array_equal(trained, np.asarray(images, np.float32))


def test_crop_augmentation_never_flips() -> None:
    images = jnp.asarray(_distinct_images(64, size=6))
    task = build_task(_task_config(augment="crop", crop_padding=0), INFO)
    for seed in range(3):
        trained, _ = task.model_inputs({"image": images}, jax.random.key(seed), train=True)
        np.testing.assert_array_equal(trained, np.asarray(images, np.float32))
