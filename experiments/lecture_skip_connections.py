"""Lecture claim: without skip connections deep networks' gradients degrade with depth and they
train worse (plain vs residual CIFAR ResNets of depth 8, 20, 56 on digits); an LSTM keeps a
memory a vanilla RNN loses as the adding problem's sequences grow from 10 to 200 steps."""

import pathlib
from typing import Any

import jax
import ml_collections
import numpy as np

from research.config import base_config, parse_arg
from research.lectures import fit, gradients, memory_tasks, plots, verdict
from research.models import build_model, default_config
from research.sweep import axis, expand, product
from research.train.loop import train_and_evaluate


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    quick = parse_arg(arg, quick=False).quick
    config = base_config("lecture_skip_connections")
    config.model = default_config("cifar_resnet", width=4 if quick else 8)
    config.data.batch_size = 64
    config.optimizer.learning_rate = 2e-3
    config.train.num_epochs = 1 if quick else 4
    config.train.keep_checkpoints = 1
    config.study = {
        "depths": (8,) if quick else (8, 20, 56),
        "lengths": (10,) if quick else (10, 50, 100, 200),
        "rnn_steps": 10 if quick else 1500,
        "rnn_hidden_size": 32,
        "rnn_learning_rate": 3e-3,
        "rnn_batch_size": 32 if quick else 64,
    }
    return config


def sweep() -> list[dict[str, Any]]:
    return axis("seed", [0, 1, 2])


def _resnets(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> dict[str, Any]:
    """Gradient norms at init and test accuracy after the budget, per (depth, residual)."""
    x, y = fit.digits()["train"]
    points = expand(
        config,
        product(
            axis("model.depth", list(config.study.depths)), axis("model.residual", [False, True])
        ),
    )
    norms, accuracy = {}, {}
    for point in points:
        key = (point.config.model.depth, point.config.model.residual)
        model = build_model(
            "cifar_resnet", **{k: v for k, v in point.config.model.items() if k != "name"}
        )
        norms[key] = gradients.layer_gradient_norms(
            model,
            x[: config.data.batch_size],
            y[: config.data.batch_size],
            jax.random.key(config.seed),
        )
        summary = train_and_evaluate(point.config, workdir / "runs" / point.name, overwrite=True)
        accuracy[key] = summary["test"]["accuracy"]
    return {"norms": norms, "accuracy": accuracy}


def run(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> dict[str, Any]:
    resnets = _resnets(config, workdir)
    norms, accuracy = resnets["norms"], resnets["accuracy"]
    depths = list(config.study.depths)
    spread = {key: float(np.log10(n[0] / n[-1])) for key, n in norms.items()}
    rnn_optimizer = config.optimizer.copy_and_resolve_references()
    rnn_optimizer.learning_rate = config.study.rnn_learning_rate
    rnn_optimizer.grad_clip_norm = 1.0  # one exploding step of a recurrent net ends no run
    memory = {
        (cell, length): memory_tasks.train_adding(
            cell,
            length,
            rnn_optimizer,
            steps=config.study.rnn_steps,
            hidden_size=config.study.rnn_hidden_size,
            batch_size=config.study.rnn_batch_size,
            seed=config.seed,
        )[0]
        for cell in ("rnn", "lstm")
        for length in config.study.lengths
    }

    fig, axes = plots.grid(1, len(depths))
    for ax, depth in zip(axes[0], depths, strict=True):
        for residual in (False, True):
            ax.plot(norms[depth, residual], marker=".", label="residual" if residual else "plain")
        ax.set(yscale="log", xlabel="layer (input first)", ylabel="||dJ/dW|| at init")
        ax.set_title(f"depth {depth}")
        ax.legend()
    gradient_figure = plots.save(fig, workdir / "gradient_norms.png")
    fig, axes = plots.grid(1, 2)
    for residual in (False, True):
        label = "residual" if residual else "plain"
        axes[0, 0].plot(depths, [accuracy[d, residual] for d in depths], marker="o", label=label)
    axes[0, 0].set(
        xlabel="depth", ylabel="test accuracy", title=f"{config.train.num_epochs} epochs"
    )
    for cell in ("rnn", "lstm"):
        lengths = list(config.study.lengths)
        axes[0, 1].plot(lengths, [memory[cell, t] for t in lengths], marker="o", label=cell)
    axes[0, 1].axhline(memory_tasks.BASELINE_MSE, color="gray", linestyle=":", label="predict 1")
    axes[0, 1].set(xlabel="sequence length", ylabel="test MSE", title="adding problem")
    for ax in axes.flat:
        ax.legend()
    accuracy_figure = plots.save(fig, workdir / "depth_and_memory.png")

    deepest, longest = depths[-1], config.study.lengths[-1]
    gradients_held = abs(spread[deepest, False]) > abs(spread[deepest, True])
    training_held = accuracy[deepest, True] >= accuracy[deepest, False]
    memory_held = memory["lstm", longest] < memory["rnn", longest]
    return verdict.write(
        workdir,
        title="Lecture 5: vanishing gradients and skip connections",
        claim="Gradient norms at initialisation degrade across the layers of a deep plain network "
        "but not of a residual one, and the residual one trains better at depth; an LSTM "
        "solves a long-range memory task a vanilla RNN cannot as the sequence grows.",
        measured=[
            *(
                f"depth {d} {'residual' if r else 'plain'}: first/last layer gradient norm "
                f"10^{spread[d, r]:.2f}, test accuracy {accuracy[d, r]:.3f}"
                for d in depths
                for r in (False, True)
            ),
            *(
                f"adding problem, length {t}: test MSE rnn {memory['rnn', t]:.4f}, lstm "
                f"{memory['lstm', t]:.4f} (predicting 1: {memory_tasks.BASELINE_MSE:.4f})"
                for t in config.study.lengths
            ),
        ],
        held=gradients_held and training_held and memory_held,
        figures=[gradient_figure, accuracy_figure],
        numbers={
            "log10_first_over_last": {f"{d}_{r}": s for (d, r), s in spread.items()},
            "test_accuracy": {f"{d}_{r}": a for (d, r), a in accuracy.items()},
            "adding_mse": {f"{c}_{t}": m for (c, t), m in memory.items()},
        },
        note=f"Gradient imbalance {'held' if gradients_held else 'did not hold'}, training at "
        f"depth {'held' if training_held else 'did not hold'}, memory "
        f"{'held' if memory_held else 'did not hold'}. With batch normalisation the plain "
        "networks' gradients grow toward the input rather than vanish (a positive exponent).",
    )
