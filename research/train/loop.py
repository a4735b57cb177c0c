"""The one training loop: every task and model runs through `train_and_evaluate(config, workdir)`.

Side effects live here (data loading, checkpoints, the run record, progress); the compiled
steps it calls are pure. A run is resumable at any checkpoint because the batch at a step is a
function of (seed, epoch, step) and the loop's own counters travel in the checkpoint.
"""

import contextlib
import json
import math
import pathlib
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import orbax.checkpoint as ocp

from research import config as config_lib
from research import data as data_lib
from research.errors import UserError
from research.models import build_model, data_fields
from research.tasks import Task, build_task
from research.train import records, sharding
from research.train.checkpoint import Checkpointer
from research.train.optim import evaluation_params, make_optimizer
from research.train.steps import create_state, make_eval_step, make_train_step

RECORD_FILES = ("config.json", "metrics.jsonl", "summary.json", "learning_curves.png")
RECORD_DIRS = ("checkpoints", "tensorboard")


class Preempted(Exception):
    """Raised after SIGTERM once the state is saved; the entry point exits 0."""

    def __init__(self, step: int):
        super().__init__(f"preempted at step {step}; rerun to resume")
        self.step = step


class Diverged(UserError):
    """The training loss became NaN or infinite; raised before the epoch is checkpointed."""

    def __init__(self, epoch: int, first_step: int, last_step: int, loss: float):
        super().__init__(
            f"training diverged by step {last_step}: the mean training loss of epoch {epoch} "
            f"(steps {first_step}-{last_step}) is {loss}. Nothing from that epoch was saved; "
            "the last checkpoint is intact. Lower optimizer.learning_rate or set "
            "optimizer.grad_clip_norm, then rerun in a new workdir or with --overwrite."
        )
        self.step = last_step


def prepare_workdir(config: ml_collections.ConfigDict, workdir: pathlib.Path, overwrite: bool):
    """Creates the workdir and config.json; refuses a config that differs from the saved one."""
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        probe = workdir / f".write_probe_{jax.process_index()}"  # One each: processes race.
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise UserError(
            f"The workdir {str(workdir)!r} cannot be written ({error.strerror}). "
            "Pass --workdir=DIR with a directory you can write to."
        ) from None
    saved = workdir / "config.json"
    if overwrite:
        if jax.process_index() == 0:  # One process clears; the others wait at the barrier below.
            for name in RECORD_FILES:
                (workdir / name).unlink(missing_ok=True)
            for name in RECORD_DIRS:
                shutil.rmtree(workdir / name, ignore_errors=True)
    elif saved.exists():
        diff = config_lib.differences(json.loads(saved.read_text()), config)
        if diff:
            lines = "; ".join(
                f"{k}: {old!r} in the workdir, {new!r} now" for k, (old, new) in diff.items()
            )
            raise UserError(
                f"The workdir {str(workdir)!r} holds a run with a different config ({lines}). "
                "Resuming it with this config would mix two experiments. Use a new --workdir, "
                "rerun with the saved config, or pass --overwrite to start over in this workdir."
            )
    if jax.process_index() == 0:
        records.write_json(saved, json.loads(config_lib.to_json(config)))
    ocp.multihost.sync_global_processes("prepare_workdir")  # No-op with one process.


def _model_kwargs(config: ml_collections.ConfigDict, info: dict[str, Any]) -> dict[str, Any]:
    kwargs = {k: tuple(v) if isinstance(v, list | tuple) else v for k, v in config.items()}
    kwargs.pop("name")
    for field in data_fields(config.name):
        if field in info:
            kwargs.setdefault(field, info[field])
    return kwargs


def build_setup(
    config: ml_collections.ConfigDict, dataset: data_lib.Dataset | None = None
) -> tuple[data_lib.Dataset, Task, nn.Module]:
    """The dataset, task and model a config names (shared with the vmap executor and
    launch.bench, which may pass stand-in data of the same shapes)."""
    dataset = dataset or data_lib.load(config.data)
    task = build_task(config.task, dataset.info)
    model = build_model(config.model.name, **_model_kwargs(config.model, dataset.info))
    return dataset, task, model


def build_steps(
    config: ml_collections.ConfigDict,
    dataset: data_lib.Dataset,
    task: Task,
    model: nn.Module,
    mesh: jax.sharding.Mesh,
) -> tuple[Any, Callable, Callable, int]:
    """(initial sharded state, jitted train and eval steps, steps per epoch), as every run
    builds them (shared with launch.bench); the train step donates its state."""
    sharding.check_batch_size(config.data.batch_size, mesh, "data.batch_size")
    sharding.check_batch_size(config.data.eval_batch_size, mesh, "data.eval_batch_size")
    steps_per_epoch = dataset.size("train") // config.data.batch_size
    init_key, step_key = jax.random.split(jax.random.key(config.seed))
    tx = make_optimizer(config.optimizer, steps_per_epoch, config.train.num_epochs)
    example = task.model_inputs(
        jax.tree.map(jnp.asarray, data_lib.train_batch(dataset, config.seed, 0, 0, 1)),
        init_key,
        train=False,
    )
    replicated, batch_sharding = sharding.replicated(mesh), sharding.batch_sharding(mesh)
    init = lambda key: create_state(model, tx, example, key)
    state_sharding = sharding.state_shardings(jax.eval_shape(init, init_key), mesh, config.mesh)
    state = jax.jit(init, out_shardings=state_sharding)(init_key)
    train_step = jax.jit(
        make_train_step(task, step_key, config.train.adversarial_epsilon),
        in_shardings=(state_sharding, batch_sharding),
        out_shardings=(state_sharding, replicated),
        donate_argnums=0,
    )
    eval_step = jax.jit(
        make_eval_step(task),
        in_shardings=(state_sharding, batch_sharding),
        out_shardings=replicated,
    )
    return state, train_step, eval_step, steps_per_epoch


def train_batch_at(
    dataset: data_lib.Dataset,
    config: ml_collections.ConfigDict,
    mesh: jax.sharding.Mesh,
    epoch: int,
    step: int,
) -> dict[str, jax.Array]:
    """The global training batch at (epoch, step), assembled from this process's rows."""
    process = (jax.process_index(), jax.process_count())
    batch_size = config.data.batch_size
    rows = data_lib.train_batch(dataset, config.seed, epoch, step, batch_size, process)
    return sharding.global_batch(rows, mesh)


def restore_best_params(
    workdir: str | pathlib.Path,
) -> tuple[ml_collections.ConfigDict, nn.Module, Any]:
    """(config, model, evaluation parameters of the best checkpoint) of a finished token-model
    run, for sampling and init_from: the parameter average where the run kept one. The target
    state is built as the loop builds it, with vocab_size from the run's vocab.json so that
    nothing reloads the data.
    """
    workdir = pathlib.Path(workdir)
    needed = [workdir / "config.json", workdir / "vocab.json", workdir / "checkpoints" / "best"]
    missing = [str(path) for path in needed if not path.exists()]
    if missing:
        raise UserError(
            f"{str(workdir)!r} is not the workdir of a finished run on text data: it lacks "
            f"{', '.join(missing)}. Pass the --workdir of such a run of launch.train."
        )
    config = ml_collections.ConfigDict(json.loads((workdir / "config.json").read_text()))
    info = {"vocab_size": json.loads((workdir / "vocab.json").read_text())["vocab_size"]}
    model = build_model(config.model.name, **_model_kwargs(config.model, info))
    tx = make_optimizer(config.optimizer, 1, config.train.num_epochs)
    init = lambda key: create_state(model, tx, jnp.ones((1, 1), jnp.int32), key)
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    target = jax.tree.map(  # shapes only: nothing is computed before the restore
        lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=device),
        jax.eval_shape(init, jax.random.key(0)),
    )
    checkpointer = Checkpointer(workdir, config.train.keep_checkpoints)
    restored = checkpointer.restore_best(target)
    checkpointer.close()
    if restored is None:
        raise UserError(f"{str(workdir)!r} has no best checkpoint yet; let its run finish.")
    state = restored[0]
    return config, model, evaluation_params(state.params, state.opt_state)


def init_shared_from(workdir: str, state: Any, info: dict[str, Any]) -> Any:
    """`state` with the parameter groups it shares with the best checkpoint of the run in
    `workdir` copied from there: the top-level groups both models have by name, such as a
    Transformer's `encoder` (from a masked LM) or an RNN's `embed` and `layers_<i>` (from a
    language model). The rest, the new task's head, keeps its initialisation.
    """
    _, _, source_params = restore_best_params(workdir)  # checks first that the files are there
    source_vocabulary = json.loads((pathlib.Path(workdir) / "vocab.json").read_text())
    if info.get("vocabulary") != source_vocabulary:
        raise UserError(
            f"init_from={workdir!r} was trained with another vocabulary than this run's data. "
            f"Tokenize with it: --config.data.vocab_path={workdir}/vocab.json."
        )
    shared = sorted(state.params.keys() & source_params.keys())
    if not shared:
        raise UserError(
            f"init_from={workdir!r}: its model shares no parameter group with this one (there: "
            f"{sorted(source_params)}; here: {sorted(state.params)}). Start from a run of the "
            "same family: a masked LM for a Transformer, a language model for an RNN."
        )

    def shapes(tree) -> dict[str, tuple[int, ...]]:
        leaves = jax.tree_util.tree_leaves_with_path({name: tree[name] for name in shared})
        return {jax.tree_util.keystr(path): tuple(leaf.shape) for path, leaf in leaves}

    here, there = shapes(state.params), shapes(source_params)
    if here != there:
        key = sorted(k for k in here.keys() | there.keys() if here.get(k) != there.get(k))[0]
        raise UserError(
            f"init_from={workdir!r}: its parameters ({', '.join(shared)}) do not fit this "
            f"model's ({key} is {there.get(key)} there, {here.get(key)} here). Set this run's "
            "model.* hyperparameters (widths, layers, heads, max_len; an RNN must be "
            "unidirectional, like a language model) to the pretraining run's."
        )
    copied = jax.tree.map(
        lambda new, old: jax.device_put(old, new.sharding),
        {name: state.params[name] for name in shared},
        {name: source_params[name] for name in shared},
    )
    return state.replace(params={**state.params, **copied})


def new_meta() -> dict[str, Any]:
    """The loop's counters before the first step; they travel in every checkpoint."""
    return {
        "epoch_sums": None,
        "best": None,
        "bad_epochs": 0,
        "stopped": False,
        "wall_time": 0.0,
        "train_time": 0.0,
        "trained_examples": 0,
        "compile_time": 0.0,
    }


def end_epoch(meta: dict, val_metrics: dict, task: Task, patience: int, epoch: int, step: int):
    """Records an epoch's validation in `meta` (best, patience, stop); True if it is the best."""
    best_value = meta["best"] and meta["best"]["val"][task.target]
    value = val_metrics[task.target]
    improved = _better(value, best_value, task.mode)
    if improved:
        meta["best"] = {"epoch": epoch + 1, "step": step + 1, "val": val_metrics}
    # Patience counts epochs without strict improvement; a tie is not progress.
    meta["bad_epochs"] = 0 if improved and value != best_value else meta["bad_epochs"] + 1
    meta["stopped"] = bool(patience) and meta["bad_epochs"] >= patience
    return improved


def write_epoch(log, step, epoch, train_metrics, val_metrics, lr, examples_per_sec, wall_time):
    """The epoch's train and val rows of metrics.jsonl."""
    common = {"step": step + 1, "epoch": epoch + 1}
    log.write(
        {
            **common,
            "split": "train",
            **train_metrics,
            "learning_rate": lr,
            "examples_per_sec": examples_per_sec,
            "wall_time": wall_time,
        }
    )
    log.write({**common, "split": "val", **val_metrics, "wall_time": wall_time})


def summarize(
    config: ml_collections.ConfigDict,
    task: Task,
    *,
    status: str,
    steps: int,
    steps_per_epoch: int,
    best: dict,
    test: dict[str, float],
    examples_per_sec: float,
    compile_time: float,
    wall_time: float,
    startup: float,
    **extra: Any,
) -> dict[str, Any]:
    """summary.json's dict; `extra` holds what only one executor knows (mesh, group size)."""
    return {
        "experiment": config.name,
        "status": status,
        "seed": config.seed,
        "steps": steps,
        "epochs": steps // steps_per_epoch,
        "target": {"metric": task.target, "mode": task.mode},
        "best": best,
        "test": test,
        "examples_per_sec": examples_per_sec,
        "compile_time_s": compile_time,
        "wall_time_s": wall_time,
        "startup_s": startup,
        "batch_size": config.data.batch_size,
        **extra,
        "versions": records.versions(),
        "git_commit": records.git_commit(),
    }


def write_final_record(workdir: pathlib.Path, log, summary: dict[str, Any]) -> None:
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
    log.close()
    records.write_json(workdir / "summary.json", summary)
    records.plot_learning_curves(workdir, summary["target"]["metric"], best["epoch"])


def _better(value: float, best: float | None, mode: str) -> bool:
    """Ties count as better: a later epoch with the same score has trained longer."""
    return best is None or (value >= best if mode == "max" else value <= best)


def _to_floats(sums: dict[str, Any]) -> dict[str, float]:
    """Device scalars as JSON floats (float32 values survive the round trip exactly)."""
    return {k: float(v) for k, v in jax.device_get(sums).items()}


def _averages(sums: dict[str, Any]) -> dict[str, float]:
    sums = jax.device_get(sums)
    count = float(sums["count"])
    return {k: float(v) / count for k, v in sums.items() if k != "count"}


@contextlib.contextmanager
def _sigterm_flag():
    """Turns SIGTERM into a flag the loop checks between steps (main thread only).

    Multi-process runs leave SIGTERM to JAX's preemption service, which makes every process
    agree on the step to stop at (`Checkpointer.reached_preemption`).
    """
    flag = {"set": False}
    if threading.current_thread() is not threading.main_thread() or jax.process_count() > 1:
        yield flag
        return
    previous = signal.signal(signal.SIGTERM, lambda *_: flag.update(set=True))
    try:
        yield flag
    finally:
        signal.signal(signal.SIGTERM, previous)


def train_and_evaluate(
    config: ml_collections.ConfigDict, workdir: str | pathlib.Path, overwrite: bool = False
) -> dict[str, Any]:
    """Trains, validates every epoch, tests the best checkpoint; returns summary.json's dict."""
    mesh = sharding.make_mesh(config.mesh)
    with jax.set_mesh(mesh):
        return _train_and_evaluate(config, workdir, overwrite, mesh)


def _train_and_evaluate(
    config: ml_collections.ConfigDict, workdir: str | pathlib.Path, overwrite: bool, mesh
) -> dict[str, Any]:
    start_time = time.time()
    workdir = pathlib.Path(workdir)
    prepare_workdir(config, workdir, overwrite)
    is_main = jax.process_index() == 0

    dataset, task, model = build_setup(config)
    if is_main and "vocabulary" in dataset.info:  # launch.sample and init_from read it
        records.write_json(workdir / "vocab.json", dataset.info["vocabulary"])
    batch_size, eval_batch_size = config.data.batch_size, config.data.eval_batch_size
    process = (jax.process_index(), jax.process_count())
    state, train_step, eval_step, steps_per_epoch = build_steps(config, dataset, task, model, mesh)
    total_steps = config.train.num_epochs * steps_per_epoch

    def batch_at(epoch: int, step: int):
        return train_batch_at(dataset, config, mesh, epoch, step)

    def evaluate(state, split: str) -> dict[str, float]:
        sums = None
        for rows in data_lib.eval_batches(dataset, split, eval_batch_size, process):
            metrics = eval_step(state, sharding.global_batch(rows, mesh))
            sums = metrics if sums is None else jax.tree.map(jnp.add, sums, metrics)
        return _averages(sums)

    checkpointer = Checkpointer(workdir, config.train.keep_checkpoints)
    restored = checkpointer.restore_latest(state)
    if restored is None:
        meta = new_meta()
        if config.init_from:
            state = init_shared_from(config.init_from, state, dataset.info)
    else:
        state, meta = restored
    start_step = int(jax.device_get(state.step))
    log = records.MetricsLog(workdir, start_step) if is_main else None

    compile_start = time.time()
    train_step = train_step.lower(state, batch_at(0, 0)).compile()
    meta["compile_time"] += time.time() - compile_start
    segment_start = time.time()
    startup_seconds = segment_start - start_time

    def wall_time() -> float:
        return meta["wall_time"] + time.time() - segment_start

    sums = meta["epoch_sums"] and jax.tree.map(jnp.float32, meta["epoch_sums"])
    epoch_start, epoch_first_step = time.time(), start_step
    every = config.train.checkpoint_every_steps
    progress = _progress(total_steps, start_step)
    with _sigterm_flag() as sigterm:
        for step in range(start_step, total_steps):
            if meta["stopped"]:
                break
            epoch, index = divmod(step, steps_per_epoch)
            state, metrics = train_step(state, batch_at(epoch, index))
            preempted = sigterm["set"] or checkpointer.reached_preemption(step + 1)
            sums = metrics if sums is None else jax.tree.map(jnp.add, sums, metrics)
            progress.update(1)
            if index == steps_per_epoch - 1:
                train_metrics = _averages(sums)
                if not math.isfinite(train_metrics["loss"]):
                    progress.close()
                    raise Diverged(epoch + 1, epoch_first_step + 1, step + 1, train_metrics["loss"])
                seconds = time.time() - epoch_start
                examples = (step + 1 - epoch_first_step) * batch_size
                meta["train_time"] += seconds
                meta["trained_examples"] += examples
                val_metrics = evaluate(state, "val")
                improved = end_epoch(meta, val_metrics, task, config.train.patience, epoch, step)
                lr = float(jax.device_get(state.opt_state.hyperparams["learning_rate"]))
                rate = examples / seconds
                if log:
                    write_epoch(log, step, epoch, train_metrics, val_metrics, lr, rate, wall_time())
                progress.epoch(epoch + 1, config.train.num_epochs, train_metrics, val_metrics, rate)
                sums = None
                meta.update(epoch_sums=None, wall_time=wall_time())
                segment_start = time.time()
                checkpointer.save(state, meta, best=improved)
                epoch_start, epoch_first_step = time.time(), step + 1
            elif (every and (step + 1) % every == 0) or preempted:
                meta.update(epoch_sums=_to_floats(sums), wall_time=wall_time())
                segment_start = time.time()
                checkpointer.save(state, meta)
            if preempted:
                checkpointer.wait()
                progress.close()
                raise Preempted(step + 1)
        status = "early_stopped" if meta["stopped"] else "finished"
    progress.close()
    checkpointer.wait()

    best_state, best_meta = checkpointer.restore_best(state)
    test_metrics = evaluate(best_state, "test")
    summary = summarize(
        config,
        task,
        status=status,
        steps=int(jax.device_get(state.step)),
        steps_per_epoch=steps_per_epoch,
        best=best_meta["best"],
        test=test_metrics,
        examples_per_sec=meta["trained_examples"] / max(meta["train_time"], 1e-9),
        compile_time=meta["compile_time"],
        wall_time=wall_time(),
        startup=startup_seconds,
        devices=mesh.size,
        mesh=dict(mesh.shape),
        processes=jax.process_count(),
    )
    if log:
        write_final_record(workdir, log, summary)
    checkpointer.close()
    return summary


class _progress:
    """A tqdm bar with rate and ETA on a terminal; one plain line per epoch otherwise.

    Only process 0 reports, so a multi-host run prints each epoch once.
    """

    def __init__(self, total: int, initial: int):
        self.bar = None
        self.quiet = jax.process_index() != 0
        if sys.stderr.isatty() and not self.quiet:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True)

    def update(self, n: int) -> None:
        if self.bar:
            self.bar.update(n)

    def epoch(self, epoch, num_epochs, train, val, rate) -> None:
        text = (
            f"epoch {epoch}/{num_epochs}  train loss {train['loss']:.4f}  "
            + "  ".join(f"val {k} {v:.4f}" for k, v in val.items())
            + f"  {rate:,.0f} examples/s"
        )
        if self.bar:
            self.bar.set_postfix_str(text.split("  ", 1)[1])
        elif not self.quiet:
            print(text, flush=True)

    def close(self) -> None:
        if self.bar:
            self.bar.close()
