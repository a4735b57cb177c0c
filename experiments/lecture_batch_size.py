"""Lecture claim: for a fixed number of epochs the best SGD learning rate grows with the batch
size; a learning-rate x batch-size grid run through the training loop (research.train.loop)."""

import pathlib
from typing import Any

import ml_collections
import numpy as np

from research.config import base_config, parse_arg
from research.lectures import plots, verdict
from research.models import default_config
from research.sweep import axis, expand, product
from research.train.loop import Diverged, train_and_evaluate


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    quick = parse_arg(arg, quick=False).quick
    config = base_config("lecture_batch_size")
    config.model = default_config("mlp", hidden_sizes=(64,), activation="tanh")
    config.optimizer.name = "sgd"
    config.optimizer.learning_rate = 0.1
    config.data.batch_size = 32
    config.train.num_epochs = 1 if quick else 10
    config.train.keep_checkpoints = 1
    config.study = {
        "learning_rates": (0.03, 0.3) if quick else (0.01, 0.03, 0.1, 0.3, 1.0, 3.0),
        "batch_sizes": (64, 256) if quick else (8, 32, 128, 512),
    }
    return config


def _grid(config: ml_collections.ConfigDict) -> list[dict[str, Any]]:
    return product(
        axis("data.batch_size", list(config.study.batch_sizes)),
        axis("optimizer.learning_rate", list(config.study.learning_rates)),
    )


def sweep() -> list[dict[str, Any]]:
    return product(_grid(get_config()), axis("seed", [0, 1]))


def run(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> dict[str, Any]:
    rates, sizes = list(config.study.learning_rates), list(config.study.batch_sizes)
    accuracy = np.zeros((len(sizes), len(rates)))
    for point in expand(config, _grid(config)):
        row = sizes.index(point.overrides["data.batch_size"])
        column = rates.index(point.overrides["optimizer.learning_rate"])
        try:
            run_dir = workdir / "runs" / point.name
            summary = train_and_evaluate(point.config, run_dir, overwrite=True)
            accuracy[row, column] = summary["best"]["val"]["accuracy"]
        except Diverged:  # too large a rate for this batch size: no accuracy (a gap in the plot)
            accuracy[row, column] = np.nan
    best = [rates[i] for i in np.nanargmax(accuracy, axis=1)]

    fig, axes = plots.grid(1, 2)
    for size, row in zip(sizes, accuracy, strict=True):
        axes[0, 0].plot(rates, row, marker="o", label=f"batch {size}")
    axes[0, 0].set(xscale="log", xlabel="learning rate", ylabel="best validation accuracy")
    axes[0, 0].set_title(f"SGD, {config.train.num_epochs} epochs")
    axes[0, 0].legend()
    axes[0, 1].plot(sizes, best, marker="o")
    axes[0, 1].set(xscale="log", yscale="log", xlabel="batch size", ylabel="best learning rate")
    figure = plots.save(fig, workdir / "batch_size_learning_rate.png")

    held = all(a <= b for a, b in zip(best, best[1:], strict=False)) and best[-1] > best[0]
    return verdict.write(
        workdir,
        title="Lecture 4: batch size and learning rate",
        claim="With a fixed budget of epochs, the best learning rate grows with the batch size "
        "(fewer, less noisy steps can be larger).",
        measured=[
            f"batch {size}: best learning rate {lr:g} (validation accuracy "
            + ", ".join(f"{a:.3f}" if np.isfinite(a) else "diverged" for a in row)
            + f" for learning rates {', '.join(f'{r:g}' for r in rates)})"
            for size, lr, row in zip(sizes, best, accuracy, strict=True)
        ],
        held=held,
        figures=[figure],
        numbers={
            "batch_sizes": sizes,
            "learning_rates": rates,
            "val_accuracy": np.where(np.isnan(accuracy), None, accuracy).tolist(),
        },
    )
