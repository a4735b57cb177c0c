"""The workdir: checked read-only before a run builds anything, then claimed (locked, cleared
with --overwrite, config.json written) only once everything the run needs is built.

One run holds a workdir at a time: an flock on WORKDIR/.lock, which the kernel releases when
its holder dies, so a SIGKILLed run leaves no stale lock.
"""

import contextlib
import fcntl
import json
import os
import pathlib
import shutil
import socket
import time

import jax
import ml_collections
import orbax.checkpoint as ocp

from research import config as config_lib
from research.errors import UserError
from research.train import records

RECORD_FILES = ("config.json", "metrics.jsonl", "summary.json", "learning_curves.png")
RECORD_DIRS = ("checkpoints", "tensorboard")
LOCK_FILE = ".lock"


def with_saved_vocabulary(
    config: ml_collections.ConfigDict, workdir: pathlib.Path, overwrite: bool
) -> ml_collections.ConfigDict:
    """`config`, reading the vocabulary a resumed text run was trained with. Fitted again, a
    WordPiece vocabulary may differ: its trainer breaks ties between equally frequent merges in
    hash order, and the restored parameters would then read renumbered tokens."""
    saved = workdir / "vocab.json"
    if overwrite or config.data.get("vocab_path", "") is not None or not saved.is_file():
        return config
    config = config.copy_and_resolve_references()
    config.data.vocab_path = str(saved)
    return config


def saved_config(workdir: pathlib.Path) -> dict | None:
    """The workdir's config.json, None if there is none; a damaged one is a UserError."""
    path = workdir / "config.json"
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(
            f"{str(path)!r} is damaged ({error}), so this workdir's run cannot be resumed or "
            "compared with this config. Restore the file, use a new --workdir, or pass "
            "--overwrite to start over in this workdir."
        ) from None


def check_workdir(config: ml_collections.ConfigDict, workdir: pathlib.Path, overwrite: bool):
    """Refuses, writing nothing, a workdir that cannot be written or holds another config."""
    existing = next(p for p in (workdir, *workdir.parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise _unwritable(workdir, f"{str(existing)!r} is not a writable directory")
    if not overwrite:
        _refuse_another_config(config, workdir)


def _unwritable(workdir: pathlib.Path, cause: str) -> UserError:
    return UserError(
        f"The workdir {str(workdir)!r} cannot be written ({cause}). "
        "Pass --workdir=DIR with a directory you can write to."
    )


def _refuse_another_config(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> None:
    saved = saved_config(workdir)
    diff = saved and config_lib.differences(saved, config)
    if diff:
        lines = "; ".join(
            f"{k}: {old!r} in the workdir, {new!r} now" for k, (old, new) in diff.items()
        )
        raise UserError(
            f"The workdir {str(workdir)!r} holds a run with a different config ({lines}). "
            "Resuming it with this config would mix two experiments. Use a new --workdir, "
            "rerun with the saved config, or pass --overwrite to start over in this workdir."
        )


@contextlib.contextmanager
def claim_workdir(config: ml_collections.ConfigDict, workdir: pathlib.Path, overwrite: bool):
    """Holds the workdir for the run: locks it, clears the old record on --overwrite and
    writes config.json. Process 0 locks and writes; the others wait at the barrier."""
    with contextlib.ExitStack() as held:
        if jax.process_index() == 0:
            try:
                workdir.mkdir(parents=True, exist_ok=True)
                held.enter_context(lock(workdir))  # closing the file releases the flock
            except OSError as error:
                raise _unwritable(workdir, error.strerror) from None
            if overwrite:
                for name in RECORD_FILES:
                    (workdir / name).unlink(missing_ok=True)
                for name in RECORD_DIRS:
                    shutil.rmtree(workdir / name, ignore_errors=True)
            else:  # again under the lock: another run may have started since the check
                _refuse_another_config(config, workdir)
            records.write_json(workdir / "config.json", json.loads(config_lib.to_json(config)))
        ocp.multihost.sync_global_processes("claim_workdir")  # No-op with one process.
        yield


def lock(workdir: pathlib.Path):
    """The open, exclusively locked WORKDIR/.lock, naming its holder; refuses a held one.
    Closing it (or the holder's death) releases the lock."""
    handle = (workdir / LOCK_FILE).open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise UserError(
            f"The workdir {str(workdir)!r} is in use by another run ({holder}). Two runs in "
            "one workdir would interleave their records and checkpoints. Wait for that run to "
            "end (or stop it), or pass another --workdir."
        ) from None
    handle.seek(0)
    handle.truncate()
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    handle.write(f"pid {os.getpid()} on {socket.gethostname()}, started {started}\n")
    handle.flush()
    return handle
