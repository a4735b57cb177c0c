"""Tests of the ResNet experiment files: model sizes, the recipes' key settings, plain vs
residual, random-resized crops, and that digits_resnet learns through the loop's own steps."""

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from research import config as config_lib
from research.models import build_model
from research.tasks.classification import random_resized_crop
from research.train import sharding
from research.train.population import build_population
from research.train.setup import build_setup

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _config(name: str, arg: str | None = None):
    spec = str(ROOT / "experiments" / f"{name}.py") + (f":{arg}" if arg else "")
    return config_lib.load(spec)


def _params(config, num_classes: int, shape: tuple[int, ...]) -> dict:
    kwargs = {k: v for k, v in config.model.items() if k != "name"}
    model = build_model(config.model.name, num_classes=num_classes, **kwargs)
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(shape)))
    return variables["params"]


def _count(tree) -> int:
    return sum(leaf.size for leaf in jax.tree.leaves(tree))


@pytest.mark.parametrize(
    "name, classes, shape, count",
    [
        ("cifar10_resnet20", 10, (1, 32, 32, 3), 272_474),
        ("cifar10_plain20", 10, (1, 32, 32, 3), 269_722),  # minus the 2 projection shortcuts
        ("cifar10_resnet18", 10, (1, 32, 32, 3), 11_173_962),
        ("cifar100_resnet18", 100, (1, 32, 32, 3), 11_220_132),
        ("imagenet_resnet50", 1000, (1, 224, 224, 3), 25_557_032),
    ],
)
def test_experiment_models_have_the_published_sizes(name, classes, shape, count) -> None:
    assert _count(_params(_config(name), classes, shape)) == count


def test_digits_resnet_is_tiny() -> None:
    assert 10_000 < _count(_params(_config("digits_resnet"), 10, (1, 8, 8, 1))) < 100_000


def test_plain20_differs_from_resnet20_only_in_its_shortcuts() -> None:
    residual, plain = _config("cifar10_resnet20"), _config("cifar10_plain20")
    differences = config_lib.differences(json.loads(config_lib.to_json(residual)), plain)
    assert differences == {
        "model.residual": (True, False),
        "name": ("cifar10_resnet20", plain.name),
    }
    with_skips = _params(residual, 10, (1, 32, 32, 3))
    without = _params(plain, 10, (1, 32, 32, 3))
    shapes = lambda tree: {  # noqa: E731
        jax.tree_util.keystr(path): leaf.shape
        for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
    }
    kept = {k: v for k, v in shapes(with_skips).items() if "shortcut" not in k}
    assert kept == shapes(without)


def test_recipes() -> None:
    r18 = _config("cifar10_resnet18")
    assert (r18.model.depth, r18.model.stem, r18.optimizer.name) == (18, "cifar", "nesterov")
    assert (r18.optimizer.learning_rate, r18.optimizer.weight_decay) == (0.1, 5e-4)
    assert (r18.optimizer.schedule, r18.train.num_epochs, r18.task.augment) == (
        "cosine",
        200,
        "crop_flip",
    )
    assert _config("cifar100_resnet18").data.name == "cifar100"
    r50 = _config("imagenet_resnet50")
    assert (r50.model.dtype, r50.model.zero_init_last_bn) == ("bfloat16", True)
    assert (r50.task.augment, r50.task.label_smoothing) == ("resized_crop_flip", 0.1)
    assert (r50.data.batch_size, r50.optimizer.learning_rate) == (256, 0.1)
    assert (r50.optimizer.warmup_epochs, r50.optimizer.weight_decay) == (5.0, 1e-4)
    for name in ("cifar10_resnet20", "cifar10_resnet18", "cifar10_plain20"):
        subset = _config(name, "subset=true")
        assert (subset.data.name, subset.data.path) == ("image_folder", "runs/data/cifar10_subset")


def test_random_resized_crop_is_keyed_and_full_crop_is_identity() -> None:
    images = jnp.asarray(np.random.default_rng(0).integers(0, 256, (4, 12, 10, 3), np.uint8))
    key = jax.random.key(3)
    crop = jax.jit(random_resized_crop, static_argnames=("scale", "ratio"))
    crops = crop(images, key)
    assert crops.shape == images.shape and crops.dtype == jnp.float32
    np.testing.assert_array_equal(crops, crop(images, key))
    assert not np.array_equal(crops, crop(images, jax.random.key(4)))
    whole = crop(images, key, scale=(1.0, 1.0), ratio=(10 / 12, 10 / 12))
    np.testing.assert_allclose(whole, images, atol=1e-3)  # width/height of the whole image


@pytest.mark.slow
def test_digits_resnet_steps_lower_the_loss() -> None:
    config = _config("digits_resnet")
    config.unlock()
    config.optimizer.warmup_epochs = 0.0  # the full learning rate from the first step
    config.lock()
    mesh = sharding.make_mesh(config.mesh)
    with jax.set_mesh(mesh):
        dataset, task, model = build_setup(config)
        population, state = build_population([config], dataset, task, model, mesh, stacked=False)
        batch, active = population.batch_at(0, 0), jnp.ones(1, bool)
        losses = []
        for _ in range(12):
            state, metrics = population.train_step(state, active, batch)
            losses.append(float(metrics["loss"][0] / metrics["count"][0]))
    assert losses[-1] < 0.7 * losses[0], losses
