"""The tuner's report: DIR/report.md with every trial, the rungs and two plots (validation
curves with each trial's stop marked; the validation metric against the learning rate, coloured
by the last rung each trial passed). Reads only the run records, rungs.json and best.json."""

import json
import pathlib

from research.report import LR_KEY, Run, load_results

CURVES_PNG, LR_PNG = "tune_curves.png", "tune_learning_rate.png"


def write_report(root: pathlib.Path) -> pathlib.Path:
    """Writes report.md and its plots into `root`; returns the report's path."""
    results = load_results(root)
    best = json.loads((root / "best.json").read_text())
    rungs = json.loads((root / "rungs.json").read_text())["rungs"]
    runs = results.runs  # the trials: the only sub-directories with a run record
    passed = {run.name: sum(run.name in rung["kept"] for rung in rungs) for run in runs}
    metric = results.target.metric
    _plot_curves(runs, best["trial"], metric, root / CURVES_PNG)
    plotted_lr = _plot_learning_rate(runs, passed, len(rungs), metric, root / LR_PNG)
    lines = [
        f"# Tuning {results.experiment}: successive halving",
        "",
        f"Best trial `{best['trial']}`: val {metric} {best['best']['val'][metric]:.4f} "
        f"(epoch {best['best']['epoch']}), test {metric} {best['test'][metric]:.4f}.",
        "",
        "Train it again with:",
        "",
        f"    {best['command']}",
        "",
        f"Examples trained by all trials: {best['examples_trained']:,}.",
        "",
        "| rung epoch | trials ranked | go on |",
        "|---|---|---|",
        *(f"| {r['epoch']} | {len(r['best_val'])} | {len(r['kept'])} |" for r in rungs),
        "",
        f"| trial | status | epochs | rungs passed | best val {metric} | test |",
        "|---|---|---|---|---|---|",
    ]
    for run in runs:
        epochs = run.val_curve[-1][0] if run.val_curve else 0
        test = "" if run.test is None else f"{run.test:.4f}"
        val = "" if run.best_val is None else f"{run.best_val:.4f}"
        lines.append(
            f"| {run.name} | {run.status} | {epochs:g} | {passed[run.name]} | {val} | {test} |"
        )
    lines += ["", f"![validation curves]({CURVES_PNG})"]
    if plotted_lr:
        lines += ["", f"![against the learning rate]({LR_PNG})"]
    path = root / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _plot_curves(runs: list[Run], winner: str, metric: str, path: pathlib.Path) -> None:
    """Every trial's validation curve, an x where it stopped; the winner in bold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for run in runs:
        if not run.val_curve:
            continue
        epochs, values = zip(*run.val_curve, strict=True)
        bold = run.name == winner
        axes.plot(epochs, values, lw=2.5 if bold else 0.8, alpha=1 if bold else 0.6)
        axes.plot(epochs[-1], values[-1], "kx", ms=5)
    axes.set(xlabel="epoch", ylabel=f"val {metric}", title="trials (x: stopped; bold: best)")
    axes.set_xscale("log", base=2)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _plot_learning_rate(runs, passed, rungs: int, metric: str, path: pathlib.Path) -> bool:
    """Each trial's best validation metric against its learning rate, coloured by the rungs it
    passed; False (nothing written) when the learning rate was not searched."""
    points = [
        (run.swept[LR_KEY], run.best_val, passed[run.name])
        for run in runs
        if run.swept.get(LR_KEY) is not None and run.best_val is not None
    ]
    if not points:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    rates, values, colours = zip(*points, strict=True)
    shown = axes.scatter(rates, values, c=colours, cmap="viridis", vmin=0, vmax=max(rungs, 1))
    figure.colorbar(shown, ax=axes, label="rungs passed", ticks=range(rungs + 1))
    axes.set(xlabel="learning rate", ylabel=f"best val {metric}", xscale="log")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True
