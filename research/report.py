"""Summarises a sweep directory (a run record per point) into results.csv, report.md and plots.

Reads only run records and writes only into the sweep directory; it parses no flags, prints nothing.
"""

import csv
import dataclasses
import json
import pathlib
import re
import statistics
from typing import Any

from matplotlib.figure import Figure

from research.config import flatten
from research.errors import UserError
from research.sweep import ABBREVIATIONS, SEED_KEY, describe, group_key

INCOMPLETE = "running/incomplete"
FAILED = "failed"
COMPLETE = ("finished", "early_stopped")  # statuses whose best validation metric is final
LR_KEY, EPOCHS_KEY = "optimizer.learning_rate", "train.num_epochs"
_RECORD_FILES = ("config.json", "metrics.jsonl", "summary.json", "sweep_point.json", "error.txt")


@dataclasses.dataclass(frozen=True)
class Target:
    """The metric that ranks configurations, and whether higher ("max") or lower is better."""

    metric: str
    mode: str

    def rank(self, value: float) -> float:
        """Sort key that puts the best value first."""
        return -value if self.mode == "max" else value


@dataclasses.dataclass(frozen=True)
class Run:
    """What the report needs from one point directory; None where the record does not say."""

    name: str
    index: int | None
    status: str
    swept: dict[str, Any]
    best_val: float | None
    best_epoch: float | None
    test: float | None
    steps: int | None
    wall_time_s: float | None
    val_curve: list[tuple[float, float]]  # (epoch, target metric) of every validation row

    @property
    def complete(self) -> bool:
        return self.status in COMPLETE and self.best_val is not None


@dataclasses.dataclass(frozen=True)
class Results:
    experiment: str
    target: Target
    swept_keys: list[str]
    runs: list[Run]


@dataclasses.dataclass(frozen=True)
class Group:
    """Replicates (points differing only in seed); statistics use the completed ones."""

    overrides: dict[str, Any]
    runs: list[Run]

    def _stats(self, field: str) -> tuple[float | None, float]:
        values = [
            getattr(r, field) for r in self.runs if r.complete and getattr(r, field) is not None
        ]
        if not values:
            return None, 0.0
        return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0

    @property
    def n(self) -> int:
        return sum(run.complete for run in self.runs)

    @property
    def val(self) -> tuple[float | None, float]:
        """Mean and sample standard deviation (ddof=1) of the best validation metric."""
        return self._stats("best_val")

    @property
    def test(self) -> tuple[float | None, float]:
        return self._stats("test")


@dataclasses.dataclass(frozen=True)
class Report:
    results: Results
    groups: list[Group]  # best first; groups with no completed point last
    best: Group | None
    files: list[pathlib.Path]
    notes: list[str]


# The record fields the report reads, by type: a damaged record is a message naming the file
# and the field, never a traceback. The target metric's own values are checked where read.
NUMBER = (int, float)
SUMMARY_FIELDS = {
    ("experiment",): str,
    ("status",): str,
    ("target",): dict,
    ("target", "metric"): str,
    ("target", "mode"): str,
    ("best",): dict,
    ("best", "val"): dict,
    ("best", "epoch"): NUMBER,
    ("test",): dict,
    ("steps",): int,
    ("wall_time_s",): NUMBER,
}
POINT_FIELDS = {("index",): int, ("overrides",): dict}
TYPE_NAMES = {str: "a string", dict: "a JSON object", int: "an integer", NUMBER: "a number"}
REPAIR = "Repair or delete it, or move that point's directory out of the sweep directory."


def _field(record: dict | None, where: str, keys: tuple[str, ...], kinds: type | tuple) -> Any:
    """record[keys[0]][keys[1]]..., None where absent; another type is a UserError at `where`."""
    value = record
    for depth, key in enumerate(keys):
        if value is None:
            return None
        if not isinstance(value, dict):
            name = ".".join(keys[:depth])
            raise UserError(f"{where}: {name} is {value!r}, not a JSON object. {REPAIR}")
        value = value.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, kinds)):
        expected = TYPE_NAMES[kinds]
        raise UserError(f"{where}: {'.'.join(keys)} is {value!r}, not {expected}. {REPAIR}")
    return value


def _read_text(path: pathlib.Path) -> str | None:
    """The file's text, None where absent; unreadable bytes name the file."""
    if not path.exists():
        return None
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"{path} cannot be read as text ({error}). {REPAIR}") from None


def _read_json(path: pathlib.Path, fields: dict[tuple[str, ...], Any] | None = None) -> Any:
    """A record file's JSON object (None where absent), with `fields` of the right types."""
    text = _read_text(path)
    if text is None:
        return None
    try:
        record = json.loads(text)
    except json.JSONDecodeError as error:
        raise UserError(f"{path} is not valid JSON ({error}). {REPAIR}") from None
    if not isinstance(record, dict):
        raise UserError(f"{path} holds {text.strip()[:40]!r}, not a JSON object. {REPAIR}")
    for keys, kinds in (fields or {}).items():
        _field(record, str(path), keys, kinds)
    return record


def _read_metrics(path: pathlib.Path) -> list[dict[str, Any]]:
    """One JSON object per line; a last line without its newline (a running point halfway
    through writing it) is skipped, any other damaged line names the file and line."""
    text = _read_text(path) or ""
    lines = text.splitlines()
    rows = []
    for number, line in enumerate(lines, start=1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines) and not text.endswith("\n"):
                break
            row = None
        if not isinstance(row, dict):
            raise UserError(f"{path}, line {number} is damaged ({line[:60]!r}). {REPAIR}")
        rows.append(row)
    return rows


def _target(summaries: list[dict], metrics: list[list[dict]]) -> Target:
    """The runs' own target; without a summary yet, accuracy (max) if logged, else loss (min)."""
    for summary in summaries:
        if summary and (summary.get("target") or {}).get("metric"):
            target = Target(summary["target"]["metric"], summary["target"].get("mode") or "max")
            if target.mode not in ("max", "min"):
                raise UserError(f"Target mode {target.mode!r} in a summary.json; use max or min.")
            return target
    logged = any("accuracy" in row for rows in metrics for row in rows if row.get("split") == "val")
    return Target("accuracy", "max") if logged else Target("loss", "min")


def _order(keys: list[str]) -> list[str]:
    """The common keys in a fixed order, then the rest alphabetically, the seed last."""
    known = [key for key in ABBREVIATIONS if key in keys and key != SEED_KEY]
    rest = sorted(key for key in keys if key not in ABBREVIATIONS)
    return known + rest + ([SEED_KEY] if SEED_KEY in keys else [])


def _swept_keys(configs: list[dict | None], sweep_points: list[dict | None]) -> list[str]:
    """The recorded overrides when every point has them; else the config keys that differ."""
    if all(sweep_points):
        return _order(list({key: 0 for p in sweep_points for key in p.get("overrides") or {}}))
    present = [config for config in configs if config]
    keys = {key for config in present for key in config}
    return _order(
        [key for key in keys if len({json.dumps(c.get(key)) for c in present if key in c}) > 1]
    )


def load_results(directory: str | pathlib.Path) -> Results:
    """Reads every point directory under `directory` (a sub-directory holding a run record)."""
    root = pathlib.Path(directory)
    if not root.is_dir():
        state = "is a file, not a directory" if root.exists() else "does not exist"
        raise UserError(
            f"Sweep directory {str(root)!r} {state}. Pass the directory a sweep wrote: it holds "
            "one sub-directory per point, each with config.json, metrics.jsonl and summary.json."
        )
    dirs = sorted(d for d in root.iterdir() if any((d / f).exists() for f in _RECORD_FILES))
    if not dirs:
        single = any((root / f).exists() for f in _RECORD_FILES)
        raise UserError(
            f"Sweep directory {str(root)!r} holds no point directories (sub-directories with "
            "config.json, metrics.jsonl, summary.json or sweep_point.json). "
            + (
                "It is one run's workdir: pass the directory that holds it and its siblings."
                if single
                else "Pass the directory a sweep wrote, or wait until its first point has started."
            )
        )
    configs = [_read_json(d / "config.json") for d in dirs]
    configs = [flatten(config) if config else None for config in configs]
    summaries = [_read_json(d / "summary.json", SUMMARY_FIELDS) for d in dirs]
    sweep_points = [_read_json(d / "sweep_point.json", POINT_FIELDS) for d in dirs]
    metrics = [_read_metrics(d / "metrics.jsonl") for d in dirs]
    target = _target(summaries, metrics)
    keys = _swept_keys(configs, sweep_points)
    records = zip(dirs, configs, summaries, sweep_points, metrics, strict=True)
    runs = [_run(target, keys, *record) for record in records]
    runs.sort(key=lambda run: (run.index is None, run.index or 0, run.name))
    experiment = next((s["experiment"] for s in summaries if s and "experiment" in s), None)
    experiment = experiment or next((c["name"] for c in configs if c and "name" in c), root.name)
    return Results(str(experiment), target, keys, runs)


def _curve(metric: str, path: pathlib.Path, rows: list[dict]) -> list[tuple[float, float]]:
    """(epoch, metric) of every validation row, each value checked to be a number."""
    curve = []
    for number, row in enumerate(rows, start=1):  # only a last line is ever skipped
        where = f"{path}, line {number}"
        value = _field(row, where, (metric,), NUMBER)
        if _field(row, where, ("split",), str) == "val" and value is not None:
            curve.append((float(_field(row, where, ("epoch",), NUMBER) or 0), float(value)))
    return curve


def _run(target, keys, directory, config, summary, sweep_point, metrics) -> Run:
    overrides = (sweep_point or {}).get("overrides") or {}
    swept = {key: (config or {}).get(key, overrides.get(key)) for key in keys}
    curve = _curve(target.metric, directory / "metrics.jsonl", metrics)
    summary_path = str(directory / "summary.json")
    best_val = _field(summary, summary_path, ("best", "val", target.metric), NUMBER)
    test = _field(summary, summary_path, ("test", target.metric), NUMBER)
    best_epoch = None
    if best_val is not None:
        best_epoch = summary["best"].get("epoch")
    elif curve:  # best so far of a point still running (or one that died)
        best_epoch, best_val = min(curve, key=lambda point: target.rank(point[1]))
    if (directory / "error.txt").exists():
        status = FAILED
    else:
        status = (summary.get("status") or "finished") if summary else INCOMPLETE
    index = (sweep_point or {}).get("index")
    if index is None and (match := re.match(r"\d+", directory.name)):
        index = int(match.group())
    last, where = (metrics or [{}])[-1], f"{directory / 'metrics.jsonl'}, line {len(metrics)}"
    summary = summary or {}
    return Run(
        name=directory.name,
        index=index,
        status=status,
        swept=swept,
        best_val=best_val,
        best_epoch=best_epoch,
        test=test,
        steps=summary.get("steps", _field(last, where, ("step",), int)),
        wall_time_s=summary.get("wall_time_s", _field(last, where, ("wall_time",), NUMBER)),
        val_curve=curve,
    )


def group_results(results: Results) -> list[Group]:
    """Groups replicates over seeds, best mean first (by the target's mode)."""
    groups: dict[tuple, list[Run]] = {}
    for run in results.runs:
        groups.setdefault(group_key(run.swept), []).append(run)
    built = [
        Group({k: v for k, v in runs[0].swept.items() if k != SEED_KEY}, runs)
        for runs in groups.values()
    ]
    return sorted(built, key=lambda g: (g.n == 0, results.target.rank(g.val[0]) if g.n else 0))


def _number(value: Any) -> str:
    return "" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


def _mean_std(stats: tuple[float | None, float], n: int) -> str:
    mean, std = stats
    return "" if mean is None else f"{mean:.4g} ± {std:.4g}" if n > 1 else f"{mean:.4g}"


def write_csv(results: Results, path: pathlib.Path) -> None:
    """One row per point, full precision, for further analysis elsewhere."""
    metric = results.target.metric
    columns = ["name", "index", "status", *results.swept_keys]
    columns += [f"best_val_{metric}", "best_epoch", f"test_{metric}", "steps", "wall_time_s"]
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(columns)
        for r in results.runs:
            values = [r.name, r.index, r.status, *r.swept.values(), r.best_val, r.best_epoch]
            writer.writerow(
                ["" if v is None else v for v in [*values, r.test, r.steps, r.wall_time_s]]
            )


def _markdown(results: Results, groups: list[Group], best: Group | None, notes: list[str]) -> str:
    metric, keys = results.target.metric, [k for k in results.swept_keys if k != SEED_KEY]
    counts: dict[str, int] = {}
    for run in results.runs:
        counts[run.status] = counts.get(run.status, 0) + 1
    statuses = ", ".join(f"{n} {status}" for status, n in counts.items())
    lines = [
        f"# Sweep report: {results.experiment}",
        "",
        f"{len(results.runs)} points ({statuses}) in {len(groups)} configurations. Target: best "
        f"validation {metric} ({results.target.mode}). Values are mean ± sample standard "
        f"deviation over seeds of completed points ({' or '.join(COMPLETE)}); n counts them.",
        "",
    ]
    if best:
        config = ", ".join(f"{k}={_number(v)}" for k, v in best.overrides.items()) or "the default"
        lines.append(
            f"**Best configuration:** {config}: validation {metric} "
            f"{_mean_std(best.val, best.n)}, test {metric} {_mean_std(best.test, best.n)} "
            f"(n={best.n})."
        )
    else:
        lines.append("**Best configuration:** none yet; no point has completed.")
    header = [*keys, "n", f"val {metric}", f"test {metric}", "best epoch", "wall time (s)"]
    lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for g in groups:
        done = [r for r in g.runs if r.complete]
        epochs = [r.best_epoch for r in done if r.best_epoch is not None]
        epoch = statistics.fmean(epochs) if epochs else None
        wall = [r.wall_time_s for r in done if r.wall_time_s is not None]
        cells = [*(_number(g.overrides[k]) for k in keys), str(g.n)]
        cells += [_mean_std(g.val, g.n), _mean_std(g.test, g.n), _number(epoch)]
        cells.append(_number(statistics.fmean(wall) if wall else None))
        lines.append("| " + " | ".join(cells) + " |")
    pending = [run for run in results.runs if not run.complete]
    if pending:
        lines += ["", "## Points not in the statistics", "", "| point | status |", "|---|---|"]
        lines += [f"| {run.name} | {run.status} |" for run in pending]
    lines += ["", "## Plots"]
    for note in notes:
        lines += ["", note]
    return "\n".join(lines) + "\n"


def _plot_against(results: Results, groups: list[Group], key: str, path: pathlib.Path) -> bool:
    """Best validation metric against `key`, one line per combination of the other keys."""
    lines: dict[tuple, list[Group]] = {}
    for g in groups:
        if g.n and isinstance(g.overrides.get(key), int | float):
            other = tuple((k, v) for k, v in g.overrides.items() if k != key)
            lines.setdefault(other, []).append(g)
    if not lines:
        return False
    figure = Figure(figsize=(6, 4), layout="constrained")
    axes = figure.subplots()
    for other, members in lines.items():
        members.sort(key=lambda g: g.overrides[key])
        axes.errorbar(
            [g.overrides[key] for g in members],
            [g.val[0] for g in members],
            yerr=[g.val[1] for g in members],
            marker="o",
            capsize=3,
            label=describe(dict(other)) or "all",
        )
    if key == LR_KEY:
        axes.set_xscale("log")
    axes.set_xlabel(key)
    axes.set_ylabel(f"best val {results.target.metric} (mean ± std over seeds)")
    if len(lines) > 1:
        axes.legend()
    figure.savefig(path, dpi=100)
    return True


def _plot_curves(results: Results, groups: list[Group], path: pathlib.Path) -> bool:
    """Every point's validation curve, coloured by configuration so seeds share a colour."""
    if not any(run.val_curve for run in results.runs):
        return False
    figure = Figure(figsize=(7, 4.5), layout="constrained")
    axes = figure.subplots()
    for number, g in enumerate(groups):
        color = f"C{number % 10}"
        label = describe(g.overrides) or "all"
        for run in (run for run in g.runs if run.val_curve):
            epochs, values = zip(*run.val_curve, strict=True)
            style = "-" if run.complete else ":"  # a failed or running point is dotted
            axes.plot(epochs, values, style, color=color, alpha=0.8, label=label)
            label = None
    axes.set_xlabel("epoch")
    axes.set_ylabel(f"val {results.target.metric}")
    if len(groups) <= 12:
        axes.legend(fontsize="small")
    figure.savefig(path, dpi=100)
    return True


def write_report(directory: str | pathlib.Path) -> Report:
    """Writes results.csv, report.md and the plots into `directory`; returns what it found."""
    root = pathlib.Path(directory)
    results = load_results(root)
    groups = group_results(results)
    best = groups[0] if groups and groups[0].n else None
    try:
        return _write_files(root, results, groups, best)
    except OSError as error:
        raise UserError(
            f"Cannot write the report into {str(root)!r} ({error}). Make the directory and its "
            "results.csv, report.md and *.png writable files, or copy the sweep elsewhere."
        ) from None


def _write_files(
    root: pathlib.Path, results: Results, groups: list[Group], best: Group | None
) -> Report:
    """The files of `write_report`; an OSError (a read-only directory, a full disk) escapes."""
    write_csv(results, root / "results.csv")
    files, notes = [root / "results.csv", root / "report.md"], []
    plots = [
        ("val_vs_lr.png", LR_KEY, lambda path: _plot_against(results, groups, LR_KEY, path)),
        ("val_curves.png", None, lambda path: _plot_curves(results, groups, path)),
        ("val_vs_epochs.png", EPOCHS_KEY, lambda p: _plot_against(results, groups, EPOCHS_KEY, p)),
    ]
    for filename, key, plot in plots:
        if key is not None and key not in results.swept_keys:
            notes.append(f"- {filename} skipped: {key} is not swept.")
        elif plot(root / filename):
            files.append(root / filename)
            notes.append(f"![{filename}]({filename})")
        else:
            notes.append(f"- {filename} skipped: no completed point has validation results yet.")
    (root / "report.md").write_text(_markdown(results, groups, best, notes))
    return Report(results, groups, best, files, notes)
