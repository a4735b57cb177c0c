"""Lecture claim: softmax(beta z) tends to "winner takes all" as beta grows (run with
`python -m launch.lecture --config=experiments/lecture_softmax_temperature.py`)."""

import pathlib
from typing import Any

import jax
import ml_collections
import numpy as np

from research.config import base_config, parse_arg
from research.lectures import fit, plots, verdict
from research.models import default_config
from research.sweep import axis


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = base_config("lecture_softmax_temperature")
    config.model = default_config("mlp", hidden_sizes=(32,))  # its logits on a test digit
    config.data.batch_size = 32
    config.optimizer.learning_rate = 3e-3
    config.train.num_epochs = 1 if parse_arg(arg, quick=False).quick else 5
    config.study = {"betas": (0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)}
    return config


def sweep() -> list[dict[str, Any]]:
    return axis("seed", [0, 1, 2])


def softmax_outputs(logits: jax.Array, betas: tuple[float, ...]) -> np.ndarray:
    """softmax(beta z) for each beta: [len(betas), classes]."""
    return np.stack([np.asarray(jax.nn.softmax(beta * logits)) for beta in betas])


def run(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> dict[str, Any]:
    dataset, trained = fit.train_config(config)
    test = dataset.splits["test"]
    image, label = trained.inputs({"image": test["image"][:1]}), int(test["label"][0])
    logits = trained.model.apply({"params": trained.params}, image)[0]
    betas = tuple(config.study.betas)
    outputs = softmax_outputs(logits, betas)
    top = outputs.max(axis=1)
    entropy = np.maximum(-np.sum(outputs * np.log(np.maximum(outputs, 1e-30)), axis=1), 0.0)
    winners = set(np.argmax(outputs[1:], axis=1).tolist())

    fig, axes = plots.grid(1, 2)
    shown = [0, len(betas) // 3, 2 * len(betas) // 3, len(betas) - 1]
    for offset, i in enumerate(shown):
        axes[0, 0].bar(
            np.arange(10) + 0.2 * offset - 0.3, outputs[i], 0.2, label=f"beta={betas[i]}"
        )
    axes[0, 0].set(xlabel="class k", ylabel="softmax output", xticks=range(10))
    axes[0, 0].set_title(f"a test digit (label {label})")
    axes[0, 0].legend()
    axes[0, 1].plot(betas, top, marker="o", label="max_k output")
    axes[0, 1].plot(betas, entropy / np.log(10), marker="o", label="entropy / ln 10")
    axes[0, 1].set(xscale="symlog", xlabel="beta", title="winner takes all")
    axes[0, 1].legend()
    figure = plots.save(fig, workdir / "softmax_temperature.png")

    monotone = bool(np.all(np.diff(top) >= -1e-7))
    held = monotone and top[0] == min(top) and top[-1] > 0.99
    return verdict.write(
        workdir,
        title="Lecture 6: softmax temperature",
        claim="As beta grows, softmax(beta z) puts all its mass on the largest z_k "
        "(winner takes all); at beta = 0 it is uniform.",
        measured=[
            f"max output {top[0]:.3f} at beta=0 (uniform is 0.100), {top[-1]:.4f} at "
            f"beta={betas[-1]:g}; increases monotonically: {monotone}",
            f"entropy falls from {entropy[0]:.3f} to {entropy[-1]:.4f} nats",
            f"argmax over beta > 0: {sorted(winners)} (label {label}); temperature never "
            "changes the winner, only how much mass it takes",
        ],
        held=held,
        figures=[figure],
        numbers={"betas": betas, "max_output": top.tolist(), "entropy": entropy.tolist()},
    )
