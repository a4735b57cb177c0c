"""The lectures' claims as numbers: learning-rate regimes, Hessian power iteration, convolution
arithmetic, softmax temperature, gradient norms with depth; the studies' training through the
library's steps; and every study's quick run."""

import json
import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from research import backprop as bp
from research import config as config_lib
from research.lectures import fit, gradients, hessian, masked_lm, memory_tasks
from research.lectures.convolution import conv_output_size, flax_conv_shape
from research.lectures.quadratic import (
    REGIMES,
    Descent,
    eta_opt,
    gradient_descent,
    quadratic,
    sign_changes,
)
from research.models import build_model
from research.train.loop import train_and_evaluate
from tests.conftest import ROOT, run_module

STUDIES = sorted(p.stem for p in (ROOT / "experiments").glob("lecture_*.py"))
SLOW_STUDIES = ("lecture_batch_size", "lecture_skip_connections")  # they run the full loop
# Each study's verdict in its quick form (`:quick=true`, seeds fixed). Some claims need the full
# run to show (README, "The lectures' claims", has the full verdicts); a flip either way is a
# change in behaviour that must be looked at.
QUICK_VERDICTS = {
    "lecture_attention": False,
    "lecture_batch_size": False,
    "lecture_convolution": True,
    "lecture_learning_curves": True,
    "lecture_learning_rates": False,  # held on the quadratic, not on the network
    "lecture_protocols": True,
    "lecture_skip_connections": False,
    "lecture_softmax_temperature": True,
}


def _module(name: str):
    return config_lib.load_module(str(ROOT / "experiments" / f"{name}.py"))


def _descend(multiple: float, curvature: float = 3.0, w0: float = 2.0, steps: int = 60):
    loss = quadratic(curvature)
    return gradient_descent(loss, jnp.float32(w0), multiple * eta_opt(loss, w0), steps, lambda w: w)


def test_eta_opt_is_the_inverse_curvature() -> None:
    assert eta_opt(quadratic(4.0, minimum=1.5), 0.3) == pytest.approx(0.25, rel=1e-6)


def test_quadratic_regimes() -> None:
    slow, optimal, oscillating, diverging = (_descend(m) for m in REGIMES.values())
    assert abs(optimal.probes[1]) < 1e-6  # one step lands on the minimum
    assert sign_changes(slow.probes) == 0 and 0 < slow.probes[5] < slow.probes[0]
    assert sign_changes(oscillating.probes) == len(oscillating.probes) - 1  # every step
    assert abs(oscillating.probes[-1]) < 1e-6  # and still converges
    assert diverging.diverged_at is not None and diverging.status.startswith("diverged at step")
    assert all(np.isfinite(diverging.losses)) and len(diverging.losses) == diverging.diverged_at
    assert abs(_descend(2.2).probes[-1]) > abs(_descend(1.8).probes[-1])  # 2 eta_opt is the edge


def test_a_descent_is_cut_where_its_loss_blows_up_or_turns_nan() -> None:
    finite = Descent.of([2.0, 1.0, 0.5], [2.0, 1.0, 0.5], params="end")
    assert finite.status == "finite after 2 steps" and finite.params == "end"
    nan = Descent.of([2.0, 3.0, float("nan"), float("inf")], [0.1, 0.2, 0.3, 0.4], params="end")
    assert nan.status == "diverged at step 2" and nan.params is None
    assert (nan.losses, nan.probes) == ([2.0, 3.0], [0.1, 0.2])
    blown = Descent.of([1.0, 1e6, 2e6], [1.0, 1e6, 2e6], params="end")  # past 1e6 x the start
    assert blown.status == "diverged at step 2" and blown.losses == [1.0, 1e6]


def test_squared_error_is_the_lectures_cost_on_real_rows() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(5, 3)).astype(np.float32)
    targets = np.eye(3, dtype=np.float32)[[0, 2, 1, 1, 0]]
    mask = np.array([1, 1, 1, 1, 0], np.float32)  # the last row is padding
    batch = {"targets": jnp.asarray(targets), "mask": jnp.asarray(mask)}
    loss, sums = fit.SquaredError(scale=0.5).loss_and_metrics(jnp.asarray(logits), batch, {})
    per_example = 0.5 * ((targets - logits) ** 2).sum(-1)  # J = 1/2 sum_k (t_k - z_k)^2
    assert float(sums["count"]) == 4.0
    assert float(loss) == pytest.approx(per_example[:4].mean(), rel=1e-6)
    assert float(sums["loss"]) == pytest.approx(per_example[:4].sum(), rel=1e-6)


@pytest.mark.slow  # it runs the full loop
def test_a_study_trains_exactly_as_the_training_loop(tmp_path: pathlib.Path) -> None:
    config = config_lib.load(str(ROOT / "experiments" / "lecture_softmax_temperature.py"))
    config.train.num_epochs = 1
    summary = train_and_evaluate(config, tmp_path)
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    records = {record["split"]: record for record in map(json.loads, lines)}
    _, trained = fit.train_config(config, evaluate=("val", "test"))
    assert len(trained.losses) == summary["steps"] == 1294 // 32
    assert np.mean(trained.losses) == pytest.approx(records["train"]["loss"], rel=1e-5)
    for split in ("val", "test"):
        for name in ("loss", "accuracy"):
            assert trained.curves[split][-1][name] == pytest.approx(records[split][name], rel=1e-5)


def test_power_iteration_finds_eta_opt_of_a_known_quadratic() -> None:
    eigenvalues = jnp.array([0.5, 2.0, 7.0, 1.0])
    rotation, _ = jnp.linalg.qr(jax.random.normal(jax.random.key(0), (4, 4)))
    matrix = rotation @ jnp.diag(eigenvalues) @ rotation.T
    top = hessian.top_eigenvalue(lambda w: 0.5 * w @ matrix @ w, jnp.ones(4), jax.random.key(1))
    assert 1 / top == pytest.approx(1 / 7.0, rel=0.05)


def test_power_iteration_matches_the_explicit_hessian_of_a_network() -> None:
    k_x, k_t, k_w = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(k_x, (16, 4))
    t = jax.nn.one_hot(jax.random.randint(k_t, (16,), 0, 3), 3)
    params = bp.init(k_w, 4, 5, 3)

    def loss(p):
        return bp.criterion(p, x, t, "tanh", "cross_entropy")

    flat, unravel = jax.flatten_util.ravel_pytree(params)
    explicit = np.linalg.eigvalsh(np.asarray(jax.hessian(lambda v: loss(unravel(v)))(flat)))
    largest = explicit[np.argmax(np.abs(explicit))]
    assert largest == explicit.max()  # the top eigenvalue is also the largest in magnitude
    top = hessian.top_eigenvalue(loss, params, jax.random.key(2), iterations=500, tolerance=1e-8)
    assert top == pytest.approx(float(largest), rel=1e-3)


def test_lecture_convolution_volume() -> None:
    assert flax_conv_shape(32, 3, 5, 6, padding=0, stride=1) == (28, 28, 6)


@pytest.mark.parametrize(
    "width,field,padding,stride",
    [(32, 5, 0, 1), (32, 5, 2, 1), (32, 3, 1, 2), (28, 5, 0, 3), (7, 3, 0, 2), (227, 11, 0, 4)],
)
def test_conv_formula_matches_flax(width: int, field: int, padding: int, stride: int) -> None:
    size = conv_output_size(width, field, padding, stride)
    assert flax_conv_shape(width, 3, field, 4, padding, stride) == (size, size, 4)


def test_softmax_temperature_winner_takes_all() -> None:
    logits = jnp.array([1.0, 2.5, 2.4, -1.0])
    betas = (0.0, 0.5, 1.0, 2.0, 8.0, 32.0, 128.0)
    outputs = _module("lecture_softmax_temperature").softmax_outputs(logits, betas)
    top = outputs.max(axis=1)
    assert top[0] == pytest.approx(0.25)
    assert np.all(np.diff(top) > 0) and top[-1] > 0.999
    assert np.all(np.argmax(outputs[1:], axis=1) == 1)


def test_plain_networks_gradients_degrade_more_with_depth() -> None:
    images = jax.random.normal(jax.random.key(0), (32, 8, 8, 1))
    labels = jax.random.randint(jax.random.key(1), (32,), 0, 10)
    spread = {}
    for residual in (False, True):
        model = build_model("cifar_resnet", depth=32, width=4, residual=residual)
        norms = gradients.layer_gradient_norms(model, images, labels, jax.random.key(2))
        assert len(norms) == 31  # every conv on the main path
        spread[residual] = abs(np.log10(norms[0] / norms[-1]))
    assert spread[False] > spread[True] + 0.5


def test_attention_corpus_adds_the_standard_library_docstrings() -> None:
    topics, both = masked_lm.corpus_words(), masked_lm.corpus_words(docstrings=True)
    assert len(topics) > 50_000 and len(both) > 4 * len(topics)
    assert both[: len(topics)] == topics
    assert "iterable" in both[len(topics) :]  # a word of the docstrings' own text


def test_adding_problem_targets() -> None:
    inputs, targets = memory_tasks.adding_problem(jax.random.key(0), 64, 30)
    markers = np.asarray(inputs[..., 1])
    assert inputs.shape == (64, 30, 2) and np.all(markers.sum(1) == 2)
    assert np.all(markers[:, :15].sum(1) == 1)  # one marked value in each half
    np.testing.assert_allclose(targets, (inputs[..., 0] * markers).sum(1), rtol=1e-6)


@pytest.mark.parametrize(
    "name",
    [pytest.param(s, marks=pytest.mark.slow) if s in SLOW_STUDIES else s for s in STUDIES],
)
def test_quick_study_writes_figures_and_verdict(name: str, tmp_path: pathlib.Path) -> None:
    config = config_lib.load(str(ROOT / "experiments" / f"{name}.py") + ":quick=true")
    result = _module(name).run(config, tmp_path)
    assert result["held"] is QUICK_VERDICTS[name] and result["measured"]
    assert (tmp_path / "verdict.md").read_text().startswith("# Lecture")
    assert json.loads((tmp_path / "verdict.json").read_text())["held"] == result["held"]
    for figure in result["figures"]:
        assert (tmp_path / figure).stat().st_size > 1000


def test_launcher_runs_a_study(tmp_path: pathlib.Path) -> None:
    result = run_module(
        "launch.lectures",
        "--only=softmax_temperature",
        "--quick",
        f"--workdir={tmp_path}",
        "--config.study.betas=(0.0, 1.0, 100.0)",
    )
    assert result.returncode == 0, result.stderr
    assert "Lecture 6: softmax temperature: held" in result.stdout
    assert (tmp_path / "softmax_temperature" / "softmax_temperature.png").exists()
    index = (tmp_path / "lectures.md").read_text()
    assert re.search(r"softmax temperature: \*\*held\*\* \(\d+ s\)", index)
    assert re.search(r"Wall time: \d+ s in all", index)
    assert "](softmax_temperature/softmax_temperature.png)" in index


def test_launcher_refuses_an_unknown_study(tmp_path: pathlib.Path) -> None:
    result = run_module("launch.lectures", "--only=digits_mlp", f"--workdir={tmp_path}")
    assert result.returncode == 2 and "not a lecture study" in result.stderr
    assert "softmax_temperature" in result.stderr
