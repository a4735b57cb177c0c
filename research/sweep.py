"""Sweep combinators over dotted config keys, and expansion into validated, named points.

Pure functions only; no I/O: an experiment's sweep() builds its points here and a runner runs them.
"""

import dataclasses
import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

import ml_collections
import numpy as np

from research.config import override
from research.errors import UserError
from research.validation import validate

Sweep = list[dict[str, Any]]

SEED_KEY = "seed"
ABBREVIATIONS = {
    "optimizer.learning_rate": "lr",
    "data.batch_size": "bs",
    "train.num_epochs": "ep",
    "seed": "seed",
    "optimizer.weight_decay": "wd",
    "model.dropout_rate": "drop",
}
_MAX_DESCRIPTION = 80  # keeps a point directory name well under filesystem limits
_UNSAFE = re.compile(r"[^A-Za-z0-9._,=+-]")


def axis(key: str, values: Iterable[Any]) -> Sweep:
    """One swept key: axis("optimizer.learning_rate", [0.1, 0.3]) -> [{key: 0.1}, {key: 0.3}]."""
    return [{key: value} for value in values]


def _merge(left: dict[str, Any], right: dict[str, Any]) -> dict[str, Any]:
    shared = left.keys() & right.keys()
    if shared:
        raise UserError(
            f"Sweep axes both set {sorted(shared)}; each key may appear on one axis only. "
            "Combine such values into one axis (or use chain for separate sub-sweeps)."
        )
    return {**left, **right}


def product(*axes: Sweep) -> Sweep:
    """Every combination, the last axis varying fastest (the order of nested for loops).

    product(axis(lr, [a, b]), axis(bs, [x, y])) -> (a, x), (a, y), (b, x), (b, y).
    """
    points: Sweep = [{}]
    for values in axes:
        points = [_merge(point, value) for point in points for value in values]
    return points


def zipped(*axes: Sweep) -> Sweep:
    """Pairs the i-th values of equally long axes, e.g. a batch size with its learning rate."""
    lengths = [len(values) for values in axes]
    if len(set(lengths)) > 1:
        raise UserError(f"zipped needs axes of equal length; got lengths {lengths}.")
    points: Sweep = [{} for _ in range(lengths[0] if lengths else 0)]
    for values in axes:
        points = [_merge(point, value) for point, value in zip(points, values, strict=True)]
    return points


def chain(*sweeps: Sweep) -> Sweep:
    """Concatenates sub-sweeps, e.g. a coarse grid followed by a few hand-picked points."""
    return [dict(point) for sweep in sweeps for point in sweep]


@dataclasses.dataclass(frozen=True)
class Log:
    """Log-uniform on [low, high]; with integer=True, integers in [low, high] inclusive."""

    low: float
    high: float
    integer: bool = False

    def from_unit(self, u: float) -> float | int:
        top = self.high + 1 if self.integer else self.high
        value = math.exp(math.log(self.low) + u * (math.log(top) - math.log(self.low)))
        value = min(max(value, self.low), self.high)  # exp(log(x)) may miss x by a rounding
        return int(value) if self.integer else value


@dataclasses.dataclass(frozen=True)
class Linear:
    """Uniform on [low, high]; with integer=True, integers in [low, high] inclusive."""

    low: float
    high: float
    integer: bool = False

    def from_unit(self, u: float) -> float | int:
        if self.integer:
            return min(int(self.low + math.floor(u * (self.high - self.low + 1))), int(self.high))
        return self.low + u * (self.high - self.low)


@dataclasses.dataclass(frozen=True)
class Choice:
    """Uniform over a finite list of values (of any type)."""

    values: tuple[Any, ...]

    def from_unit(self, u: float) -> Any:
        return self.values[min(int(u * len(self.values)), len(self.values) - 1)]


Distribution = Log | Linear | Choice


def log(low: float, high: float, *, integer: bool = False) -> Log:
    """For scale parameters (learning rate, weight decay, width) where ratios matter."""
    if not 0 < low <= high:
        raise UserError(f"log({low}, {high}) needs 0 < low <= high.")
    _check_integer_bounds("log", low, high, integer)
    return Log(low, high, integer)


def linear(low: float, high: float, *, integer: bool = False) -> Linear:
    """For parameters where differences matter (dropout rate, momentum)."""
    if not low <= high:
        raise UserError(f"linear({low}, {high}) needs low <= high.")
    _check_integer_bounds("linear", low, high, integer)
    return Linear(low, high, integer)


def _check_integer_bounds(name: str, low: float, high: float, integer: bool) -> None:
    if integer and not (isinstance(low, int) and isinstance(high, int)):
        raise UserError(f"{name}({low}, {high}, integer=True) needs integer bounds.")


def choice(values: Sequence[Any]) -> Choice:
    """For categorical parameters (optimizer name, activation)."""
    if not values:
        raise UserError("choice([]) needs at least one value.")
    return Choice(tuple(values))


def sample(
    distributions: dict[str, Distribution], n: int, seed: int, method: str = "random"
) -> Sweep:
    """Draws n points; the same (distributions, n, seed, method) always gives the same points.

    method: "random" (independent uniforms) or the quasi-random "sobol" / "halton", which cover
    the space more evenly for small n (Sobol is balanced when n is a power of two).
    """
    keys = list(distributions)
    rng = np.random.default_rng(seed)
    if method == "random":
        units = rng.random((n, len(keys)))
    elif method in ("sobol", "halton"):
        from scipy.stats import qmc  # imported here: scipy costs ~1 s of start-up

        engine = qmc.Sobol if method == "sobol" else qmc.Halton
        units = engine(d=len(keys), scramble=True, rng=rng).random(n)
    else:
        raise UserError(f"Unknown sampling method {method!r}; use random, sobol or halton.")
    return [
        {
            key: _python(distributions[key].from_unit(float(u)))
            for key, u in zip(keys, row, strict=True)
        }
        for row in units
    ]


def _python(value: Any) -> Any:
    """Plain Python scalars, so configs type-check and serialise the same as hand-written ones."""
    return value.item() if isinstance(value, np.generic) else value


@dataclasses.dataclass(frozen=True)
class Point:
    """One run of a sweep: its position, directory name, overrides and resolved locked config."""

    index: int
    name: str
    overrides: dict[str, Any]
    config: ml_collections.ConfigDict


def expand(config: ml_collections.ConfigDict, points: Sweep) -> list[Point]:
    """Applies every point to a copy of `config` and validates it, so a bad key or value fails
    before anything runs."""
    width = max(3, len(str(len(points) - 1)))
    seen: dict[tuple, int] = {}
    expanded = []
    for index, overrides in enumerate(points):
        if not isinstance(overrides, dict) or not all(isinstance(k, str) for k in overrides):
            raise UserError(
                f"Sweep point {index} is {overrides!r}; each point must be a dict keyed by "
                "dotted config paths, e.g. {'optimizer.learning_rate': 0.1}."
            )
        frozen = tuple(sorted((key, _freeze(value)) for key, value in overrides.items()))
        if frozen in seen:
            raise UserError(
                f"Sweep points {seen[frozen]} and {index} are identical ({overrides}); "
                "replicates must differ in 'seed'."
            )
        seen[frozen] = index
        resolved = config.copy_and_resolve_references()
        for key, value in overrides.items():
            try:
                _reject_bool_for_number(resolved, key, value)
                override(resolved, key, value)
            except UserError as error:
                raise UserError(f"Sweep point {index} ({overrides}): {error}") from None
        try:
            validate(resolved)
        except UserError as error:
            raise UserError(f"Sweep point {index} ({overrides}): {error}") from None
        resolved.lock()
        name = f"{index:0{width}d}" + (f"-{describe(overrides)}" if overrides else "")
        expanded.append(Point(index, name, dict(overrides), resolved))
    return expanded


def _reject_bool_for_number(config: ml_collections.ConfigDict, key: str, value: Any) -> None:
    """ConfigDict takes True for an int field (bool is an int); a sweep never means that."""
    node = config
    for part in key.split("."):
        if not isinstance(node, ml_collections.ConfigDict) or part not in node:
            return  # override() reports the unknown key with its full message
        node = node[part]
    if isinstance(value, bool) and isinstance(node, int | float) and not isinstance(node, bool):
        raise UserError(
            f"Config key {key!r} got {value!r}, which is not a valid {type(node).__name__} "
            f"(the default is {node!r})."
        )


def describe(overrides: dict[str, Any]) -> str:
    """A short filesystem-safe description: {"optimizer.learning_rate": 0.03} -> "lr=0.03"."""
    text = ",".join(f"{abbreviate(key)}={_format(value)}" for key, value in overrides.items())
    return _UNSAFE.sub("_", text)[:_MAX_DESCRIPTION]


def abbreviate(key: str) -> str:
    return ABBREVIATIONS.get(key, key.split(".")[-1])


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return "x".join(_format(item) for item in value)
    return str(value)


def _freeze(value: Any) -> Any:
    return tuple(_freeze(item) for item in value) if isinstance(value, list | tuple) else value


def group_key(overrides: dict[str, Any]) -> tuple:
    """The point's identity without its seed: points with equal keys are replicates to average."""
    return tuple((key, _freeze(overrides[key])) for key in sorted(overrides) if key != SEED_KEY)
