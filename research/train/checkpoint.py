"""Orbax checkpoints under WORKDIR/checkpoints: the latest N for resuming, plus the best one.

Orbax writes each checkpoint to a temporary directory and renames it when complete, so a save
cut short (even by SIGKILL) is never restored; the loop's own position travels in `meta`.
"""

import copy
import pathlib
from typing import Any

import jax
import orbax.checkpoint as ocp


def _manager(directory: pathlib.Path, max_to_keep: int) -> ocp.CheckpointManager:
    # Both managers save the same step at once; in a multi-process run their barriers (named by
    # step) would collide without a prefix of their own.
    multiprocessing = ocp.options.MultiprocessingOptions(barrier_sync_key_prefix=directory.name)
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, create=True, multiprocessing_options=multiprocessing
    )
    return ocp.CheckpointManager(directory, options=options, item_names=("state", "meta"))


class Checkpointer:
    """Two managers: `latest/` keeps the newest `keep` saves, `best/` the best validation one."""

    def __init__(self, workdir: str | pathlib.Path, keep: int):
        root = pathlib.Path(workdir).absolute() / "checkpoints"
        self.latest = _manager(root / "latest", keep)
        self.best = _manager(root / "best", 1)

    def save(self, state: Any, meta: dict, best: bool = False) -> None:
        step = int(jax.device_get(state.step))
        # The JSON is written in the background while the loop goes on mutating `meta`: freeze it.
        meta = copy.deepcopy(meta)
        args = ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))
        self.latest.save(step, args=args, force=True)
        if best:
            self.best.save(step, args=args, force=True)

    def _restore(self, manager: ocp.CheckpointManager, target: Any):
        step = manager.latest_step()
        if step is None:
            return None
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
        restored = manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()
            ),
        )
        return restored["state"], restored["meta"]

    def restore_latest(self, target: Any) -> tuple[Any, dict] | None:
        """(state, meta) of the newest complete checkpoint, shaped and sharded like `target`."""
        return self._restore(self.latest, target)

    def restore_best(self, target: Any) -> tuple[Any, dict] | None:
        return self._restore(self.best, target)

    def reached_preemption(self, step: int) -> bool:
        """Whether every process has agreed to stop at `step` after a SIGTERM to any of them.

        JAX's preemption service (multi-process runs only) picks one step for all; without a
        distributed runtime this is always False and the loop's own SIGTERM flag decides.
        """
        return self.latest.reached_preemption(step)

    def wait(self) -> None:
        self.latest.wait_until_finished()
        self.best.wait_until_finished()

    def close(self) -> None:
        self.latest.close()
        self.best.close()
