"""The vocabulary of allowed config values: a `Check` says in words which values a field takes
and tests one. Pure functions only; declarations use it beside each field's default.
"""

import dataclasses
import math
import pathlib
from collections.abc import Callable
from typing import Any

import ml_collections


@dataclasses.dataclass(frozen=True)
class Check:
    """The values one config field allows: `allowed` says which in words (a function of the
    config when other fields bound them) and `ok(value, config)` tests a value."""

    allowed: str | Callable[[ml_collections.ConfigDict], str]
    ok: Callable[[Any, ml_collections.ConfigDict], bool]

    def describe(self, config: ml_collections.ConfigDict) -> str:
        return self.allowed(config) if callable(self.allowed) else self.allowed


def number(
    low: float | None = None,
    high: float | None = None,
    *,
    integer: bool = False,
    open_low: bool = False,
    open_high: bool = False,
) -> Check:
    """A finite number (an int with `integer`) from `low` to `high`, each bound included unless
    open; None is no bound."""
    kind = "an integer" if integer else "a number"
    if low is not None and high is not None:
        allowed = f"{kind} in {'(' if open_low else '['}{low}, {high}{')' if open_high else ']'}"
    elif low is not None:
        allowed = f"{kind} {'>' if open_low else '>='} {low}"
    else:
        allowed = kind if high is None else f"{kind} {'<' if open_high else '<='} {high}"

    def ok(value: Any, config: ml_collections.ConfigDict) -> bool:
        if isinstance(value, bool) or not isinstance(value, int if integer else int | float):
            return False
        above = low is None or (value > low if open_low else value >= low)
        below = high is None or (value < high if open_high else value <= high)
        return math.isfinite(value) and above and below

    return Check(allowed, ok)


def integer(low: int | None = None, high: int | None = None) -> Check:
    return number(low, high, integer=True)


def one_of(*values: Any) -> Check:
    return Check(f"one of: {', '.join(map(str, values))}", lambda value, config: value in values)


def tuple_of(each: Check, length: int | None = None) -> Check:
    """A tuple (or list) of `length` entries, or of any length, each allowed by `each`."""
    count = "entries" if length is None else f"{length} entries"

    def ok(value: Any, config: ml_collections.ConfigDict) -> bool:
        right_length = length is None or len(value) == length
        return (
            isinstance(value, list | tuple)
            and right_length
            and all(each.ok(entry, config) for entry in value)
        )

    return Check(f"a tuple of {count}, each {each.allowed}", ok)


def optional(check: Check) -> Check:
    """None (unset), or a value `check` allows."""
    return Check(f"None or {check.allowed}", lambda v, c: v is None or check.ok(v, c))


TEXT = Check("a non-empty string", lambda value, config: isinstance(value, str) and bool(value))
PATH = optional(
    Check(
        "the path of an existing file or directory (a relative path starts from the current "
        "directory)",
        lambda value, config: isinstance(value, str) and pathlib.Path(value).exists(),
    )
)
FRACTION = number(0, 1, open_high=True)  # a rate or a decay: 1 would drop or keep everything
