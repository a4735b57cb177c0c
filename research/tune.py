"""Successive halving over vmapped populations: trials drawn from an experiment's search(),
trained as groups through the one loop, the worst stopped at each rung (Li et al. 2018).

Every trial trains with the config's whole epoch budget (its learning-rate schedule does not
depend on the rungs). Each group trains to the rung and pauses; when every group is there, the
trials still training are ranked together by their best validation metric so far, and the top
1/eta go on. A group's survivors go on from its checkpoint as a smaller group (nothing is
retrained, and stopped trials cost nothing more); the others end as early-stopped runs, tested.
Decisions are written to DIR/rungs.json before anything goes on, so a rerun after a kill
replays them: the same seed gives the same trials, decisions and result.
"""

import dataclasses
import hashlib
import json
import pathlib
import time
from collections.abc import Sequence
from typing import Any

import ml_collections

from research import config as config_lib
from research.errors import UserError
from research.sweep import Choice, Distribution, Log, Point, expand, group_key, sample
from research.sweep_run import (
    ERROR_FILE,
    compilation_cache,
    is_complete,
    record_failure,
    start_point,
    value_flag,
)
from research.train import records
from research.train.workdir import lock

RUNGS_FILE, BEST_FILE = "rungs.json", "best.json"
FIXED_KEYS = ("seed", "train.num_epochs")  # a replicate axis, and the tuner's own budget


def load_space(spec: str, config: ml_collections.ConfigDict) -> dict[str, Distribution]:
    """The experiment's search(), every key and every value it can draw checked on `config`."""
    path = spec.partition(":")[0]
    search = getattr(config_lib.load_module(path), "search", None)
    if not callable(search):
        raise UserError(
            f"Experiment file {path!r} defines no search(); add one returning a dict from dotted "
            "config keys to distributions, e.g. {'optimizer.learning_rate': log(1e-4, 1e-1), "
            "'data.batch_size': choice([32, 64])} with log, linear and choice from research.sweep."
        )
    space = search()
    if not isinstance(space, dict) or not space:
        raise UserError(
            f"The search() of {path!r} returned {space!r}; return a non-empty dict from dotted "
            "config keys to distributions (research.sweep log, linear or choice)."
        )
    for key, distribution in space.items():
        _check_distribution(key, distribution)
    # The bounds and every choice, validated like sweep points (unknown key, wrong type, range).
    extremes = [
        {key: value}
        for key, distribution in space.items()
        for value in (
            distribution.values if isinstance(distribution, Choice) else _bounds(distribution)
        )
    ]
    extremes = list({group_key(point): point for point in extremes}.values())
    try:
        expand(config, extremes)
    except UserError as error:
        raise UserError(f"search() of {path!r}: {error}") from None
    return space


def draw_trials(spec: str, config: ml_collections.ConfigDict, trials: int) -> list[Point]:
    """`trials` points drawn from search() by the config's seed: the same seed, the same trials.
    A draw equal to an earlier one (likely where the space is a few choices) is dropped, as
    training it again would teach nothing."""
    draws = sample(load_space(spec, config), trials, config.seed)
    distinct = list({group_key(draw): draw for draw in reversed(draws)}.values())[::-1]
    if len(distinct) < len(draws):
        print(
            f"{len(draws) - len(distinct)} of {len(draws)} draws repeat an earlier one; "
            f"tuning the {len(distinct)} distinct trials",
            flush=True,
        )
    return expand(config, distinct)


def _bounds(distribution: Distribution) -> tuple:
    low, high = distribution.low, distribution.high
    return (int(low), int(high)) if distribution.integer else (low, high)


def _check_distribution(key: str, distribution: Any) -> None:
    if key in FIXED_KEYS:
        raise UserError(
            f"search() draws {key!r}, which the tuner does not tune: the seed is a replicate "
            "axis and train.num_epochs the budget every trial has. Set it in get_config or with "
            f"--config.{key}=VALUE, and drop it from search()."
        )
    if not isinstance(distribution, Distribution):
        raise UserError(
            f"search() maps {key!r} to {distribution!r}, which is not a distribution; use "
            "log(low, high), linear(low, high) or choice([...]) from research.sweep."
        )
    if not isinstance(distribution, Choice) and not distribution.low < distribution.high:
        kind = "log" if isinstance(distribution, Log) else "linear"
        raise UserError(
            f"search() draws {key!r} from {kind}({distribution.low}, {distribution.high}), an "
            f"empty range; a search range needs low < high. To fix {key}, set it in get_config "
            "or with --config.KEY=VALUE and drop it from search()."
        )


def rung_epochs(min_epochs: int, eta: int, num_epochs: int, trials: int) -> list[int]:
    """The epochs where trials are ranked: min_epochs * eta**k below the budget, while more
    than one of the `trials` would be left to rank."""
    rungs, epoch = [], min_epochs
    while epoch < num_epochs and trials > 1:
        rungs.append(epoch)
        epoch, trials = epoch * eta, trials // eta
    return rungs


def rank_key(val: dict[str, float], target: str, mode: str) -> tuple[float, float]:
    """Sorts the best first: by the target, then by the lower loss (ties are common on small
    validation sets)."""
    return (-val[target] if mode == "max" else val[target], val["loss"])


def survivors(best_vals: dict[str, dict[str, float]], eta: int, target: str, mode: str):
    """The top 1/eta (at least one) of the trials still training, by their best validation
    metrics so far; equal scores keep the order of `best_vals` (the trials' order)."""
    ranked = sorted(best_vals, key=lambda name: rank_key(best_vals[name], target, mode))
    return ranked[: max(1, len(ranked) // eta)]


@dataclasses.dataclass(frozen=True)
class Group:
    """Trials that train as one program, and where their state comes from."""

    points: tuple[Point, ...]
    run_dir: pathlib.Path
    origin: Any = None  # research.train.loop.Origin: a split of an earlier group

    def split(self, kept: set[str], round_: int, root: pathlib.Path) -> tuple["Group", ...]:
        """The survivors, who go on, and the others, who stop here: each a group of its own."""
        from research.train.loop import Origin

        parts = []
        for stopped in (False, True):
            indices = [i for i, p in enumerate(self.points) if (p.name in kept) != stopped]
            if indices:
                points = tuple(self.points[i] for i in indices)
                origin = Origin(self.run_dir, len(self.points), tuple(indices), stopped)
                parts.append(Group(points, _group_dir(root, round_, points, stopped), origin))
        return tuple(parts)

    @property
    def stopping(self) -> bool:
        return self.origin is not None and self.origin.stopped

    def done(self, root: pathlib.Path) -> bool:
        """Every trial's run has ended (a rerun skips the group)."""
        return all(_ended(point, root / point.name) for point in self.points)


def _group_dir(root: pathlib.Path, round_: int, points: Sequence[Point], stopped: bool):
    digest = hashlib.sha1("\n".join(p.name for p in points).encode()).hexdigest()[:8]
    role = "stop" if stopped else "go"
    return root / "groups" / f"r{round_}-{role}-n{len(points)}-{digest}"


def _ended(point: Point, workdir: pathlib.Path) -> bool:
    """The trial failed (error.txt) or finished, as a sweep point does."""
    return (workdir / ERROR_FILE).exists() or is_complete(point, workdir)


def _decisions(root: pathlib.Path, settings: dict[str, Any]) -> list[dict[str, Any]]:
    """The rungs decided so far by a tune of the same settings in `root`."""
    path = root / RUNGS_FILE
    if not path.exists():
        return []
    try:
        saved = json.loads(path.read_text())
        saved_settings, rungs = saved["settings"], saved["rungs"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as error:
        raise UserError(
            f"{str(path)!r} is damaged ({type(error).__name__}: {error}), so this tune's "
            "decisions cannot be replayed. Restore the file, or pass a new --workdir."
        ) from None
    saved_settings = {"group_size": None, **saved_settings}  # rungs.json before the setting
    if saved_settings != settings:
        changed = sorted(k for k in settings if saved_settings.get(k) != settings[k])
        raise UserError(
            f"{str(root)!r} holds a tune with other settings (its {', '.join(changed)} differ "
            "from this command's). Rerun that tune's command to resume it, or pass a new "
            "--workdir."
        )
    return rungs


def tune(
    spec: str,
    config: ml_collections.ConfigDict,
    root: pathlib.Path,
    *,
    trials: int,
    eta: int,
    min_epochs: int,
    group_size: int | None = None,
) -> dict[str, Any]:
    """Samples `trials` points from search() and runs successive halving into `root`, at most
    `group_size` trials per program (all that can share one by default); returns best.json's
    dict. Every check runs before anything is written."""
    num_epochs = config.train.num_epochs
    if trials < 1 or eta < 2 or not 1 <= min_epochs < num_epochs:
        raise UserError(
            f"--trials={trials} --eta={eta} --min_epochs={min_epochs} with train.num_epochs="
            f"{num_epochs}: the tuner needs trials >= 1, eta >= 2 and 1 <= min_epochs < "
            "train.num_epochs (the first rung comes before the budget ends), e.g. --trials=27 "
            "--eta=3 --min_epochs=1."
        )
    if group_size is not None and group_size < 1:
        raise UserError(
            f"--group_size={group_size}: a group trains at least one trial. Pass a positive "
            "number, or leave it out to train every trial that can share a program in one."
        )
    points = draw_trials(spec, config, trials)
    rungs = rung_epochs(min_epochs, eta, num_epochs, trials)
    settings = {
        "spec": spec,
        "config": json.loads(config_lib.to_json(config)),
        "trials": [point.overrides for point in points],
        "eta": eta,
        "min_epochs": min_epochs,
        "group_size": group_size,
    }
    settings = json.loads(json.dumps(settings))  # as rungs.json holds it: tuples are lists
    decided = _decisions(root, settings)
    root.mkdir(parents=True, exist_ok=True)
    with lock(root):  # a second tune of this workdir is refused, not interleaved
        return _tune(spec, root, settings, points, rungs, decided, eta)


def _tune(spec, root, settings, points, rungs, decided, eta) -> dict[str, Any]:
    num_epochs = points[0].config.train.num_epochs
    records.write_json(root / RUNGS_FILE, {"settings": settings, "rungs": decided})
    for point in points:
        if not (root / point.name / "sweep_point.json").exists():
            start_point(point, root / point.name)
    start = time.time()
    from research.train.population import group_points

    grouped = group_points(points, settings["group_size"])
    groups = [Group(tuple(g), _group_dir(root, 0, g, False)) for g in grouped]
    with compilation_cache(root / ".jax_cache", in_process=True):
        for round_, epoch in enumerate([*rungs, num_epochs]):
            if round_:
                kept = set(decided[round_ - 1]["kept"])
                groups = [part for g in groups for part in g.split(kept, round_, root)]
                for group in groups:
                    if group.stopping and not group.done(root):
                        _train(group, root, None)
                groups = [group for group in groups if not group.stopping]
            if round_ == len(rungs):
                for group in groups:
                    if not group.done(root):
                        _train(group, root, None)
            elif round_ == len(decided):
                decided.append(_rung(groups, root, epoch, eta))
                records.write_json(root / RUNGS_FILE, {"settings": settings, "rungs": decided})
    best = _best(spec, points, root, decided, time.time() - start)
    records.write_json(root / BEST_FILE, best)
    return best


def _train(group: Group, root: pathlib.Path, until_epoch: int | None):
    """Trains a group through the one loop; a diverged trial's error goes to its error.txt."""
    from research.train.lifecycle import Diverged
    from research.train.loop import train_points

    names = ", ".join(point.name for point in group.points)
    action = f"to epoch {until_epoch}" if until_epoch else "to the end"
    print(f"{'stopping' if group.stopping else 'training ' + action}: {names}", flush=True)
    try:
        result = train_points(
            [point.config for point in group.points],
            [root / point.name for point in group.points],
            group.run_dir,
            stacked=True,
            until_epoch=until_epoch,
            origin=group.origin,
        )
    except UserError as error:  # e.g. a batch size its data cannot fill: the others go on
        if isinstance(error, Diverged):
            raise
        print(f"error: {error}", flush=True)
        for point in group.points:
            record_failure(root / point.name, f"error: {error}")
        return None
    if isinstance(result, list):
        for point, outcome in zip(group.points, result, strict=True):
            if isinstance(outcome, Diverged):
                record_failure(root / point.name, f"error: {outcome}")
    return result


def _rung(groups: Sequence[Group], root: pathlib.Path, epoch: int, eta: int) -> dict[str, Any]:
    """Trains every group to `epoch`, then ranks the trials still training there."""
    from research.train.loop import Paused

    best_vals, target = {}, None
    for group in groups:
        result = _train(group, root, epoch)
        if isinstance(result, Paused):
            target = (result.target, result.mode)
            for point, counters in zip(group.points, result.points, strict=True):
                if counters.active:
                    best_vals[point.name] = counters.best["val"]
    best_vals = dict(sorted(best_vals.items()))  # trial order (names start with the index)
    kept = survivors(best_vals, eta, *target) if target else []
    print(f"rung at epoch {epoch}: {len(kept)} of {len(best_vals)} trials go on", flush=True)
    return {"epoch": epoch, "kept": kept, "best_val": best_vals}


def _best(spec, points, root, decided, seconds) -> dict[str, Any]:
    """The trial with the best validation metric of all that ended, its overrides and the
    command that trains it; and what the whole tune trained."""
    summaries = {}
    for point in points:
        path = root / point.name / "summary.json"
        if path.exists():
            summaries[point.name] = json.loads(path.read_text())
    if not summaries:
        raise UserError(f"No trial in {str(root)!r} finished (see their error.txt files).")
    first = next(iter(summaries.values()))["target"]
    target, mode = first["metric"], first["mode"]
    name = min(summaries, key=lambda n: rank_key(summaries[n]["best"]["val"], target, mode))
    point = next(point for point in points if point.name == name)
    # Every key where the winner differs from the experiment file: the tune's own --config
    # flags as well as the drawn values.
    defaults = json.loads(config_lib.to_json(config_lib.load(spec)))
    changed = config_lib.differences(defaults, point.config)
    flags = [f"--config.{key}={value_flag(new)}" for key, (_, new) in changed.items()]
    return {
        "trial": name,
        "overrides": point.overrides,
        "best": summaries[name]["best"],
        "test": summaries[name]["test"],
        "target": first,
        "command": " ".join(["python -m launch.train", f"--config={spec}", *flags]),
        "rungs": [{"epoch": rung["epoch"], "kept": rung["kept"]} for rung in decided],
        "examples_trained": sum(
            s["steps"] * p.config.data.batch_size for p in points if (s := summaries.get(p.name))
        ),
        "seconds": seconds,
    }
