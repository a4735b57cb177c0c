"""Profiler traces of chosen training steps (`train.profile_steps`, `--profile_steps`), and the
time they hold per XLA operation."""

import collections
import gzip
import json
import pathlib
import re
from collections.abc import Sequence
from typing import Any

import jax


class Trace:
    """A `jax.profiler` trace of the steps [start, end) of `train.profile_steps` into
    `directory` (view with `tensorboard --logdir DIR` and its profile plugin, or xprof; a
    Perfetto copy, `*.trace.json.gz`, is what `operation_seconds` reads). It only observes: the
    run's numbers are the same with and without it."""

    def __init__(self, steps: Sequence[int], directory: pathlib.Path):
        self.steps, self.directory, self.tracing = tuple(steps), directory, False

    def at(self, step: int, state: Any, count: int = 1) -> None:
        """Starts or stops the trace before the `count` steps from `step` run in one call;
        waits for the work in flight, so the trace holds exactly the calls that run any of its
        steps (with several steps per call, the range rounded out to whole calls)."""
        start, end = self.steps or (0, 0)
        if not self.steps or self.tracing == (start < step + count and step < end):
            return
        jax.block_until_ready(state)
        if self.tracing:
            self.stop()
        else:
            jax.profiler.start_trace(str(self.directory), create_perfetto_trace=True)
            self.tracing = True

    def stop(self) -> None:
        if self.tracing:
            jax.profiler.stop_trace()
            self.tracing = False


# Events on XLA's CPU runtime threads that are not an operation's own work.
_NOT_OPERATIONS = ("ThunkExecutor", "ThreadpoolListener", "SlinkyThreadPool", "end: ")


def operation_seconds(directory: pathlib.Path) -> dict[str, float]:
    """Seconds per XLA CPU operation (thunk) name in the newest trace under `directory`, most
    first: each event's own time (without the events nested in it, e.g. a loop's body) summed
    over the runtime's threads, by kind: XLA names operations `dot.8`, `ynn_fusion.3`,
    `transpose_copy_fusion`, ..., and the numbered copies of a kind add up."""
    traces = sorted(directory.rglob("*.trace.json.gz"), key=lambda path: path.stat().st_mtime)
    if not traces:
        return {}
    with gzip.open(traces[-1]) as file:
        events = json.load(file)
    events = events["traceEvents"] if isinstance(events, dict) else events
    thread_names = {
        (e["pid"], e["tid"]): e["args"]["name"]
        for e in events
        if e.get("ph") == "M" and e.get("name") == "thread_name"
    }
    by_thread = collections.defaultdict(list)
    for event in events:
        thread = thread_names.get((event.get("pid"), event.get("tid")), "")
        name = event.get("name", "")
        if event.get("ph") == "X" and thread.startswith("tf_XLA"):
            if not name.startswith(_NOT_OPERATIONS):
                kind = re.sub(r"\.\d+$", "", name)
                by_thread[thread].append((event["ts"], event.get("dur", 0.0), kind))
    totals = collections.Counter()
    for spans in by_thread.values():
        open_spans: list[list] = []  # [end, name, own time] of the spans that contain this one
        for start, duration, name in sorted(spans, key=lambda span: (span[0], -span[1])):
            while open_spans and open_spans[-1][0] <= start:
                _, done, own = open_spans.pop()
                totals[done] += own
            if open_spans:
                open_spans[-1][2] -= duration
            open_spans.append([start + duration, name, duration])
        for _, done, own in open_spans:
            totals[done] += own
    return {name: micros / 1e6 for name, micros in totals.most_common()}
