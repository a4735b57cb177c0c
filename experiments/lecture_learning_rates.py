"""Lecture claim: with eta_opt = 1 / J''(w), gradient descent is slow below eta_opt, converges in
one step at it, oscillates but converges up to 2 eta_opt and diverges beyond; on a quadratic and
on an MLP whose eta_opt comes from the largest Hessian eigenvalue (power iteration)."""

import pathlib
from typing import Any

import jax
import ml_collections
import numpy as np

from research.config import base_config, parse_arg
from research.lectures import fit, hessian, plots, verdict
from research.lectures.quadratic import (
    REGIMES,
    Descent,
    eta_opt,
    gradient_descent,
    quadratic,
    sign_changes,
)
from research.models import build_model, default_config
from research.sweep import axis


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    quick = parse_arg(arg, quick=False).quick
    config = base_config("lecture_learning_rates")
    config.model = default_config("mlp", hidden_sizes=(32,))
    config.optimizer.name = "sgd"  # full-batch gradient descent; eta is set by each regime
    config.data.batch_size = 300 if quick else 1294  # the full-batch training subset
    config.train.num_epochs = 10 if quick else 200  # gradient steps on the network
    config.study = {
        "curvature": 4.0,
        "w0": 1.0,
        "quadratic_steps": 40,
        # Multiples of eta_opt = 1 / lambda_max for the network, past 2 to find where it breaks.
        "network_multiples": (0.5, 1.0, 1.5, 2.5, 4.0, 16.0),
    }
    return config


def sweep() -> list[dict[str, Any]]:
    return axis("seed", [0, 1, 2])


def _quadratic_part(config: ml_collections.ConfigDict) -> dict[str, Any]:
    loss = quadratic(config.study.curvature)
    eta = eta_opt(loss, config.study.w0)
    return {
        name: gradient_descent(
            loss,
            np.float32(config.study.w0),
            multiple * eta,
            config.study.quadratic_steps,
            probe=lambda w: w,
        )
        for name, multiple in REGIMES.items()
    } | {"eta_opt": eta}


def run(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> dict[str, Any]:
    quad = _quadratic_part(config)
    x, y = fit.digits(flat=True)["train"]
    x, y = x[: config.data.batch_size], y[: config.data.batch_size]
    batch = {"inputs": x, "targets": jax.nn.one_hot(y, 10)}
    model = build_model("mlp", hidden_sizes=tuple(config.model.hidden_sizes), num_classes=10)
    init_key, power_key = jax.random.split(jax.random.key(config.seed))
    params = model.init(init_key, x[:1])["params"]
    task = fit.SquaredError(scale=0.5)  # the lecture's J = 1/2 sum_k (t_k - z_k)^2, z linear

    def loss(p):
        """J averaged over the patterns, as a function of the parameters alone."""
        return task.loss_and_metrics(model.apply({"params": p}, x), batch, {})[0]

    def descend(eta: float) -> Descent:
        """Full-batch gradient descent from `params` at `eta` through the library's steps."""
        optimizer = config.optimizer.copy_and_resolve_references()
        optimizer.learning_rate = eta
        trained = fit.train(
            model,
            task,
            optimizer,
            lambda epoch, step: batch,
            steps_per_epoch=config.train.num_epochs,
            num_epochs=1,
            seed=config.seed,
            params=params,
        )
        losses = [*trained.losses, float(loss(trained.params))]
        return Descent.of(losses, losses, trained.params)

    top = hessian.top_eigenvalue(loss, params, power_key)
    multiples = tuple(config.study.network_multiples)
    net = {m: descend(m / top) for m in multiples}
    # Where the run ended, not where it started: sharpness falls as the weights move.
    top_after = {
        m: hessian.top_eigenvalue(loss, d.params, power_key)
        for m, d in net.items()
        if d.diverged_at is None
    }

    fig, axes = plots.grid(1, 2)
    for name, multiple in REGIMES.items():
        axes[0, 0].plot(quad[name].probes, marker="o", label=f"{name}: eta = {multiple} eta_opt")
    for multiple, descent in net.items():
        axes[0, 1].plot(descent.losses, label=f"eta = {multiple:g} eta_opt ({descent.status})")
    axes[0, 0].set(xlabel="step", ylabel="w - w*", yscale="symlog", ylim=(-1e3, 1e3))
    axes[0, 0].set_title(f"J = {config.study.curvature:g}/2 w^2, eta_opt = {quad['eta_opt']:.3f}")
    axes[0, 1].set(xlabel="step", ylabel="training loss J", yscale="log")
    axes[0, 1].set_title(f"MLP on digits, lambda_max = {top:.3f}, eta_opt = {1 / top:.3f}")
    for ax in axes.flat:
        ax.legend(fontsize=7)
    figure = plots.save(fig, workdir / "learning_rate_regimes.png")

    w0 = config.study.w0
    quad_held = (
        abs(quad["optimal"].probes[1]) < 1e-6
        and abs(quad["slow"].probes[-1]) < abs(w0)
        and sign_changes(quad["slow"].probes) == 0
        and sign_changes(quad["oscillating"].probes) >= 2
        and abs(quad["oscillating"].probes[-1]) < abs(w0)
        and quad["diverging"].diverged_at is not None
    )
    start = net[multiples[0]].losses[0]
    rises = {m: int(np.sum(np.diff(d.losses) > 0)) for m, d in net.items()}
    net_held = all(
        d.diverged_at is None and d.losses[-1] < start if m < 2 else d.diverged_at is not None
        for m, d in net.items()
    )
    return verdict.write(
        workdir,
        title="Lecture 2: learning-rate regimes",
        claim="eta < eta_opt converges slowly, eta = eta_opt in one step (on a quadratic), "
        "eta_opt < eta < 2 eta_opt oscillates and converges, eta > 2 eta_opt diverges; "
        "eta_opt = 1 / J'' (the largest Hessian eigenvalue for a network).",
        measured=[
            f"quadratic J''={config.study.curvature:g}: eta_opt = {quad['eta_opt']:.4f}; "
            f"|w - w*| after one step at eta_opt: {abs(quad['optimal'].probes[1]):.1e}",
            *(
                f"quadratic, {name} ({REGIMES[name]} eta_opt): final w - w* "
                f"{quad[name].probes[-1]:.3g}, sign changes {sign_changes(quad[name].probes)}, "
                f"{quad[name].status}"
                for name in REGIMES
            ),
            f"MLP {tuple(config.model.hidden_sizes)} on {len(x)} digits, full batch: "
            f"lambda_max = {top:.4f} (power iteration on HVPs), eta_opt = {1 / top:.4f}",
            *(
                f"MLP, eta = {m:g} eta_opt: loss {start:.4f} -> {d.losses[-1]:.4f}, rose in "
                f"{rises[m]} of {len(d.losses) - 1} steps, {d.status}"
                + (
                    f"; lambda_max at the end {top_after[m]:.4f}, so eta = "
                    f"{m * top_after[m] / top:.2f} / lambda_max there"
                    if m in top_after
                    else ""
                )
                for m, d in net.items()
            ),
        ],
        held=quad_held and net_held,
        figures=[figure],
        numbers={
            "eta_opt_quadratic": quad["eta_opt"],
            "lambda_max": top,
            "quadratic_final": {name: quad[name].probes[-1] for name in REGIMES},
            "network_final_loss": {m: d.losses[-1] for m, d in net.items()},
            "network_loss_rises": rises,
            "network_diverged_at": {m: d.diverged_at for m, d in net.items()},
            "network_lambda_max_at_end": top_after,
        },
        note=f"Quadratic regimes {'held' if quad_held else 'did not hold'}; on the network "
        f"(converge below 2 eta_opt, diverge above) {'held' if net_held else 'did not hold'}: "
        "eta_opt comes from lambda_max at initialisation; the runs between 2 and 4 eta_opt "
        "converge because lambda_max falls as the weights move (lambda_max at the end).",
    )
