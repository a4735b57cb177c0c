"""Tests of the sweep report on synthetic run records whose statistics are known by hand."""

import csv
import json
import pathlib
import re
import subprocess
import sys

import ml_collections
import pytest

from research import config as config_lib
from research import report, sweep
from research.errors import UserError

ROOT = pathlib.Path(__file__).resolve().parents[1]
LR, BS, EPOCHS, SEED = "optimizer.learning_rate", "data.batch_size", "train.num_epochs", "seed"
# Best validation accuracy = BASE[(lr, bs)] + SEED_OFFSET[seed]. Over the offsets
# (-0.01, 0, +0.02): mean offset 0.003333, sample std sqrt(4.6667e-4 / 2) = 0.015275.
BASE = {(0.01, 32): 0.80, (0.01, 64): 0.75, (0.1, 32): 0.90, (0.1, 64): 0.85}
SEED_OFFSET = {0: -0.01, 1: 0.0, 2: 0.02}
STD = 0.015275


def base_config() -> ml_collections.ConfigDict:
    """A whole config, as sweep.expand validates each point."""
    config = config_lib.base_config("toy")
    config.optimizer.learning_rate = 0.1
    config.data.batch_size = 32
    config.train.num_epochs = 3
    config.lock()
    return config


def write_point(root, point, best=None, status="finished", metric="accuracy", mode="max"):
    """A run record whose val curve peaks at epoch 2 with `best`; no summary while running."""
    directory = root / point.name
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps(point.config.to_dict()))
    curve = [] if best is None else [best - 0.05, best, best - 0.01]
    rows = [
        {"step": 10 * e, "epoch": e, "split": "val", "loss": 1.0, metric: v, "wall_time": 2.0 * e}
        for e, v in enumerate(curve, start=1)
    ]
    (directory / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    if status in ("finished", "early_stopped"):
        summary = {
            "experiment": "toy",
            "status": status,
            "seed": point.config.seed,
            "steps": 30,
            "epochs": 3,
            "target": {"metric": metric, "mode": mode},
            "best": {"epoch": 2, "step": 20, "val": {metric: best, "loss": 0.5}},
            "test": {metric: best - 0.02, "loss": 0.6},
            "wall_time_s": 6.0,
        }
        (directory / "summary.json").write_text(json.dumps(summary))
    return directory


@pytest.fixture(scope="module")
def grid_dir(tmp_path_factory) -> pathlib.Path:
    """2 lrs x 2 batch sizes x 3 seeds, plus a failed and a still-running fourth seed."""
    root = tmp_path_factory.mktemp("sweep")
    points = sweep.product(
        sweep.axis(LR, [0.01, 0.1]), sweep.axis(BS, [32, 64]), sweep.axis(SEED, [0, 1, 2])
    )
    points += [{LR: 0.1, BS: 32, SEED: 3}, {LR: 0.01, BS: 64, SEED: 3}]
    for point in sweep.expand(base_config(), points):
        seed = point.overrides[SEED]
        if seed == 3:
            directory = write_point(root, point, 0.99 if point.index == 12 else None, "none")
            if point.index == 12:
                (directory / "error.txt").write_text("FloatingPointError: nan loss")
        else:
            write_point(
                root, point, BASE[(point.overrides[LR], point.overrides[BS])] + SEED_OFFSET[seed]
            )
        overrides = {"index": point.index, "name": point.name, "overrides": point.overrides}
        (root / point.name / "sweep_point.json").write_text(json.dumps(overrides))
    (root / "notes").mkdir()  # not a point directory: holds no run record
    report.write_report(root)
    return root


def table_rows(markdown: str) -> list[list[str]]:
    rows = [line.strip("|").split("|") for line in markdown.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in row] for row in rows]


def mean_std(cell: str) -> tuple[float, float]:
    mean, std = re.fullmatch(r"(\S+) ± (\S+)", cell).groups()
    return float(mean), float(std)


def test_results_csv_has_one_row_per_point_with_its_numbers(grid_dir):
    with (grid_dir / "results.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 14
    assert [int(row["index"]) for row in rows] == list(range(14))
    first = rows[0]
    assert first["name"] == "000-lr=0.01,bs=32,seed=0"
    assert (float(first[LR]), int(first[BS]), int(first[SEED])) == (0.01, 32, 0)
    assert float(first["best_val_accuracy"]) == pytest.approx(0.79)
    assert float(first["test_accuracy"]) == pytest.approx(0.77)
    assert (float(first["best_epoch"]), int(first["steps"]), float(first["wall_time_s"])) == (
        2,
        30,
        6.0,
    )
    assert first["status"] == "finished"
    assert rows[12]["status"] == "failed" and rows[12]["test_accuracy"] == ""
    assert rows[13]["status"] == "running/incomplete" and rows[13]["best_val_accuracy"] == ""


def test_report_table_has_mean_and_std_over_seeds_best_first(grid_dir):
    markdown = (grid_dir / "report.md").read_text()
    header, *rows = table_rows(markdown)[:5]
    assert header == [LR, BS, "n", "val accuracy", "test accuracy", "best epoch", "wall time (s)"]
    assert [(float(r[0]), int(r[1]), int(r[2])) for r in rows] == [
        (0.1, 32, 3),
        (0.1, 64, 3),
        (0.01, 32, 3),
        (0.01, 64, 3),
    ]
    for row, base in zip(rows, [0.90, 0.85, 0.80, 0.75], strict=True):
        assert mean_std(row[3]) == pytest.approx((base + 0.003333, STD), abs=1e-4)
        assert mean_std(row[4]) == pytest.approx((base - 0.02 + 0.003333, STD), abs=1e-4)
        assert (float(row[5]), float(row[6])) == (2.0, 6.0)
    assert f"**Best configuration:** {LR}=0.1, {BS}=32: validation accuracy 0.9033 ±" in markdown


def test_failed_and_running_points_are_listed_but_not_averaged(grid_dir):
    markdown = (grid_dir / "report.md").read_text()
    assert "| 012-lr=0.1,bs=32,seed=3 | failed |" in markdown
    assert "| 013-lr=0.01,bs=64,seed=3 | running/incomplete |" in markdown
    assert "14 points (12 finished, 1 failed, 1 running/incomplete)" in markdown


def test_plots_are_written_and_an_unswept_axis_is_noted(grid_dir):
    for name in ("val_vs_lr.png", "val_curves.png"):
        assert (grid_dir / name).read_bytes()[:4] == b"\x89PNG"
    assert not (grid_dir / "val_vs_epochs.png").exists()
    assert (
        "val_vs_epochs.png skipped: train.num_epochs is not swept"
        in (grid_dir / "report.md").read_text()
    )


def test_inferred_sweep_with_a_metric_to_minimise(tmp_path):
    """Without sweep_point.json the swept keys are the config keys that differ; min ranks first."""
    points = sweep.product(sweep.axis(EPOCHS, [2, 4]), sweep.axis(SEED, [0, 1]))
    bits = {(2, 0): 1.60, (2, 1): 1.70, (4, 0): 1.40, (4, 1): 1.44}
    for point in sweep.expand(base_config(), points):
        key = (point.overrides[EPOCHS], point.overrides[SEED])
        write_point(tmp_path, point, bits[key], metric="bits_per_char", mode="min")
    summary = report.write_report(tmp_path)
    assert summary.results.swept_keys == [EPOCHS, SEED]
    assert summary.best.overrides == {EPOCHS: 4}
    assert summary.best.val == pytest.approx((1.42, 0.028284), abs=1e-6)
    assert [g.overrides[EPOCHS] for g in summary.groups] == [4, 2]
    assert (tmp_path / "val_vs_epochs.png").exists() and not (tmp_path / "val_vs_lr.png").exists()
    assert "val_vs_lr.png skipped" in (tmp_path / "report.md").read_text()


def run_cli(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "launch.report", *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_cli_on_an_empty_or_missing_dir_exits_2_without_a_traceback(tmp_path):
    for directory in (tmp_path, tmp_path / "missing"):
        result = run_cli(str(directory))
        assert result.returncode == 2
        assert str(directory) in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_cli_reports_the_best_configuration(grid_dir):
    result = run_cli(str(grid_dir))
    assert result.returncode == 0, result.stderr
    assert f"Best configuration: {LR}=0.1, {BS}=32: val accuracy 0.9033 ± 0.01528 (n=3)" in (
        result.stdout
    )


def one_point(root: pathlib.Path) -> pathlib.Path:
    """A finished point 000-seed=0 under `root`; returns its directory."""
    (point,) = sweep.expand(base_config(), [{SEED: 0}])
    return write_point(root, point, 0.8)


def replace_summary(directory: pathlib.Path, **changes) -> str:
    summary = json.loads((directory / "summary.json").read_text())
    return json.dumps({**summary, **changes})


@pytest.mark.parametrize(
    "file, content, words",
    [
        ("summary.json", lambda d: '{"status": "fin', "summary.json is not valid JSON"),
        ("summary.json", lambda d: "[1, 2]", "summary.json holds '[1, 2]', not a JSON object"),
        ("summary.json", lambda d: replace_summary(d, best=3), "best is 3, not a JSON object"),
        (
            "summary.json",
            lambda d: replace_summary(d, test={"accuracy": "high"}),
            "test.accuracy is 'high', not a number",
        ),
        ("summary.json", lambda d: b"\xff\xfe", "summary.json cannot be read as text"),
        ("sweep_point.json", lambda d: '{"index": "a"}', "index is 'a', not an integer"),
        ("metrics.jsonl", lambda d: '{"step": 1}\n{"ste\n{"step": 2}\n', "line 2 is damaged"),
        ("metrics.jsonl", lambda d: "3\n", "line 1 is damaged ('3')"),
        (
            "metrics.jsonl",
            lambda d: '{"split": "val", "epoch": "two", "accuracy": 0.5}\n',
            "line 1: epoch is 'two', not a number",
        ),
    ],
)
def test_a_damaged_record_is_named_without_a_traceback(tmp_path, file, content, words):
    directory = one_point(tmp_path)
    value = content(directory)
    path = directory / file
    if isinstance(value, bytes):
        path.write_bytes(value)
    else:
        path.write_text(value)
    with pytest.raises(UserError) as error:
        report.write_report(tmp_path)
    assert str(path) in str(error.value) and words in str(error.value)


def test_a_half_written_last_metrics_line_is_skipped(tmp_path):
    directory = one_point(tmp_path)
    (directory / "summary.json").unlink()  # still running: its last line is being written
    with (directory / "metrics.jsonl").open("a") as file:
        file.write('{"step": 40, "epoch": 4, "spl')
    (run,) = report.write_report(tmp_path).results.runs
    assert run.status == report.INCOMPLETE and run.best_val == pytest.approx(0.8)


def test_an_unwritable_report_is_a_user_error(tmp_path):
    one_point(tmp_path)
    (tmp_path / "report.md").mkdir()
    with pytest.raises(UserError, match="Cannot write the report into"):
        report.write_report(tmp_path)


def test_cli_on_a_file_a_run_workdir_or_a_damaged_record_exits_2(tmp_path):
    directory = one_point(tmp_path)
    (directory / "summary.json").write_text("null")
    cases = {
        tmp_path / "file.txt": "is a file, not a directory",
        directory: "It is one run's workdir: pass the directory that holds it",
        tmp_path: "summary.json holds 'null', not a JSON object",
    }
    (tmp_path / "file.txt").write_text("")
    for path, words in cases.items():
        result = run_cli(str(path))
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert words in result.stderr and len(result.stderr.strip().splitlines()) == 1
