"""Runs a sweep's points: skips finished ones, retries failed ones, records every failure in the
point's error.txt without stopping the others, and reports at the end.

Executors: `local` (in this process, or N worker processes), `vmap` (points that differ only in
traced values train as one program) and `slurm` (a submitit job array). No flag parsing here;
JAX is imported only by the executors that train in this process, so submitit's workers,
which unpickle `run_command` from this module, start fast.
"""

import contextlib
import dataclasses
import datetime
import hashlib
import json
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import ml_collections

from research import config as config_lib
from research.errors import UserError, stop_exit_code
from research.report import COMPLETE, write_report
from research.sweep import Point, expand
from research.train import records

EXECUTORS = ("local", "vmap", "slurm")
ERROR_FILE, POINT_FILE, OUTPUT_FILE = "error.txt", "sweep_point.json", "output.log"
_ERROR_TAIL = 4000  # characters of a failed command's output kept in error.txt


@dataclasses.dataclass
class Outcome:
    """Point names by what this invocation did with them."""

    finished: list[str] = dataclasses.field(default_factory=list)
    failed: list[str] = dataclasses.field(default_factory=list)
    skipped: list[str] = dataclasses.field(default_factory=list)
    unfinished: list[str] = dataclasses.field(default_factory=list)  # preempted or not reached
    seconds: float = 0.0  # time spent running points (not skipping or reporting)
    report: Any = None  # research.report.Report of the sweep directory
    stopped: int | None = None  # the exit status a stop signal asks for (0 for SIGTERM)

    def line(self) -> str:
        text = f"{len(self.finished)} finished, {len(self.failed)} failed, "
        text += f"{len(self.skipped)} skipped"
        if self.unfinished:
            text += f", {len(self.unfinished)} unfinished (rerun to resume)"
        return text


@dataclasses.dataclass(frozen=True)
class SlurmOptions:
    """The job array's resources (submitit's AutoExecutor parameters)."""

    cluster: str = "slurm"  # "local" or "debug" run the array on this machine, for tests
    array_parallelism: int = 32
    timeout_min: int = 60
    gpus_per_node: int = 0
    cpus_per_task: int = 2
    partition: str | None = None


def load_points(spec: str, config: ml_collections.ConfigDict) -> list[Point]:
    """The experiment's sweep() expanded on `config`: every key validated before anything runs."""
    path = spec.partition(":")[0]
    module = config_lib.load_module(path)
    if not callable(getattr(module, "sweep", None)):
        raise UserError(
            f"Experiment file {path!r} defines no sweep(); add one returning a list of dicts "
            "keyed by dotted config paths, e.g. product(axis('optimizer.learning_rate', "
            "[1e-3, 1e-2]), axis('seed', [0, 1])) from research.sweep."
        )
    points = module.sweep()
    if not points:
        raise UserError(f"The sweep() of {path!r} returned no points; return at least one.")
    return expand(config, points)


def is_complete(point: Point, workdir: pathlib.Path) -> bool:
    """Finished or early-stopped with this very config (a changed config runs, and is refused)."""
    summary, saved = workdir / "summary.json", workdir / "config.json"
    if not (summary.exists() and saved.exists()):
        return False
    if json.loads(summary.read_text()).get("status") not in COMPLETE:
        return False
    return not config_lib.differences(json.loads(saved.read_text()), point.config)


def start_point(point: Point, workdir: pathlib.Path) -> None:
    """Marks a point as this sweep's (sweep_point.json) and clears the last attempt's error."""
    workdir.mkdir(parents=True, exist_ok=True)
    records.write_json(
        workdir / POINT_FILE,
        {"index": point.index, "name": point.name, "overrides": point.overrides},
    )
    (workdir / ERROR_FILE).unlink(missing_ok=True)


def record_failure(workdir: pathlib.Path, text: str) -> None:
    (workdir / ERROR_FILE).write_text(text if text.endswith("\n") else text + "\n")


def _error_text(error: BaseException) -> str:
    """A UserError is already one paragraph for a person; anything else keeps its traceback."""
    if isinstance(error, UserError):
        return f"error: {error}"
    return "".join(traceback.format_exception(error))


def run_command(command: list[str], cwd: str, workdir: str, children=None) -> int | None:
    """Runs one point's training command, its output in output.log; a failure's tail goes to
    error.txt. Module-level so that submitit can pickle it into a SLURM array task. With
    `children` (a `_Children`), returns None without starting once the sweep is stopping."""
    point_dir = pathlib.Path(workdir)
    if children is not None and children.stopping is not None:
        return None  # the sweep is stopping: leave the point (and its last log) as it is
    with (point_dir / OUTPUT_FILE).open("w") as output:
        kwargs = {"cwd": cwd, "stdout": output, "stderr": subprocess.STDOUT}
        if children is None:
            code = subprocess.run(command, **kwargs).returncode
        else:
            code = children.run(command, **kwargs)
    if code:
        tail = (point_dir / OUTPUT_FILE).read_text()[-_ERROR_TAIL:]
        record_failure(point_dir, f"exit status {code} from: {' '.join(command)}\n{tail}")
    return code


class _Children:
    """The launch.train processes a local sweep runs, so that a SIGTERM or Ctrl-C to the sweep
    reaches every one of them (each saves and exits) and no new one starts."""

    def __init__(self):
        self.lock = threading.RLock()  # forward() may interrupt a holder in this thread
        self.running: set[subprocess.Popen] = set()
        self.stopping: int | None = None

    def run(self, command: list[str], **kwargs) -> int | None:
        with self.lock:
            if self.stopping is not None:
                return None
            # Its own session: a Ctrl-C on the terminal reaches the child once, through forward.
            process = subprocess.Popen(command, start_new_session=True, **kwargs)
            self.running.add(process)
        code = process.wait()
        with self.lock:
            self.running.discard(process)
        # A child that saved and exited on the forwarded signal has not failed, nor one the
        # signal ended during its start-up, before its handler was installed.
        stopped = self.stopping is not None and code in (0, 128 + self.stopping, -self.stopping)
        return None if stopped else code

    def forward(self, number: int, frame) -> None:
        with self.lock:
            self.stopping = number
            for process in self.running:
                process.send_signal(number)


@contextlib.contextmanager
def compilation_cache(directory: pathlib.Path, in_process: bool):
    """JAX's persistent compilation cache, shared by this process and the workers it starts.

    It is keyed by the compiled program, so points whose programs are identical (points that
    differ only in seed, a resumed point, a rerun) compile once; fresh closures per point defeat
    JAX's in-memory caches, and the learning rate is a constant of the train step's program.
    """
    settings = {
        "jax_compilation_cache_dir": str(directory),
        "jax_persistent_cache_min_compile_time_secs": 0,
        "jax_persistent_cache_min_entry_size_bytes": 0,
    }
    saved_env = {key.upper(): os.environ.get(key.upper()) for key in settings}
    os.environ.update({key.upper(): str(value) for key, value in settings.items()})
    if in_process:
        import jax
        from jax.experimental.compilation_cache import compilation_cache as cache

        saved = {key: getattr(jax.config, key) for key in settings}
        for key, value in settings.items():
            jax.config.update(key, value)
        cache.reset_cache()  # the cache is set up at the first compile; redo it with these
    try:
        yield
    finally:
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if in_process:
            for key, value in saved.items():
                jax.config.update(key, value)
            cache.reset_cache()


def value_flag(value: Any) -> str:
    """A value as `--config.KEY=VALUE` text that research.config parses back to it."""
    return value if isinstance(value, str) else repr(_listless(value))


def _listless(value: Any) -> Any:
    return tuple(_listless(v) for v in value) if isinstance(value, list | tuple) else value


def train_command(
    spec: str, point: Point, workdir: pathlib.Path, overrides: dict[str, str]
) -> list[str]:
    """`python -m launch.train` for one point: the command's overrides, then the point's."""
    path, sep, arg = spec.partition(":")
    flags = [f"--config.{k}={v}" for k, v in overrides.items()]
    flags += [f"--config.{k}={value_flag(v)}" for k, v in point.overrides.items()]
    return [
        sys.executable,
        "-m",
        "launch.train",
        f"--config={pathlib.Path(path).resolve()}{sep}{arg}",
        f"--workdir={workdir.resolve()}",
        *flags,
    ]


class _Tally:
    """Points finished of all, and the sweep's ETA at its pace so far."""

    def __init__(self, total: int):
        self.total, self.done, self.started = total, 0, time.time()

    def add(self, count: int = 1) -> str:
        self.done += count
        eta = (time.time() - self.started) / self.done * (self.total - self.done)
        return f"{self.done}/{self.total} points done, ETA {datetime.timedelta(seconds=round(eta))}"


def _run_in_process(points: Sequence[Point], dirs: Sequence[pathlib.Path]) -> int | None:
    """One after another in this process; a stop signal stops the whole sweep and its exit
    status is returned."""
    from research.train.loop import Preempted, train_and_evaluate

    tally = _Tally(len(points))
    for number, (point, workdir) in enumerate(zip(points, dirs, strict=True)):
        print(f"[{number + 1}/{len(points)}] {point.name}", flush=True)
        try:
            train_and_evaluate(point.config, workdir)
        except Preempted as preempted:
            print(preempted, flush=True)
            return preempted.exit_code
        except Exception as error:  # noqa: BLE001 - one failing point never stops the others
            record_failure(workdir, _error_text(error))
            print(f"{point.name} failed: {str(error).splitlines()[0]}", flush=True)
        print(tally.add(), flush=True)


def _run_processes(commands: Sequence[list[str]], dirs, parallel: int) -> int | None:
    """`parallel` launch.train processes at a time; returns the stop signal's exit status if
    one arrived (forwarded to the running points, which save and exit)."""
    cwd, children, tally = os.getcwd(), _Children(), _Tally(len(commands))
    previous = {n: signal.signal(n, children.forward) for n in (signal.SIGTERM, signal.SIGINT)}
    try:
        with ThreadPoolExecutor(parallel) as pool:
            codes = pool.map(
                lambda c, d: (d, run_command(c, cwd, str(d), children)), commands, dirs
            )
            for workdir, code in codes:
                status = "failed" if code else "stopped" if code is None else "done"
                print(f"{workdir.name}: {status} ({tally.add()})", flush=True)
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    if children.stopping is not None:
        print(f"stopped by {signal.Signals(children.stopping).name}; rerun to resume", flush=True)
        return stop_exit_code(children.stopping)
    return None


def _run_slurm(commands: Sequence[list[str]], dirs, root: pathlib.Path, options) -> None:
    """One SLURM array task per point, each running launch.train; waits for all of them."""
    import submitit

    executor = submitit.AutoExecutor(folder=root / "slurm_logs", cluster=options.cluster)
    executor.update_parameters(
        name=root.name,
        timeout_min=options.timeout_min,
        gpus_per_node=options.gpus_per_node,
        cpus_per_task=options.cpus_per_task,
        slurm_array_parallelism=options.array_parallelism,
        slurm_partition=options.partition,
    )
    cwd = os.getcwd()
    with executor.batch():
        jobs = [
            executor.submit(run_command, c, cwd, str(d))
            for c, d in zip(commands, dirs, strict=True)
        ]
    print(f"submitted {len(jobs)} array tasks: job {jobs[0].job_id.split('_')[0]}", flush=True)
    tally = _Tally(len(jobs))
    for job, workdir in zip(jobs, dirs, strict=True):
        try:
            job.result()
        except Exception as error:  # noqa: BLE001 - the task died (timeout, node failure)
            record_failure(workdir, f"SLURM task {job.job_id} did not finish: {error}")
        print(tally.add(), flush=True)


def _run_vmap(
    points: Sequence[Point], dirs: Sequence[pathlib.Path], root: pathlib.Path
) -> int | None:
    """One compiled program per group of shape-compatible points, through the one loop; a point
    that diverges fails alone, anything else fails its group; a stop signal stops the sweep
    and its exit status is returned."""
    from research.train.lifecycle import Preempted
    from research.train.loop import train_points
    from research.train.population import group_points

    by_name = dict(zip((p.name for p in points), dirs, strict=True))
    groups, tally = group_points(points), _Tally(len(points))
    for number, group in enumerate(groups):
        names = [point.name for point in group]
        digest = hashlib.sha1("\n".join(names).encode()).hexdigest()[:8]
        group_dir = root / "vmap_groups" / f"{group[0].index:03d}-n{len(group)}-{digest}"
        print(f"[group {number + 1}/{len(groups)}] {len(group)} points: {', '.join(names)}")
        group_dirs = [by_name[name] for name in names]
        try:
            results = train_points([p.config for p in group], group_dirs, group_dir, stacked=True)
        except Preempted as preempted:
            print(preempted, flush=True)
            return preempted.exit_code
        except Exception as error:  # noqa: BLE001 - one failing group never stops the others
            results = [error] * len(group)
            print(f"group {number + 1} failed: {str(error).splitlines()[0]}", flush=True)
        for workdir, result in zip(group_dirs, results, strict=True):
            if isinstance(result, BaseException):
                record_failure(workdir, _error_text(result))
        print(tally.add(len(group)), flush=True)


def run_sweep(
    spec: str,
    points: Sequence[Point],
    root: pathlib.Path,
    executor: str = "local",
    *,
    parallel: int = 1,
    overrides: dict[str, str] | None = None,
    slurm: SlurmOptions | None = None,
) -> Outcome:
    """Runs every point of `points` not yet complete under root/<point name>/, then reports.

    `overrides` are the command's `--config.KEY=VALUE` (already applied to the points' configs;
    passed on to the processes that rebuild them).
    """
    if executor not in EXECUTORS:
        raise UserError(f"--executor={executor!r} is unknown; use one of {', '.join(EXECUTORS)}.")
    if parallel < 1:
        raise UserError(f"--parallel={parallel} must be at least 1.")
    outcome = Outcome()
    todo = []
    for point in points:
        if is_complete(point, root / point.name):
            outcome.skipped.append(point.name)
        else:
            todo.append(point)
    dirs = [root / point.name for point in todo]
    for point, workdir in zip(todo, dirs, strict=True):
        start_point(point, workdir)
    start = time.time()
    commands = [train_command(spec, p, d, overrides or {}) for p, d in zip(todo, dirs, strict=True)]
    in_process = executor == "vmap" or (executor == "local" and parallel == 1)
    with compilation_cache(root / ".jax_cache", in_process and bool(todo)):
        if todo and executor == "vmap":
            outcome.stopped = _run_vmap(todo, dirs, root)
        elif todo and executor == "slurm":
            _run_slurm(commands, dirs, root, slurm or SlurmOptions())
        elif todo and parallel == 1:
            outcome.stopped = _run_in_process(todo, dirs)
        elif todo:
            outcome.stopped = _run_processes(commands, dirs, parallel)
    outcome.seconds = time.time() - start
    for point, workdir in zip(todo, dirs, strict=True):
        if (workdir / ERROR_FILE).exists():
            outcome.failed.append(point.name)
        elif is_complete(point, workdir):
            outcome.finished.append(point.name)
        else:
            outcome.unfinished.append(point.name)
    outcome.report = write_report(root)
    return outcome
