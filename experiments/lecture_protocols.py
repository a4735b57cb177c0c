"""Lecture claim: stochastic and online backpropagation (research/backprop.py) reach a given
error in far fewer pattern presentations than batch backpropagation; wall time measured too."""

import pathlib
from typing import Any

import jax
import ml_collections
import numpy as np

from research import backprop as bp
from research.config import base_config, parse_arg
from research.lectures import fit, plots, verdict
from research.models import default_config
from research.sweep import axis


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    quick = parse_arg(arg, quick=False).quick
    config = base_config("lecture_protocols")
    config.model = default_config("mlp", hidden_sizes=(32,), activation="sigmoid")
    config.task.loss = "cross_entropy"
    config.optimizer.name = "sgd"
    config.optimizer.learning_rate = 0.1  # eta, the same for every protocol
    config.data.batch_size = 1  # stochastic and online present one pattern per update
    config.train.num_epochs = 2 if quick else 30
    # Batch learning makes one update per epoch, so it gets more (cheaper) epochs.
    config.study = {"batch_epochs": 20 if quick else 1500, "target_error": 0.1}
    return config


def sweep() -> list[dict[str, Any]]:
    return axis("seed", [0, 1, 2])


def _first_reaching(history: list[bp.EpochRecord], target: float) -> bp.EpochRecord | None:
    return next((record for record in history if record.train_error <= target), None)


def run(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> dict[str, Any]:
    splits = fit.digits(flat=True)
    (x, labels), (x_val, val_labels) = splits["train"], splits["val"]
    t, t_val = jax.nn.one_hot(labels, 10), jax.nn.one_hot(val_labels, 10)
    init_key, order_key = jax.random.split(jax.random.key(config.seed))
    params = bp.init(init_key, x.shape[1], config.model.hidden_sizes[0], 10)
    network = {"activation": config.model.activation, "cost": config.task.loss}
    eta = config.optimizer.learning_rate
    histories = {}
    for protocol, epoch_fn in bp.PROTOCOLS.items():
        epoch_fn(params, x, t, eta, order_key, **network)  # compile before the clock starts
        epochs = config.study.batch_epochs if protocol == "batch" else config.train.num_epochs
        _, histories[protocol] = bp.train(
            params, x, t, eta=eta, key=order_key, protocol=protocol, max_epochs=epochs,
            x_val=x_val, t_val=t_val, **network,
        )  # fmt: skip

    fig, axes = plots.grid(1, 2)
    for protocol, history in histories.items():
        errors = [record.train_error for record in history]
        axes[0, 0].plot([r.presentations for r in history], errors, label=protocol)
        axes[0, 1].plot([r.time for r in history], errors, label=protocol)
    for ax, xlabel in zip(axes[0], ("pattern presentations", "wall time (s)"), strict=True):
        ax.axhline(config.study.target_error, color="gray", linestyle=":")
        ax.set(xlabel=xlabel, ylabel="training error", xscale="log", yscale="log")
        ax.legend()
    figure = plots.save(fig, workdir / "training_protocols.png")

    target = config.study.target_error
    reached = {p: _first_reaching(h, target) for p, h in histories.items()}
    measured = [
        f"{protocol}: {h[-1].updates} updates over {h[-1].presentations} presentations in "
        f"{h[-1].time:.2f} s; final training error {h[-1].train_error:.3f}, validation "
        f"{h[-1].val_error:.3f}; training error <= {target} "
        + (
            f"after {reached[protocol].presentations} presentations, {reached[protocol].time:.3f} s"
            if reached[protocol]
            else "never reached"
        )
        for protocol, h in histories.items()
    ]
    batch = reached["batch"].presentations if reached["batch"] else np.inf
    held = all(reached[p] and reached[p].presentations < batch for p in ("stochastic", "online"))
    return verdict.write(
        workdir,
        title="Lecture 3: training protocols",
        claim="With the same eta, stochastic and online backpropagation (one pattern per "
        "update) reach a given training error with far fewer pattern presentations than batch "
        "backpropagation (one update per epoch).",
        measured=measured,
        held=held,
        figures=[figure],
        numbers={
            p: {
                "presentations_to_target": r.presentations if r else None,
                "seconds_to_target": r.time if r else None,
                "final_train_error": histories[p][-1].train_error,
            }
            for p, r in reached.items()
        },
    )
