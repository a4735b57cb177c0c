"""The run record every tool reads: config.json, metrics.jsonl, summary.json, curves, TensorBoard.

Only the loop's process 0 writes it, one record per point of a group. metrics.jsonl is cut back
to the checkpoint on resume, so a resumed run's record equals an uninterrupted one.
"""

import functools
import json
import pathlib
import platform
import subprocess
from typing import Any

import ml_collections
import numpy as np

from research.errors import UserError
from research.train import writers

TIMING_FIELDS = ("examples_per_sec", "wall_time")


class MetricsLog:
    """Appends one JSON object per line to metrics.jsonl and hands its numbers to the writers
    (TensorBoard, and W&B when asked) as scalars named `split/metric`."""

    def __init__(self, workdir: pathlib.Path, resume_step: int, config: ml_collections.ConfigDict):
        self.path = workdir / "metrics.jsonl"
        # Test rows come last, from the best checkpoint; a resumed run writes them anew.
        kept = [
            r for r in read_metrics(self.path) if r["step"] <= resume_step and r["split"] != "test"
        ]
        tmp = self.path.with_suffix(".tmp")  # a kill mid-write must not lose the history
        tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
        tmp.replace(self.path)
        self.writers = writers.open_writers(workdir, config, resume_step)

    def write(self, record: dict[str, Any]) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        scalars = {
            f"{record['split']}/{name}": value
            for name, value in record.items()
            if name not in ("step", "epoch", "split") and isinstance(value, int | float)
        }
        for writer in self.writers:
            writer.scalars(record["step"], scalars)

    def close(self) -> None:
        for writer in self.writers:
            writer.close()


def read_metrics(path: pathlib.Path) -> list[dict[str, Any]]:
    """Records of metrics.jsonl; a half-written last line (killed mid-write) is dropped, a
    damaged line before others is a UserError naming it."""
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    records = []
    for number, line in enumerate(lines, start=1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(lines):
                break
            raise UserError(
                f"Line {number} of {str(path)!r} is damaged ({line[:60]!r}), and the "
                f"{len(lines) - number} lines after it would be lost on resume. Repair or "
                "delete that line, or pass --overwrite to start the run over."
            ) from None
    return records


def plot_learning_curves(workdir: pathlib.Path, target: str, best_epoch: int | None) -> np.ndarray:
    """learning_curves.png: train and validation loss and target metric per epoch; returns
    its pixels [height, width, 3] uint8 for the writers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(workdir / "metrics.jsonl")
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("loss", target), strict=True):
        for split in ("train", "val"):
            points = [(r["epoch"], r[metric]) for r in records if r["split"] == split]
            if points:
                ax.plot(*zip(*points, strict=True), marker=".", label=split)
        if best_epoch is not None:
            ax.axvline(best_epoch, color="gray", linestyle="--", label=f"best (epoch {best_epoch})")
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.legend()
    fig.tight_layout()
    fig.savefig(workdir / "learning_curves.png", dpi=100)
    pixels = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()  # drawn by savefig
    plt.close(fig)
    return pixels


@functools.cache  # summary.json of every point of a group asks
def versions() -> dict[str, str]:
    from importlib.metadata import version

    packages = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy")
    return {"python": platform.python_version(), **{p: version(p) for p in packages}}


@functools.cache
def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        )
        dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True)
        return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def write_json(path: pathlib.Path, data: dict[str, Any]) -> None:
    """Writes atomically (temp file, then rename), so readers never see half a file."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    tmp.replace(path)


def write_epoch(
    log: MetricsLog,
    step: int,
    epoch: int,
    train: dict[str, float],
    val: dict[str, float],
    learning_rate: float,
    examples_per_sec: float,
    wall_time: float,
) -> None:
    """The epoch's train and val rows of metrics.jsonl (0-based step and epoch)."""
    common = {"step": step + 1, "epoch": epoch + 1}
    log.write(
        {
            **common,
            "split": "train",
            **train,
            "learning_rate": learning_rate,
            "examples_per_sec": examples_per_sec,
            "wall_time": wall_time,
        }
    )
    log.write({**common, "split": "val", **val, "wall_time": wall_time})


def summarize(config: ml_collections.ConfigDict, **fields: Any) -> dict[str, Any]:
    """summary.json's dict: the run's `fields` (status, best, test, steps, timing, where it
    ran) with what every summary has from the config and the environment."""
    return {
        "experiment": config.name,
        "seed": config.seed,
        "batch_size": config.data.batch_size,
        **fields,
        "versions": versions(),
        "git_commit": git_commit(),
    }


def write_final_record(workdir: pathlib.Path, log: MetricsLog, summary: dict[str, Any]) -> None:
    """The test row of metrics.jsonl, summary.json and learning_curves.png."""
    best = summary["best"]
    log.write(
        {
            "step": best["step"],
            "epoch": best["epoch"],
            "split": "test",
            **summary["test"],
            "wall_time": summary["wall_time_s"],
        }
    )
    write_json(workdir / "summary.json", summary)
    pixels = plot_learning_curves(workdir, summary["target"]["metric"], best["epoch"])
    for writer in log.writers:
        writer.image(best["step"], "learning_curves", pixels)
        writer.text(best["step"], "summary", json.dumps(summary, indent=2, default=str))
    log.close()
