"""Lecture claim: on a small training set an over-parameterised MLP's test error exceeds its
training error, validation error tracks test error, and its minimum is where to stop."""

import dataclasses
import pathlib
from typing import Any

import ml_collections
import numpy as np

from research import data as data_lib
from research.config import base_config, parse_arg
from research.lectures import fit, plots, verdict
from research.models import default_config
from research.sweep import axis


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    quick = parse_arg(arg, quick=False).quick
    config = base_config("lecture_learning_curves")
    # About 35k weights for 100 training patterns.
    config.model = default_config("mlp", hidden_sizes=(64,) if quick else (512,))
    config.optimizer.name = "sgd"
    config.optimizer.learning_rate = 0.05
    config.data.batch_size = 10
    config.train.num_epochs = 5 if quick else 300
    config.study = {"train_size": 50 if quick else 100}
    return config


def sweep() -> list[dict[str, Any]]:
    return axis("seed", [0, 1, 2])


def run(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> dict[str, Any]:
    dataset = data_lib.load(config.data)
    small = {k: v[: config.study.train_size] for k, v in dataset.splits["train"].items()}
    dataset = dataclasses.replace(dataset, splits={**dataset.splits, "train": small})
    _, trained = fit.train_config(config, dataset, evaluate=("train", "val", "test"))
    curves = {
        split: 1 - np.array([metrics["accuracy"] for metrics in values])
        for split, values in trained.curves.items()
    }
    best = int(np.argmin(curves["val"]))  # the first minimum: stop as early as possible
    epochs = np.arange(1, config.train.num_epochs + 1)

    fig, axes = plots.grid(1, 1, size=(7, 4.5))
    ax = axes[0, 0]
    for split, values in curves.items():
        ax.plot(epochs, values, label=f"{split} error")
    ax.axvline(
        best + 1, color="gray", linestyle="--", label=f"validation minimum (epoch {best + 1})"
    )
    ax.set(xlabel="epoch", ylabel="error rate", xscale="log")
    ax.set_title(f"MLP {tuple(config.model.hidden_sizes)} on {config.study.train_size} digits")
    ax.legend()
    figure = plots.save(fig, workdir / "learning_curves.png")

    gap = curves["test"][-1] - curves["train"][-1]
    tracking = float(np.corrcoef(curves["val"], curves["test"])[0, 1])
    early, late = curves["test"][best], curves["test"][-1]
    held = gap > 0 and tracking > 0.8
    return verdict.write(
        workdir,
        title="Lecture 1: learning curves",
        claim="Test error ends above training error, and validation error tracks test error, "
        "so stopping at the validation minimum is a sound choice.",
        measured=[
            f"after {len(epochs)} epochs: train error {curves['train'][-1]:.3f}, validation "
            f"{curves['val'][-1]:.3f}, test {curves['test'][-1]:.3f} (gap {gap:.3f})",
            f"correlation of validation and test error over epochs: {tracking:.3f}",
            f"early stopping at the validation minimum (epoch {best + 1}, val "
            f"{curves['val'][best]:.3f}): test error {early:.3f}; training on: {late:.3f}",
        ],
        held=held,
        figures=[figure],
        numbers={
            **{f"{split}_error": values.tolist() for split, values in curves.items()},
            "best_epoch": best + 1,
            "val_test_correlation": tracking,
        },
        note="Early stopping " + ("helped" if early < late else "did not help") + " here.",
    )
