"""The tuner: rung arithmetic, search-space checks, same seed same trials, a toy tune that finds
the known learning rate with stopped trials frozen, and a tune killed mid-way that ends alike."""

import json
import subprocess
import sys
import time

import pytest
from conftest import ROOT, metrics_without_timing, run_module

from research import config as config_lib
from research.errors import UserError
from research.train.workdir import lock
from research.tune import draw_trials, rung_epochs, survivors, tune

TINY = {"model.hidden_sizes": (16,), "data.batch_size": 64, "train.num_epochs": 2}
GOOD_LR = 1e-2  # Adam on the tiny digits MLP: 1e-4 hardly moves in 2 epochs, 30 diverges
SEARCH = (
    "{'optimizer.learning_rate': choice([1e-4, 1e-2, 30.0]),"
    " 'optimizer.weight_decay': log(1e-9, 1e-8)}"
)


def _experiment(tmp_path, search: str) -> str:
    """A digits_mlp experiment file whose search() returns `search`."""
    path = tmp_path / "experiment.py"
    path.write_text(
        "from experiments.digits_mlp import get_config  # noqa: F401\n"
        "from research.sweep import choice, linear, log  # noqa: F401\n\n\n"
        f"def search():\n    return {search}\n"
    )
    return str(path)


def _config(spec: str, **overrides):
    config = config_lib.load(spec)
    config.unlock()
    config_lib.apply_overrides(config, {**TINY, **overrides})
    config.lock()
    return config


def test_rungs_stop_the_trials_below_the_top_third_at_each_rung():
    assert rung_epochs(1, 3, 40, trials=27) == [1, 3, 9]  # 27, 9, 3 ranked; 1 goes on
    assert rung_epochs(1, 3, 40, trials=81) == [1, 3, 9, 27]
    assert rung_epochs(2, 2, 9, trials=100) == [2, 4, 8]  # the budget ends first
    assert rung_epochs(5, 3, 5, trials=9) == rung_epochs(1, 3, 40, trials=1) == []
    # Validation accuracy of 9 trials at epochs 1..9; ranked by the best so far at each rung.
    table = {
        "a": [0.50, 0.60, 0.70, 0.71, 0.72, 0.73, 0.74, 0.75, 0.76],
        "b": [0.62, 0.80, 0.81, 0.82, 0.83, 0.84, 0.85, 0.86, 0.87],
        "c": [0.60, 0.61, 0.62, 0.63, 0.64, 0.65, 0.66, 0.67, 0.68],  # ties i, lower loss
        "d": [0.30, 0.30, 0.30, 0.30, 0.30, 0.30, 0.30, 0.30, 0.30],
        "e": [0.61, 0.90, 0.20, 0.20, 0.20, 0.20, 0.20, 0.20, 0.20],  # best so far counts
        "f": [0.10, 0.10, 0.10, 0.10, 0.10, 0.10, 0.10, 0.10, 0.10],
        "g": [0.52, 0.52, 0.52, 0.52, 0.52, 0.52, 0.52, 0.52, 0.99],  # late bloomer: lost
        "h": [0.20, 0.20, 0.20, 0.20, 0.20, 0.20, 0.20, 0.20, 0.20],
        "i": [0.60, 0.60, 0.60, 0.60, 0.60, 0.60, 0.60, 0.60, 0.60],
    }
    alive, stops = list(table), {}
    for epoch in rung_epochs(1, 3, 9, trials=9):
        best = {
            name: {"accuracy": max(table[name][:epoch]), "loss": 1 if name == "i" else 0}
            for name in alive
        }
        kept = survivors(best, 3, "accuracy", "max")
        stops.update({name: epoch for name in alive if name not in kept})
        alive = kept
    assert alive == ["e"]
    assert stops == {"a": 1, "b": 3, "c": 3, "d": 1, "f": 1, "g": 1, "h": 1, "i": 1}
    # At least one goes on; for a loss ("min") the lowest wins.
    assert survivors({"x": {"loss": 2.0}, "y": {"loss": 1.0}}, 3, "loss", "min") == ["y"]


@pytest.mark.parametrize(
    "search, message",
    [
        ("{'optimizer.learnin_rate': log(1e-4, 1e-2)}", r"'optimizer\.learnin_rate'"),
        ("{'data.batch_size': choice([32, 'big'])}", r"'data\.batch_size'"),
        ("{'optimizer.learning_rate': log(1e-2, 1e-2)}", r"'optimizer\.learning_rate'.*low < high"),
        ("{'optimizer.momentum': linear(0.5, 1.5)}", r"'optimizer\.momentum'"),
        ("{'seed': choice([0, 1])}", r"'seed'.*does not tune"),
        ("{'train.num_epochs': choice([5, 10])}", r"'train\.num_epochs'.*does not tune"),
        ("{'optimizer.learning_rate': 0.1}", r"'optimizer\.learning_rate'.*not a distribution"),
        ("{}", r"non-empty dict"),
        ("{'data.batch_size': choice([])}", r"choice\(\[\]\) needs at least one value"),
    ],
)
def test_bad_search_spaces_are_refused_naming_the_key(tmp_path, search, message):
    spec = _experiment(tmp_path, search)
    with pytest.raises(UserError, match=message):
        tune(spec, _config(spec), tmp_path / "tune", trials=3, eta=3, min_epochs=1)
    assert not (tmp_path / "tune").exists()


def test_the_cli_refuses_bad_flags_before_any_compute(tmp_path):
    spec = _experiment(tmp_path, SEARCH)
    result = run_module(
        "launch.tune", f"--config={spec}", f"--workdir={tmp_path / 'tune'}", "--eta=1", timeout=120
    )
    assert result.returncode == 2, result.stderr
    assert "eta >= 2" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "tune").exists()


def test_a_group_size_below_one_is_refused_before_anything_is_written(tmp_path):
    spec, root = _experiment(tmp_path, SEARCH), tmp_path / "tune"
    with pytest.raises(UserError, match=r"--group_size=0: a group trains at least one trial"):
        tune(spec, _config(spec), root, trials=4, eta=2, min_epochs=1, group_size=0)
    assert not root.exists()


def test_a_workdir_holding_a_tune_with_other_settings_is_refused(tmp_path):
    spec, root = _experiment(tmp_path, SEARCH), tmp_path / "tune"
    root.mkdir()
    saved = {"settings": {"spec": spec, "eta": 3, "min_epochs": 1}, "rungs": []}
    (root / "rungs.json").write_text(json.dumps(saved))
    with pytest.raises(UserError, match=r"its config, eta, trials differ"):
        tune(spec, _config(spec), root, trials=4, eta=2, min_epochs=1)
    assert [path.name for path in root.iterdir()] == ["rungs.json"]


def test_the_same_seed_draws_the_same_trials(tmp_path):
    spec = _experiment(
        tmp_path,
        "{'optimizer.learning_rate': log(1e-4, 1e-1), 'data.batch_size': choice([32, 64])}",
    )
    first, again = (draw_trials(spec, _config(spec), 6) for _ in range(2))
    other = draw_trials(spec, _config(spec, seed=1), 6)
    assert [p.overrides for p in first] == [p.overrides for p in again]
    assert [p.overrides for p in first] != [p.overrides for p in other]
    assert all(1e-4 <= p.overrides["optimizer.learning_rate"] <= 1e-1 for p in first)


def test_repeated_draws_are_dropped_and_list_choices_are_checked(tmp_path, capsys):
    spec = _experiment(
        tmp_path,
        "{'optimizer.learning_rate': choice([1e-3, 1e-2]),"
        " 'model.hidden_sizes': choice([[16], [32, 16]])}",
    )
    points = draw_trials(spec, _config(spec), 12)
    drawn = [
        (p.overrides["optimizer.learning_rate"], p.overrides["model.hidden_sizes"]) for p in points
    ]
    assert len(drawn) == len({(lr, tuple(h)) for lr, h in drawn}) <= 4
    assert (
        f"of 12 draws repeat an earlier one; tuning the {len(points)} distinct"
        in capsys.readouterr().out
    )


def test_a_second_tune_of_a_workdir_in_use_is_refused(tmp_path):
    spec, root = _experiment(tmp_path, SEARCH), tmp_path / "tune"
    root.mkdir()
    with lock(root), pytest.raises(UserError, match="in use by another run"):
        tune(spec, _config(spec), root, trials=4, eta=2, min_epochs=1)
    assert not list(root.glob("0*"))  # no trial started


def test_a_damaged_rungs_file_is_named_before_anything_runs(tmp_path):
    spec, root = _experiment(tmp_path, SEARCH), tmp_path / "tune"
    root.mkdir()
    (root / "rungs.json").write_text('{"settings": ')
    with pytest.raises(UserError, match=r"rungs.json' is damaged.*new --workdir"):
        tune(spec, _config(spec), root, trials=4, eta=2, min_epochs=1)


@pytest.mark.slow
def test_a_group_its_data_cannot_build_fails_alone_and_the_tune_goes_on(tmp_path):
    """A batch size larger than the training split fails that group at start-up; its trials
    get an error.txt, the other group is tuned, and a rerun ends at once with the same winner."""
    spec = _experiment(
        tmp_path,
        "{'data.batch_size': choice([64, 4096]), 'optimizer.learning_rate': log(3e-3, 3e-2)}",
    )
    root = tmp_path / "tune"
    best = tune(spec, _config(spec), root, trials=4, eta=2, min_epochs=1)
    failed = sorted(p.parent.name for p in root.glob("*/error.txt"))
    big = sorted(
        p.name
        for p in draw_trials(spec, _config(spec), 4)
        if p.overrides["data.batch_size"] == 4096
    )
    assert failed == big and big and len(big) < 4
    assert "larger than the training split" in (root / failed[0] / "error.txt").read_text()
    assert best["overrides"]["data.batch_size"] == 64 and best["test"]["accuracy"] > 0.5
    again = tune(spec, _config(spec), root, trials=4, eta=2, min_epochs=1)
    assert again["trial"] == best["trial"] and again["test"] == best["test"]


@pytest.fixture(scope="module")
def toy_tune(tmp_path_factory):
    """A tune of 4 trials, eta 2, over 2 epochs (a rung at 1), run once for the tests."""
    tmp_path = tmp_path_factory.mktemp("toy")
    spec = _experiment(tmp_path, SEARCH)
    root = tmp_path / "tune"
    best = tune(spec, _config(spec), root, trials=4, eta=2, min_epochs=1)
    return spec, root, best


@pytest.mark.slow
def test_the_toy_tune_finds_the_known_learning_rate_and_freezes_stopped_trials(toy_tune):
    spec, root, best = toy_tune
    trials = draw_trials(spec, _config(spec), 4)
    rates = [p.overrides["optimizer.learning_rate"] for p in trials]
    assert sorted(rates) == [1e-4, GOOD_LR, GOOD_LR, 30.0]  # what seed 0 draws
    assert best["overrides"]["optimizer.learning_rate"] == GOOD_LR
    assert best["best"]["val"]["accuracy"] > 0.8 and best["test"]["accuracy"] > 0.8
    rungs = json.loads((root / "rungs.json").read_text())["rungs"]
    assert [r["epoch"] for r in rungs] == [1]
    diverged = [p.name for p in trials if p.overrides["optimizer.learning_rate"] == 30.0]
    assert all("diverged" in (root / n / "error.txt").read_text() for n in diverged)
    ranked = [p.name for p in trials if p.name not in diverged]
    assert len(rungs[0]["best_val"]) == len(ranked)  # a diverged trial is never ranked
    assert len(rungs[0]["kept"]) == len(ranked) // 2 == 1
    assert best["trial"] == rungs[0]["kept"][0]
    steps_per_epoch = 1293 // 64  # the digits training split at batch 64
    examples = 0
    for name in ranked:
        summary = json.loads((root / name / "summary.json").read_text())
        stop = next((r["epoch"] for r in rungs if name not in r["kept"]), 2)
        # Frozen where it stopped: no step after its rung, its record ending there, tested.
        assert summary["steps"] == stop * steps_per_epoch, name
        assert summary["status"] == ("finished" if stop == 2 else "early_stopped")
        rows = [json.loads(line) for line in (root / name / "metrics.jsonl").open()]
        assert max(r["epoch"] for r in rows if r["split"] == "val") == stop
        assert rows[-1]["split"] == "test"
        examples += summary["steps"] * 64
    assert best["examples_trained"] == examples


@pytest.mark.slow
def test_trials_trained_one_per_program_reach_the_same_rungs(toy_tune, tmp_path):
    """--group_size=1 (for conv nets on a CPU, where a group costs more per point): every
    program holds one trial, and the tune trains the same steps to the same kind of winner."""
    spec, _, best = toy_tune
    root = tmp_path / "tune"
    alone = tune(spec, _config(spec), root, trials=4, eta=2, min_epochs=1, group_size=1)
    groups = [path.name for path in (root / "groups").iterdir()]
    assert groups and all("-n1-" in name for name in groups), groups
    assert len([name for name in groups if name.startswith("r0-")]) == 4
    assert alone["overrides"]["optimizer.learning_rate"] == GOOD_LR
    assert alone["examples_trained"] == best["examples_trained"]
    assert [r["epoch"] for r in alone["rungs"]] == [r["epoch"] for r in best["rungs"]]
    with pytest.raises(UserError, match=r"its group_size differ"):
        tune(spec, _config(spec), root, trials=4, eta=2, min_epochs=1)


@pytest.mark.slow
def test_the_report_and_a_command_that_trains_the_winner(toy_tune):
    from research.tune_report import write_report

    spec, root, best = toy_tune
    report = write_report(root).read_text()
    assert best["trial"] in report and best["command"] in report
    assert (root / "tune_curves.png").stat().st_size > 0
    assert (root / "tune_learning_rate.png").stat().st_size > 0
    assert f"--config.optimizer.learning_rate={GOOD_LR!r}" in best["command"]
    assert "--config.train.num_epochs=2" in best["command"]  # the tune's own flags too


@pytest.mark.slow
def test_a_tune_killed_after_its_first_rung_ends_as_an_uninterrupted_one(toy_tune, tmp_path):
    spec, done, best = toy_tune
    root = tmp_path / "tune"
    command = [
        sys.executable, "-m", "launch.tune", f"--config={spec}", f"--workdir={root}",
        "--trials=4", "--eta=2", "--min_epochs=1",
        *(f"--config.{key}={value!r}" for key, value in TINY.items()),
    ]  # fmt: skip
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL)
    try:
        deadline = time.time() + 600
        while not _decided(root) and process.poll() is None and time.time() < deadline:
            time.sleep(0.2)
    finally:
        process.kill()
        process.wait(timeout=60)
    assert _decided(root) and not (root / "best.json").exists()
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    again = json.loads((root / "best.json").read_text())
    assert {**again, "seconds": 0} == {**best, "seconds": 0}
    assert (root / "rungs.json").read_text() == (done / "rungs.json").read_text()
    for trial in draw_trials(spec, _config(spec), 4):
        if (done / trial.name / "metrics.jsonl").exists():
            assert metrics_without_timing(root / trial.name) == metrics_without_timing(
                done / trial.name
            )


def _decided(root) -> bool:
    """Whether the tune in `root` has decided its first rung."""
    path = root / "rungs.json"
    return path.exists() and bool(json.loads(path.read_text())["rungs"])
