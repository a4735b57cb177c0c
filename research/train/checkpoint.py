"""Orbax checkpoints: the group's latest N saves for resuming, and each point's best one.

A single run keeps both under WORKDIR/checkpoints (`latest/`, `best/`). A vmapped group keeps
its stacked state's `latest/` in the group's directory and every point's `best/` in the point's
own workdir, so sampling and `init_from` read any point alike. Orbax writes each checkpoint to a
temporary directory and renames it when complete, so a save cut short (even by SIGKILL) is never
restored; the loop's own position travels beside the state as JSON.
"""

import contextlib
import copy
import logging
import pathlib
import sys
from collections.abc import Sequence
from typing import Any

import jax
import orbax.checkpoint as ocp

from research.errors import UserError


def _manager(directory: pathlib.Path, max_to_keep: int, prefix: str) -> ocp.CheckpointManager:
    # Managers save the same step at once; in a multi-process run their barriers (named by
    # step) would collide without a prefix of their own.
    multiprocessing = ocp.options.MultiprocessingOptions(barrier_sync_key_prefix=prefix)
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, create=True, multiprocessing_options=multiprocessing
    )
    return ocp.CheckpointManager(directory, options=options, item_names=("state", "meta"))


class CheckpointError(UserError):
    """A checkpoint could not be written or none could be read; the run stops."""


def _save(manager: ocp.CheckpointManager, step: int, state: Any, meta: dict) -> None:
    """Starts an asynchronous save, after raising any error of the previous one."""
    # The JSON is written in the background while the loop goes on mutating `meta`: freeze it.
    meta = copy.deepcopy(meta)
    args = ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))
    with _save_errors(manager):
        manager.check_for_errors()
        if step in manager.all_steps():  # saved before a resume from an older (intact) step
            manager.delete(step)
        manager.save(step, args=args, force=True)


@contextlib.contextmanager
def _save_errors(manager: ocp.CheckpointManager):
    """A failed save (read-only directory, full disk) as one paragraph that stops the run."""
    try:
        yield
    except Exception as error:  # noqa: BLE001 - orbax raises whatever the filesystem raised
        steps = manager.all_steps()
        kept = f"the newest intact one is step {max(steps)}" if steps else "none is intact yet"
        raise CheckpointError(
            f"Saving a checkpoint in {str(manager.directory)!r} failed "
            f"({type(error).__name__}: {error}). The run stopped; {kept}. Make the directory "
            "writable or free disk space there, then rerun the same command to resume."
        ) from None


def _restore(manager: ocp.CheckpointManager, target: Any) -> tuple[Any, dict] | None:
    """(state, meta) of the newest step that restores; a damaged newer step is skipped with a
    warning. If no step restores, the error says whether they are damaged or were written by
    a version of this code whose state had another structure."""
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    args = ocp.args.Composite(state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore())
    steps = sorted(manager.all_steps(), reverse=True)
    errors = []
    for step in steps:
        try:
            with _quiet_asyncio():
                restored = manager.restore(step, args=args)
        except Exception as error:  # noqa: BLE001 - a damaged checkpoint raises anything
            errors.append(error)
            print(
                f"warning: checkpoint step {step} in {str(manager.directory)!r} cannot be "
                f"restored and was skipped ({type(error).__name__}: "
                f"{str(error).splitlines()[0][:200]})",
                file=sys.stderr,
                flush=True,
            )
            continue
        return restored["state"], restored["meta"]
    if not steps:
        return None
    if all("structure" in str(error) for error in errors):
        raise other_version(manager.directory)
    raise CheckpointError(
        f"No checkpoint in {str(manager.directory)!r} can be restored (steps "
        f"{', '.join(map(str, steps))} are all damaged). Move that folder away (or pass "
        "--overwrite to start the run over), then rerun."
    )


def other_version(directory: Any) -> CheckpointError:
    """The error for checkpoints this version of the code cannot read (nothing is damaged)."""
    return CheckpointError(
        f"The checkpoints in {str(directory)!r} hold a state or counters of another structure "
        "than this run builds: they were written by another version of this code or for "
        "another model. Nothing is damaged. Run that version to use them, or start over with "
        "--overwrite (or a new --workdir)."
    )


@contextlib.contextmanager
def _quiet_asyncio():
    """Silences asyncio's log of the failed reads of a damaged checkpoint (kilobytes of
    tensorstore specs); the warning above says which step failed and why."""
    log = logging.getLogger("asyncio")
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        log.setLevel(level)


def has_checkpoint(run_dir: pathlib.Path) -> bool:
    """Whether `run_dir` holds a latest checkpoint to resume from (read-only)."""
    latest = pathlib.Path(run_dir) / "checkpoints" / "latest"
    return latest.is_dir() and any(path.name.isdigit() for path in latest.iterdir())


class Checkpointer:
    """`latest` keeps the group's newest `keep` saves; `best[i]` point i's best validation."""

    def __init__(self, run_dir: pathlib.Path, point_dirs: Sequence[pathlib.Path], keep: int):
        root = pathlib.Path(run_dir).absolute() / "checkpoints"
        self.latest = _manager(root / "latest", keep, "latest")
        self.best = [
            _manager(pathlib.Path(d).absolute() / "checkpoints" / "best", 1, f"best{i}")
            for i, d in enumerate(point_dirs)
        ]

    def save(self, step: int, state: Any, meta: dict) -> None:
        for manager in self.best:  # a failed best save stops the run here, not at its end
            with _save_errors(manager):
                manager.check_for_errors()
        _save(self.latest, step, state, meta)

    def save_best(self, index: int, step: int, state: Any, meta: dict) -> None:
        _save(self.best[index], step, state, meta)

    def restore_latest(self, target: Any) -> tuple[Any, dict] | None:
        """(state, meta) of the newest complete checkpoint, shaped and sharded like `target`."""
        return _restore(self.latest, target)

    def restore_best(self, index: int, target: Any) -> tuple[Any, dict] | None:
        return _restore(self.best[index], target)

    def reached_preemption(self, step: int) -> bool:
        """Whether every process has agreed to stop at `step` after a SIGTERM to any of them.

        JAX's preemption service (multi-process runs only) picks one step for all; without a
        distributed runtime this is always False and the loop's own SIGTERM flag decides.
        """
        return self.latest.reached_preemption(step)

    def wait(self) -> None:
        """Blocks until every save is on disk; a save that failed raises CheckpointError."""
        for manager in (self.latest, *self.best):
            with _save_errors(manager):
                manager.wait_until_finished()
                manager.check_for_errors()

    def close(self) -> None:
        """Closes every manager; after a failed save their errors were already reported."""
        for manager in (self.latest, *self.best):
            with contextlib.suppress(Exception):  # the run is ending with that error
                manager.close()


def restore_best(workdir: pathlib.Path, target: Any) -> tuple[Any, dict] | None:
    """(state, meta) of the best checkpoint in a finished run's workdir, like `target`."""
    manager = _manager(pathlib.Path(workdir).absolute() / "checkpoints" / "best", 1, "best")
    try:
        return _restore(manager, target)
    finally:
        manager.close()
