"""Lecture claim: a 32x32x3 image convolved with six 5x5x3 filters gives a 28x28x6 volume, and
in general (W - F + 2P) / S + 1; with the activation maps of a trained LeNet on a digit."""

import pathlib
from typing import Any

import ml_collections
import numpy as np

from research.config import base_config, parse_arg
from research.lectures import fit, plots, verdict
from research.lectures.convolution import conv_output_size, flax_conv_shape
from research.models import default_config
from research.sweep import axis

# (W, F, P, S) cases of the lecture's formula, the first being its 32x32x3 example.
CASES = ((32, 5, 0, 1), (32, 5, 2, 1), (32, 3, 1, 2), (28, 5, 0, 3), (7, 3, 0, 2), (8, 5, 2, 1))


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = base_config("lecture_convolution")
    config.model = default_config("lenet", padding=("SAME", "SAME"))  # 8x8 digits stay 8x8
    config.data.batch_size = 32
    config.optimizer.learning_rate = 2e-3
    config.train.num_epochs = 1 if parse_arg(arg, quick=False).quick else 10
    return config


def sweep() -> list[dict[str, Any]]:
    return axis("seed", [0, 1, 2])


def _show_maps(axes_row: np.ndarray, maps: np.ndarray, name: str, first: int = 0) -> None:
    """maps [height, width, channels], one channel per panel from channel `first` on."""
    for offset, ax in enumerate(axes_row):
        ax.imshow(maps[..., first + offset], cmap="magma")
        ax.set_title(f"{name} map {first + offset}", fontsize=8)
        ax.axis("off")


def run(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> dict[str, Any]:
    lecture_shape = flax_conv_shape(32, 3, 5, 6, padding=0, stride=1)
    table = []
    for width, field, padding, stride in CASES:
        formula = conv_output_size(width, field, padding, stride)
        flax_shape = flax_conv_shape(width, 3, field, 6, padding, stride)
        table.append((width, field, padding, stride, formula, flax_shape[0]))

    dataset, trained = fit.train_config(config, evaluate=("test",))
    test_error = 1 - trained.curves["test"][-1]["accuracy"]

    test = dataset.splits["test"]
    image = trained.inputs({"image": test["image"][:1]})
    _, state = trained.model.apply({"params": trained.params}, image, capture_intermediates=True)
    c1 = np.maximum(np.asarray(state["intermediates"]["Conv_0"]["__call__"][0][0]), 0)
    c3 = np.maximum(np.asarray(state["intermediates"]["Conv_1"]["__call__"][0][0]), 0)
    columns = max(c1.shape[-1], 8)
    rows = 1 + 1 + -(-c3.shape[-1] // columns)
    fig, axes = plots.grid(rows, columns, size=(1.3, 1.4))
    for ax in axes.flat:
        ax.axis("off")
    axes[0, 0].imshow(image[0, ..., 0], cmap="gray")
    axes[0, 0].set_title(f"digit {int(test['label'][0])}", fontsize=8)
    _show_maps(axes[1, : c1.shape[-1]], c1, "C1")
    for row in range(2, rows):
        start = (row - 2) * columns
        _show_maps(axes[row, : min(columns, c3.shape[-1] - start)], c3, "C3", start)
    figure = plots.save(fig, workdir / "lenet_activation_maps.png")

    mismatches = [row for row in table if row[4] != row[5]]
    held = lecture_shape == (28, 28, 6) and not mismatches
    return verdict.write(
        workdir,
        title="Lecture 7: convolution arithmetic",
        claim="A 32x32x3 image convolved with six 5x5x3 filters (no padding, stride 1) gives a "
        "28x28x6 activation volume; in general the output width is (W - F + 2P) / S + 1.",
        measured=[
            f"flax nn.Conv on 32x32x3 with six 5x5 filters: {lecture_shape}",
            *(f"W={w} F={f} P={p} S={s}: formula {a}, flax {b}" for w, f, p, s, a, b in table),
            f"trained LeNet (C1 {c1.shape}, C3 {c3.shape} maps shown): test error "
            f"{test_error:.3f} after {config.train.num_epochs} epochs",
        ],
        held=held,
        figures=[figure],
        numbers={"lecture_shape": lecture_shape, "cases": table, "test_error": test_error},
    )
