"""ResNets of He et al.: ImageNet ResNet-18..152 (v1.5) and the CIFAR ResNet-6n+2 family.

Both registered models are built from the same blocks and trunk, so the switches studied in
experiments (pre-activation, no skip connections, zero-init, bf16) mean the same thing in each.
"""

from collections.abc import Sequence
from typing import Any, ClassVar

import flax.linen as nn
import jax.numpy as jnp

from research.checks import Check, integer, one_of
from research.models import DTYPE, MODELS

# Blocks per stage, keyed by depth (He et al. 2016, table 1).
IMAGENET_STAGE_SIZES: dict[int, tuple[int, ...]] = {
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
    152: (3, 8, 36, 3),
}
STEMS = ("imagenet", "cifar")

# torchvision's init: He normal on the output fan of each conv.
_conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def _conv(features: int, kernel: int, strides: int, dtype: Any, name: str) -> nn.Conv:
    pad = kernel // 2  # symmetric, as in the paper and torchvision ("SAME" pads 0/1 at stride 2)
    return nn.Conv(
        features,
        (kernel, kernel),
        strides=strides,
        padding=[(pad, pad), (pad, pad)],
        use_bias=False,
        kernel_init=_conv_init,
        dtype=dtype,
        param_dtype=jnp.float32,
        name=name,
    )


def _norm(train: bool, dtype: Any, name: str, zero_scale: bool = False) -> nn.BatchNorm:
    # Momentum and epsilon as in torchvision (its momentum 0.1 is flax's 0.9).
    return nn.BatchNorm(
        use_running_average=not train,
        momentum=0.9,
        epsilon=1e-5,
        scale_init=nn.initializers.zeros if zero_scale else nn.initializers.ones,
        dtype=dtype,
        param_dtype=jnp.float32,
        name=name,
    )


class _Block(nn.Module):
    """A residual block: a branch of convs (subclasses give its shape) plus a shortcut.

    Post-activation (v1): conv-BN-ReLU ... conv-BN, add shortcut, ReLU.
    Pre-activation (He et al. 2016, "Identity mappings"): BN-ReLU-conv ..., add shortcut.
    """

    filters: int
    strides: int = 1
    preact: bool = False
    residual: bool = True
    zero_init_last_bn: bool = False
    dtype: Any = jnp.float32

    expansion: ClassVar[int]

    def branch(self) -> list[tuple[int, int, int]]:
        """The branch's convs as (kernel size, features, stride)."""
        raise NotImplementedError

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        convs = self.branch()
        last = len(convs) - 1
        out_features = self.filters * self.expansion
        # Option B of He et al. 2016: an identity shortcut unless the shape changes, then a
        # 1x1 conv projection (+ BN in the post-activation block).
        project = self.strides != 1 or x.shape[-1] != out_features

        def norm(i: int, y: jnp.ndarray) -> jnp.ndarray:
            zero = i == last and self.zero_init_last_bn
            return _norm(train, self.dtype, f"norm{i}", zero_scale=zero)(y)

        def conv(i: int, y: jnp.ndarray) -> jnp.ndarray:
            kernel, features, strides = convs[i]
            return _conv(features, kernel, strides, self.dtype, f"conv{i}")(y)

        if self.preact:
            # Under zero_init_last_bn the last BN's scale and bias both start at zero, so the
            # branch still outputs zero at init. The projection reads the pre-activated input.
            y = nn.relu(norm(0, x))
            shortcut = x
            if self.residual and project:
                shortcut = _conv(out_features, 1, self.strides, self.dtype, "shortcut_conv")(y)
            y = conv(0, y)
            for i in range(1, last + 1):
                y = conv(i, nn.relu(norm(i, y)))
            return y + shortcut if self.residual else y

        y = x
        for i in range(last + 1):
            y = norm(i, conv(i, y))
            if i < last:
                y = nn.relu(y)
        if not self.residual:
            return nn.relu(y)
        shortcut = x
        if project:
            shortcut = _conv(out_features, 1, self.strides, self.dtype, "shortcut_conv")(x)
            shortcut = _norm(train, self.dtype, "shortcut_norm")(shortcut)
        return nn.relu(y + shortcut)


class BasicBlock(_Block):
    """Two 3x3 convs (ResNet-18/34 and the CIFAR family)."""

    expansion: ClassVar[int] = 1

    def branch(self) -> list[tuple[int, int, int]]:
        return [(3, self.filters, self.strides), (3, self.filters, 1)]


class BottleneckBlock(_Block):
    """1x1 reduce, 3x3, 1x1 expand (x4); v1.5 strides in the 3x3 conv, not the first 1x1."""

    expansion: ClassVar[int] = 4

    def branch(self) -> list[tuple[int, int, int]]:
        return [(1, self.filters, 1), (3, self.filters, self.strides), (1, 4 * self.filters, 1)]


class _ResNet(nn.Module):
    """Shared trunk: stem, stages that double the filters and halve the resolution, pooled head."""

    num_classes: int = 1000
    width: int = 64
    preact: bool = False
    residual: bool = True
    zero_init_last_bn: bool = False
    dtype: Any = jnp.float32

    checks: ClassVar[dict[str, Check]] = {
        "width": integer(1),
        "zero_init_last_bn": Check(
            "false when model.residual is false (every block would output zero)",
            lambda value, config: config.model.residual or not value,
        ),
        "dtype": DTYPE,
    }

    def layout(self) -> tuple[type[_Block], Sequence[int], str]:
        """(block class, blocks per stage, stem) for this model's configuration."""
        raise NotImplementedError

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.zero_init_last_bn and not self.residual:
            raise ValueError("zero_init_last_bn=True with residual=False makes every block zero")
        self.layout()  # fail at construction on a bad depth or stem, not at the first step

    @nn.compact
    def __call__(self, images: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        block, stage_sizes, stem = self.layout()
        x = images.astype(self.dtype)
        if stem == "imagenet":
            x = _conv(self.width, 7, 2, self.dtype, "stem_conv")(x)
        else:
            x = _conv(self.width, 3, 1, self.dtype, "stem_conv")(x)
        if not self.preact:  # pre-activation nets normalise in the first block instead
            x = nn.relu(_norm(train, self.dtype, "stem_norm")(x))
        if stem == "imagenet":
            x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=[(1, 1), (1, 1)])

        for stage, num_blocks in enumerate(stage_sizes):
            for i in range(num_blocks):
                x = block(
                    filters=self.width * 2**stage,
                    strides=2 if stage > 0 and i == 0 else 1,
                    preact=self.preact,
                    residual=self.residual,
                    zero_init_last_bn=self.zero_init_last_bn,
                    dtype=self.dtype,
                    name=f"stage{stage}_block{i}",
                )(x, train)
        if self.preact:
            x = nn.relu(_norm(train, self.dtype, "final_norm")(x))

        # Pool and classify in float32: the head is tiny and the logits feed a softmax.
        x = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
        return nn.Dense(self.num_classes, dtype=jnp.float32, name="head")(x)


@MODELS.register("resnet")
class ResNet(_ResNet):
    """ImageNet ResNet-18/34 (basic blocks) and 50/101/152 (bottlenecks), v1.5.

    stem="cifar" swaps the 7x7/2 conv and max-pool for one 3x3/1 conv, for small images.
    """

    depth: int = 50
    stem: str = "imagenet"

    checks: ClassVar[dict[str, Check]] = {
        **_ResNet.checks,
        "depth": one_of(*IMAGENET_STAGE_SIZES),
        "stem": one_of(*STEMS),
    }

    def layout(self) -> tuple[type[_Block], Sequence[int], str]:
        if self.depth not in IMAGENET_STAGE_SIZES:
            raise ValueError(
                f"resnet depth must be one of {sorted(IMAGENET_STAGE_SIZES)}, got {self.depth}"
            )
        if self.stem not in STEMS:
            raise ValueError(f"resnet stem must be one of {list(STEMS)}, got {self.stem!r}")
        block = BasicBlock if self.depth < 50 else BottleneckBlock
        return block, IMAGENET_STAGE_SIZES[self.depth], self.stem


@MODELS.register("cifar_resnet")
class CifarResNet(_ResNet):
    """CIFAR ResNet of He et al. 2016, section 4.2: 6n+2 layers in 3 stages of n basic blocks.

    Depth 20/32/44/56/110 are the paper's; depth 8 (n=1) with a small width is a smoke-test net.
    """

    depth: int = 20
    num_classes: int = 10
    width: int = 16

    checks: ClassVar[dict[str, Check]] = {
        **_ResNet.checks,
        "depth": Check(
            "6n+2 with n >= 1 (e.g. 8, 20, 32, 44, 56, 110)",
            lambda value, config: integer(8).ok(value, config) and (value - 2) % 6 == 0,
        ),
    }

    def layout(self) -> tuple[type[_Block], Sequence[int], str]:
        n, remainder = divmod(self.depth - 2, 6)
        if remainder or n < 1:
            raise ValueError(
                f"cifar_resnet depth must be 6n+2 with n >= 1 (e.g. 20, 32, 44, 56, 110), "
                f"got {self.depth}"
            )
        return BasicBlock, (n, n, n), "cifar"
