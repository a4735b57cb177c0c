"""Tests of the MLP and LeNet-5 models and the model registry: shapes, sizes, dtypes, dropout."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from research.errors import UserError
from research.models import MODELS, build_model, default_config
from research.models.lenet import LeNet5
from research.models.mlp import MLP


def _shapes(model, shape) -> dict:
    """Variable shapes without spending compute on initialisation."""
    return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(shape)))["params"]


def _variables(model, shape, seed: int = 0) -> dict:
    """Random variables of the right shapes from numpy: `init` would compile every initialiser."""
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(shape)))
    return jax.tree.map(
        lambda s: jnp.asarray(rng.normal(scale=0.3, size=s.shape).astype(np.float32)), shapes
    )


def _size(tree) -> int:
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


def test_mlp_784_800_10_param_count() -> None:
    model = build_model("mlp", num_classes=10, hidden_sizes=(800,), activation="relu")
    params = _shapes(model, (1, 28, 28, 1))
    assert _size(params) == 784 * 800 + 800 + 800 * 10 + 10 == 636_010
    assert params["Dense_0"]["kernel"].shape == (784, 800)
    assert params["Dense_1"]["kernel"].shape == (800, 10)


def test_deeper_mlp_param_count() -> None:
    model = build_model("mlp", num_classes=3, hidden_sizes=(5, 4))
    assert _size(_shapes(model, (2, 7))) == (7 * 5 + 5) + (5 * 4 + 4) + (4 * 3 + 3)


def test_mlp_forward_matches_the_lecture_formula() -> None:
    model = build_model("mlp", num_classes=3, hidden_sizes=(4,), activation="tanh")
    x = np.random.default_rng(1).normal(size=(5, 2, 3)).astype(np.float32)
    params = _variables(model, x.shape)["params"]
    logits = model.apply({"params": params}, x)
    flat = np.asarray(x).reshape(5, 6)
    hidden = np.tanh(flat @ params["Dense_0"]["kernel"] + params["Dense_0"]["bias"])
    expected = hidden @ params["Dense_1"]["kernel"] + params["Dense_1"]["bias"]
    assert logits.shape == (5, 3) and logits.dtype == jnp.float32
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)


def test_lenet5_on_28x28_param_count_and_flat_features() -> None:
    model = build_model("lenet", num_classes=10, padding=("SAME", "VALID"))
    params = _shapes(model, (1, 28, 28, 1))
    conv1 = 5 * 5 * 1 * 6 + 6
    conv2 = 5 * 5 * 6 * 16 + 16
    dense = (400 * 120 + 120) + (120 * 84 + 84) + (84 * 10 + 10)
    assert _size(params) == conv1 + conv2 + dense == 61_706
    assert params["Conv_0"]["kernel"].shape == (5, 5, 1, 6)
    assert params["Conv_1"]["kernel"].shape == (5, 5, 6, 16)
    assert params["Dense_0"]["kernel"].shape == (5 * 5 * 16, 120)  # 400 flattened features


def test_lenet5_same_same_on_8x8_digits() -> None:
    model = build_model("lenet", num_classes=10, padding=("SAME", "SAME"))
    images = np.random.default_rng(1).uniform(size=(3, 8, 8, 1)).astype(np.float32)
    variables = _variables(model, images.shape)
    assert variables["params"]["Dense_0"]["kernel"].shape == (2 * 2 * 16, 120)  # 8 -> 4 -> 2
    logits = model.apply(variables, images)
    assert logits.shape == (3, 10) and logits.dtype == jnp.float32
    assert np.all(np.isfinite(logits))
    assert not np.allclose(logits[0], logits[1])


def test_lenet5_valid_second_conv_rejects_8x8() -> None:
    """8x8 -> 4x4 after the first pool is smaller than the 5x5 valid kernel."""
    model = build_model("lenet", num_classes=10, padding=("SAME", "VALID"))
    with pytest.raises(Exception):  # noqa: B017 - flax/XLA raise different types per version
        _shapes(model, (1, 8, 8, 1))


@pytest.mark.parametrize(
    "name, kwargs, shape",
    [
        ("mlp", {"hidden_sizes": (16,)}, (4, 8, 8, 1)),
        ("lenet", {"padding": ("SAME", "SAME")}, (4, 8, 8, 1)),
    ],
)
def test_bfloat16_compute_returns_float32_logits(name, kwargs, shape) -> None:
    model = build_model(name, num_classes=10, dtype="bfloat16", **kwargs)
    assert model.dtype == jnp.bfloat16
    x = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(shape)))
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(shapes))  # f32 params
    variables = _variables(model, shape)
    logits = model.apply(variables, x)
    assert logits.dtype == jnp.float32
    full = build_model(name, num_classes=10, **kwargs).apply(variables, x)
    np.testing.assert_allclose(logits, full, rtol=0.1, atol=0.1)  # same net, lower precision
    assert not np.array_equal(logits, full)  # the compute really was in bfloat16


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("mlp", {"hidden_sizes": (64,)}),
        ("lenet", {"padding": ("SAME", "SAME")}),
    ],
)
def test_dropout_only_in_train_mode(name, kwargs) -> None:
    model = build_model(name, num_classes=10, dropout_rate=0.5, **kwargs)
    x = np.random.default_rng(1).normal(size=(4, 8, 8, 1)).astype(np.float32)
    variables = _variables(model, x.shape)
    eval_a = model.apply(variables, x, train=False)
    eval_b = model.apply(variables, x, train=False, rngs={"dropout": jax.random.key(9)})
    np.testing.assert_array_equal(eval_a, eval_b)
    train_a = model.apply(variables, x, train=True, rngs={"dropout": jax.random.key(2)})
    train_a2 = model.apply(variables, x, train=True, rngs={"dropout": jax.random.key(2)})
    train_b = model.apply(variables, x, train=True, rngs={"dropout": jax.random.key(3)})
    np.testing.assert_array_equal(train_a, train_a2)
    assert not np.allclose(train_a, train_b)
    assert not np.allclose(train_a, eval_a)


def test_zero_dropout_train_equals_eval() -> None:
    model = build_model("mlp", num_classes=10, hidden_sizes=(16,))
    x = np.random.default_rng(1).normal(size=(4, 5)).astype(np.float32)
    variables = _variables(model, x.shape)
    np.testing.assert_array_equal(
        model.apply(variables, x, train=True, rngs={"dropout": jax.random.key(2)}),
        model.apply(variables, x, train=False),
    )


@pytest.mark.parametrize("name, cls", [("lenet", LeNet5), ("mlp", MLP)])
def test_default_config_lists_every_hyperparameter(name, cls) -> None:
    config = default_config(name)
    fields = {field.name for field in dataclasses.fields(cls)}
    assert set(config) == {"name"} | (fields - {"parent", "name", "num_classes"})
    assert config.name == name
    assert config.dtype == "float32"
    for field in dataclasses.fields(cls):
        if field.name not in ("parent", "name", "num_classes", "dtype"):
            assert config[field.name] == field.default


def test_default_config_overrides_and_rebuilds() -> None:
    config = default_config("lenet", padding=("SAME", "SAME"), pool="avg")
    assert tuple(config.padding) == ("SAME", "SAME") and config.pool == "avg"
    kwargs = {key: value for key, value in config.items() if key != "name"}
    model = build_model(config.name, num_classes=10, **kwargs)
    assert isinstance(model, LeNet5)
    assert (model.padding, model.pool, model.dtype) == (("SAME", "SAME"), "avg", jnp.float32)


def test_default_config_unknown_field_is_refused() -> None:
    with pytest.raises(UserError, match="no fields") as error:
        default_config("lenet", widht=3)
    assert "widht" in str(error.value) and "dense_sizes" in str(error.value)


def test_build_model_unknown_name_lists_registered_names() -> None:
    with pytest.raises(UserError, match="Unknown model: model.name='lenet7'") as error:
        build_model("lenet7")
    message = str(error.value)
    for registered in ("mlp", "lenet", "resnet"):
        assert registered in message
    assert set(MODELS.names()) >= {"mlp", "lenet"}
    assert ", ".join(MODELS.names()) in message
