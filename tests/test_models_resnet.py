"""Tests for research/models/resnet.py: sizes against published counts, BN state, ablation
switches (plain nets, zero-init, pre-activation), bf16 compute, and that a tiny net trains."""

import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from research.models import MODELS, build_model
from research.models.resnet import BasicBlock, BottleneckBlock, CifarResNet, ResNet


def _init_shapes(model: nn.Module, shape: tuple[int, ...]) -> dict:
    """Variables' shapes and dtypes, without spending compute on initialisation."""
    return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(shape)))


def _size(tree: dict) -> int:
    return sum(leaf.size for leaf in jax.tree.leaves(tree))


def _paths(tree: dict) -> list[str]:
    return [jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_leaves_with_path(tree)]


@pytest.mark.parametrize(
    "depth, torchvision_count",
    [(18, 11_689_512), (34, 21_797_672), (50, 25_557_032), (101, 44_549_160), (152, 60_192_808)],
)
def test_imagenet_param_counts_match_torchvision(depth: int, torchvision_count: int) -> None:
    model = build_model("resnet", depth=depth, num_classes=1000, stem="imagenet")
    assert _size(_init_shapes(model, (1, 224, 224, 3))["params"]) == torchvision_count


def test_cifar_resnet20_param_count() -> None:
    params = _init_shapes(build_model("cifar_resnet", depth=20, num_classes=10), (1, 32, 32, 3))
    params = params["params"]
    # The paper's 0.27M is with option A (parameter-free) shortcuts; option B adds two
    # 1x1 projections with BN: 16*32 + 2*32 + 32*64 + 2*64 = 2,752 parameters.
    projections = {
        k: {n: v for n, v in block.items() if n.startswith("shortcut")}
        for k, block in params.items()
        if "shortcut_conv" in block
    }
    assert sorted(projections) == ["stage1_block0", "stage2_block0"]
    assert _size(projections) == 2_752
    assert _size(params) == 272_474
    assert _size(params) - _size(projections) == 269_722  # option A: "0.27M"


def test_output_shapes_for_both_stems() -> None:
    images = jnp.zeros((2, 64, 64, 3))
    for stem, preact in itertools.product(("imagenet", "cifar"), (False, True)):
        model = ResNet(depth=18, num_classes=7, width=8, stem=stem, preact=preact)
        logits, features = jax.eval_shape(
            lambda m=model: m.init_with_output(
                jax.random.key(0), images, capture_intermediates=True
            )[0:2]
        )
        assert logits.shape == (2, 7) and logits.dtype == jnp.float32
        last_block = features["intermediates"]["stage3_block1"]["__call__"][0]
        # The imagenet stem downsamples 4x before the stages, which downsample 8x more.
        assert last_block.shape == ((2, 2, 2, 64) if stem == "imagenet" else (2, 8, 8, 64))

    digits = jnp.zeros((5, 8, 8, 1))  # scikit-learn digits
    logits = jax.eval_shape(
        lambda: CifarResNet(depth=8, width=8).init_with_output(jax.random.key(0), digits)[0]
    )
    assert logits.shape == (5, 10)
    logits = jax.eval_shape(
        lambda: ResNet(depth=50, width=4, num_classes=3, stem="cifar").init_with_output(
            jax.random.key(0), digits
        )[0]
    )
    assert logits.shape == (5, 3)


def test_batch_stats_change_only_when_training() -> None:
    model = CifarResNet(depth=8, width=8)
    images = jax.random.normal(jax.random.key(1), (4, 8, 8, 1))
    variables = model.init(jax.random.key(0), images)
    assert set(variables) == {"params", "batch_stats"}
    # Mean and variance per channel: stem 8, then 2, 3 (with the projection's) and 3 BNs.
    assert _size(variables["batch_stats"]) == 2 * (8 + 2 * 8 + 3 * 16 + 3 * 32)

    _, eval_state = model.apply(variables, images, train=False, mutable=["batch_stats"])
    unchanged = jax.tree.map(np.array_equal, eval_state["batch_stats"], variables["batch_stats"])
    assert all(jax.tree.leaves(unchanged))

    _, train_state = model.apply(variables, images, train=True, mutable=["batch_stats"])
    changed = jax.tree.map(
        lambda a, b: not np.array_equal(a, b), train_state["batch_stats"], variables["batch_stats"]
    )
    assert all(jax.tree.leaves(changed))


@pytest.mark.parametrize("model_name", ["resnet", "cifar_resnet"])
def test_plain_network_has_no_shortcuts(model_name: str) -> None:
    kwargs = {"depth": 18, "width": 4} if model_name == "resnet" else {"depth": 8, "width": 4}
    images = jax.random.normal(jax.random.key(1), (2, 16, 16, 3))
    residual = build_model(model_name, **kwargs)
    plain = build_model(model_name, residual=False, **kwargs)
    variables = residual.init(jax.random.key(0), images)
    plain_shapes = _init_shapes(plain, images.shape)

    assert not [p for p in _paths(plain_shapes) if "shortcut" in p]
    shortcut_params = {
        k: {n: v for n, v in block.items() if n.startswith("shortcut")}
        for k, block in variables["params"].items()
    }
    assert _size(shortcut_params) > 0
    assert _size(plain_shapes["params"]) == _size(variables["params"]) - _size(shortcut_params)

    # Same weights minus the projections: dropping the skips changes the function.
    plain_variables = {
        collection: {
            k: {n: v for n, v in block.items() if not n.startswith("shortcut")}
            for k, block in tree.items()
        }
        for collection, tree in variables.items()
    }
    assert jax.tree.structure(plain_variables) == jax.tree.structure(plain_shapes)
    difference = jnp.abs(residual.apply(variables, images) - plain.apply(plain_variables, images))
    assert float(difference.max()) > 1e-3


def _block_output(block: nn.Module, x: jnp.ndarray, train: bool) -> tuple[jnp.ndarray, dict]:
    variables = block.init(jax.random.key(0), x)
    out, _ = block.apply(variables, x, train, mutable=["batch_stats"])
    return out, variables


@pytest.mark.parametrize("train", [False, True])
def test_zero_init_last_bn_makes_blocks_shortcut_only(train: bool) -> None:
    x = jax.random.normal(jax.random.key(1), (2, 8, 8, 16))

    # Identity shortcut: post-activation gives relu(x), pre-activation gives x itself.
    out, _ = _block_output(BasicBlock(16, zero_init_last_bn=True), x, train)
    np.testing.assert_array_equal(out, nn.relu(x))
    out, _ = _block_output(BasicBlock(16, zero_init_last_bn=True, preact=True), x, train)
    np.testing.assert_array_equal(out, x)
    out, _ = _block_output(BasicBlock(16), x, train)
    assert not np.allclose(out, nn.relu(x))

    # Projection shortcut (stride 2, 16 -> 4*8 channels): relu(BN(conv1x1(x))).
    block = BottleneckBlock(8, strides=2, zero_init_last_bn=True)
    out, variables = _block_output(block, x, train)
    shortcut = nn.Conv(32, (1, 1), strides=2, use_bias=False).apply(
        {"params": variables["params"]["shortcut_conv"]}, x
    )
    shortcut, _ = nn.BatchNorm(use_running_average=not train, epsilon=1e-5).apply(
        {
            "params": variables["params"]["shortcut_norm"],
            "batch_stats": variables["batch_stats"]["shortcut_norm"],
        },
        shortcut,
        mutable=["batch_stats"],
    )
    assert out.shape == (2, 4, 4, 32)
    np.testing.assert_allclose(out, nn.relu(shortcut), rtol=1e-5, atol=1e-5)


def test_zero_init_last_bn_zeroes_last_scale_in_every_block() -> None:
    params = CifarResNet(depth=8, width=8, zero_init_last_bn=True).init(
        jax.random.key(0), jnp.zeros((1, 8, 8, 1))
    )["params"]
    for stage in range(3):
        block = params[f"stage{stage}_block0"]
        assert not np.any(block["norm1"]["scale"])
        assert np.all(block["norm0"]["scale"] == 1)
    assert np.all(params["stem_norm"]["scale"] == 1)


def test_preact_ordering() -> None:
    params = _init_shapes(CifarResNet(depth=8, width=8, preact=True), (1, 8, 8, 1))["params"]
    # The stem is a bare conv and a final BN-ReLU precedes pooling; projections have no BN.
    assert "stem_norm" not in params and "final_norm" in params
    assert set(params["stage1_block0"]) == {"norm0", "conv0", "norm1", "conv1", "shortcut_conv"}


def test_bfloat16_computes_in_bf16_with_float32_params_and_logits() -> None:
    model = CifarResNet(depth=8, width=8, dtype=jnp.bfloat16)
    images = jax.random.normal(jax.random.key(1), (2, 8, 8, 1))
    variables = model.init(jax.random.key(0), images)
    assert {leaf.dtype for leaf in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}

    logits, state = model.apply(
        variables,
        images,
        train=True,
        mutable=["batch_stats", "intermediates"],
        capture_intermediates=lambda module, _: isinstance(module, nn.Conv | nn.BatchNorm),
    )
    assert logits.dtype == jnp.float32
    activations = jax.tree.leaves(state["intermediates"])
    assert len(activations) == 2 * 9  # 9 convs (stem, 6 in blocks, 2 projections), 9 BNs
    assert {a.dtype for a in activations} == {jnp.dtype(jnp.bfloat16)}
    assert {s.dtype for s in jax.tree.leaves(state["batch_stats"])} == {jnp.dtype(jnp.float32)}


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"depth": 19}, "18, 34, 50, 101, 152"),
        ({"depth": 18, "stem": "tiny"}, "'imagenet', 'cifar'"),
        ({"residual": False, "zero_init_last_bn": True}, "zero_init_last_bn"),
    ],
)
def test_resnet_rejects_bad_configs(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_model("resnet", **kwargs)


@pytest.mark.parametrize("depth", [21, 2, 0])
def test_cifar_resnet_rejects_depth_not_6n_plus_2(depth: int) -> None:
    with pytest.raises(ValueError, match=r"6n\+2 .*20, 32, 44, 56, 110"):
        build_model("cifar_resnet", depth=depth)


def test_registered_names() -> None:
    assert {"resnet", "cifar_resnet"} <= set(MODELS.names())
    assert type(build_model("resnet", depth=34)) is ResNet
    assert type(build_model("cifar_resnet", depth=110)) is CifarResNet


def test_sgd_momentum_steps_lower_the_loss() -> None:
    model = CifarResNet(depth=8, width=8, num_classes=10)
    images = jax.random.normal(jax.random.key(1), (32, 8, 8, 1))
    labels = jax.random.randint(jax.random.key(2), (32,), 0, 10)
    variables = model.init(jax.random.key(0), images)
    optimizer = optax.sgd(0.05, momentum=0.9)
    opt_state = optimizer.init(variables["params"])

    def loss_fn(params: dict, batch_stats: dict) -> tuple[jnp.ndarray, dict]:
        logits, state = model.apply(
            {"params": params, "batch_stats": batch_stats},
            images,
            train=True,
            mutable=["batch_stats"],
        )
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
        return loss, state["batch_stats"]

    @jax.jit
    def step(params: dict, batch_stats: dict, opt_state: optax.OptState) -> tuple:
        (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch_stats)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), batch_stats, opt_state, loss

    params, batch_stats = variables["params"], variables["batch_stats"]
    losses = []
    for _ in range(10):
        params, batch_stats, opt_state, loss = step(params, batch_stats, opt_state)
        losses.append(float(loss))
    assert np.all(np.isfinite(losses))
    assert losses[-1] < 0.7 * losses[0], losses
