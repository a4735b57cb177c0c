"""The vmap executor's training: sweep points that differ only in values that keep array shapes
train together as one compiled program, `jax.vmap` over stacked states, batches and keys.

Each point still gets its own run record (config.json, metrics.jsonl, summary.json, curves);
the group's checkpoints live in one directory, so a group resumes as a whole.
"""

import json
import pathlib
import time
from collections.abc import Sequence
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from research import config as config_lib
from research import data as data_lib
from research.sweep import Point
from research.train import loop, records
from research.train.checkpoint import Checkpointer
from research.train.optim import make_optimizer
from research.train.steps import TrainState, create_state, make_eval_step, make_train_step

# Values a group may vary: each lives in a traced array (the optimizer state's hyperparameters,
# the keys), never in an array shape or a Python branch. model.dropout_rate is not among them:
# flax's Dropout branches on the rate in Python (`rate == 0.0`), so it cannot be traced.
VMAPPED_KEYS = ("optimizer.learning_rate", "optimizer.weight_decay", "optimizer.momentum", "seed")


class GroupState(flax.struct.PyTreeNode):
    """What a group's checkpoint holds: every point's current and best-validation state."""

    step: jax.Array  # the group's step (a stopped point's own state.step stays where it stopped)
    current: TrainState  # stacked: every leaf has a leading [points] axis
    best: TrainState


def group_points(points: Sequence[Point]) -> list[list[Point]]:
    """Points whose configs agree outside VMAPPED_KEYS, in sweep order; one program per group."""
    groups: dict[str, list[Point]] = {}
    for point in points:
        flat = config_lib.flatten(json.loads(config_lib.to_json(point.config)))
        static = {k: v for k, v in flat.items() if k not in VMAPPED_KEYS}
        groups.setdefault(json.dumps(static, sort_keys=True), []).append(point)
    return list(groups.values())


def _group_optimizer_config(configs: Sequence[ml_collections.ConfigDict]):
    """The group's optimizer config: weight decay nonzero if any point's is, so every point gets
    the decay transform (a point with decay 0 then adds 0 * params, which changes nothing)."""
    optimizer = configs[0].optimizer.copy_and_resolve_references()
    decays = [c.optimizer.weight_decay for c in configs if c.optimizer.weight_decay]
    optimizer.weight_decay = decays[0] if decays else 0.0
    return optimizer


def _select(mask: jax.Array, new: jax.Array, old: jax.Array) -> jax.Array:
    """Per point (the leading axis): `new` where `mask`, else `old`."""
    return jnp.where(mask.reshape(-1, *[1] * (new.ndim - 1)), new, old)


def _stack(values: Sequence[float]) -> jax.Array:
    return jnp.asarray(np.asarray(values, np.float32))


def train_group(
    points: Sequence[Point], workdirs: Sequence[pathlib.Path], group_dir: pathlib.Path
) -> list[dict[str, Any]]:
    """Trains `points` (one group of group_points) together; returns each point's summary."""
    start_time = time.time()
    configs = [point.config for point in points]
    base = configs[0]
    for config, workdir in zip(configs, workdirs, strict=True):
        loop.prepare_workdir(config, workdir, overwrite=False)
    dataset, task, model = loop.build_setup(base)
    batch_size, num_epochs = base.data.batch_size, base.train.num_epochs
    steps_per_epoch = dataset.size("train") // batch_size
    total_steps = num_epochs * steps_per_epoch
    seeds = [config.seed for config in configs]
    keys = jax.vmap(lambda seed: jax.random.split(jax.random.key(seed)))(jnp.asarray(seeds))
    init_keys, step_keys = keys[:, 0], keys[:, 1]
    optimizer = _group_optimizer_config(configs)
    tx = make_optimizer(optimizer, steps_per_epoch, num_epochs)
    hyperparams = {
        "learning_rate": _stack([c.optimizer.learning_rate for c in configs]),
        "momentum": _stack([c.optimizer.momentum for c in configs]),
    }
    example = task.model_inputs(
        jax.tree.map(jnp.asarray, data_lib.train_batch(dataset, seeds[0], 0, 0, 1)),
        init_keys[0],
        train=False,
    )

    @jax.jit
    def init(init_keys, weight_decays):
        state = jax.vmap(lambda key: create_state(model, tx, example, key))(init_keys)
        opt_state = state.opt_state
        hparams = {**opt_state.hyperparams, "weight_decay": weight_decays}
        state = state.replace(opt_state=opt_state._replace(hyperparams=hparams))
        return GroupState(step=jnp.zeros((), jnp.int32), current=state, best=state)

    def point_step(step_key, hparams, state: TrainState, batch):
        """One point's train step; its optimizer is rebuilt from the traced peak learning rate
        and momentum, because optax schedules close over their peak value."""
        point_tx = make_optimizer(
            optimizer,
            steps_per_epoch,
            num_epochs,
            peak_learning_rate=hparams["learning_rate"],
            momentum=hparams["momentum"],
        )
        train_step = make_train_step(task, step_key, base.train.adversarial_epsilon)
        new, metrics = train_step(state.replace(tx=point_tx), batch)
        return new.replace(tx=state.tx), metrics

    def train_step(group: GroupState, active: jax.Array, batch):
        """Steps every point; a point that stopped early keeps its state."""
        new, metrics = jax.vmap(point_step)(step_keys, hyperparams, group.current, batch)
        current = jax.tree.map(lambda n, o: _select(active, n, o), new, group.current)
        return group.replace(step=group.step + 1, current=current), metrics

    @jax.jit
    def keep_best(group: GroupState, improved: jax.Array) -> GroupState:
        best = jax.tree.map(lambda n, o: _select(improved, n, o), group.current, group.best)
        return group.replace(best=best)

    eval_step = jax.jit(jax.vmap(make_eval_step(task), in_axes=(0, None)))

    def evaluate(state: TrainState, split: str) -> list[dict[str, float]]:
        sums = None
        for rows in data_lib.eval_batches(dataset, split, base.data.eval_batch_size):
            metrics = eval_step(state, jax.tree.map(jnp.asarray, rows))
            sums = metrics if sums is None else jax.tree.map(jnp.add, sums, metrics)
        sums = jax.device_get(sums)
        return [loop._averages({k: v[i] for k, v in sums.items()}) for i in range(len(points))]

    def batch_at(epoch: int, step: int):
        rows = [data_lib.train_batch(dataset, seed, epoch, step, batch_size) for seed in seeds]
        return {k: jnp.asarray(np.stack([r[k] for r in rows])) for k in rows[0]}

    group = init(init_keys, _stack([c.optimizer.weight_decay for c in configs]))
    checkpointer = Checkpointer(group_dir, base.train.keep_checkpoints)
    restored = checkpointer.restore_latest(group)
    if restored is None:
        meta = {"wall_time": 0.0, "train_time": 0.0, "compile_time": 0.0}
        meta["points"] = [{**loop.new_meta(), "trained_examples": 0} for _ in points]
    else:
        group, meta = restored
    start_step = int(group.step)
    point_steps = jax.device_get(group.current.step)
    logs = [records.MetricsLog(w, int(s)) for w, s in zip(workdirs, point_steps, strict=True)]

    def active_mask() -> jax.Array:
        return jnp.asarray([not m["stopped"] for m in meta["points"]])

    compile_start = time.time()
    step_fn = jax.jit(train_step, donate_argnums=0)
    step_fn = step_fn.lower(group, active_mask(), batch_at(0, 0)).compile()
    meta["compile_time"] += time.time() - compile_start
    segment_start = epoch_start = time.time()
    startup = segment_start - start_time
    sums, active = None, active_mask()
    for step in range(start_step, total_steps):
        if all(m["stopped"] for m in meta["points"]):
            break
        epoch, index = divmod(step, steps_per_epoch)
        group, metrics = step_fn(group, active, batch_at(epoch, index))
        sums = metrics if sums is None else jax.tree.map(jnp.add, sums, metrics)
        if index < steps_per_epoch - 1:
            continue
        seconds = time.time() - epoch_start
        meta["train_time"] += seconds
        val = evaluate(group.current, "val")
        lrs = jax.device_get(group.current.opt_state.hyperparams["learning_rate"])
        sums_host = jax.device_get(sums)
        improved = []
        wall_time = meta["wall_time"] + time.time() - segment_start
        trained = sum(not m["stopped"] for m in meta["points"]) * steps_per_epoch * batch_size
        for i, point_meta in enumerate(meta["points"]):
            if point_meta["stopped"]:
                improved.append(False)
                continue
            examples = steps_per_epoch * batch_size  # checkpoints are at epoch ends only
            point_meta["trained_examples"] += examples
            improved.append(
                loop.end_epoch(point_meta, val[i], task, base.train.patience, epoch, step)
            )
            train = loop._averages({k: v[i] for k, v in sums_host.items()})
            loop.write_epoch(
                logs[i], step, epoch, train, val[i], float(lrs[i]), examples / seconds, wall_time
            )
        print(
            f"vmap group of {len(points)}: epoch {epoch + 1}/{num_epochs}  val {task.target} "
            + " ".join(f"{v[task.target]:.4f}" for v in val)
            + f"  {trained / seconds:,.0f} examples/s",
            flush=True,
        )
        group = keep_best(group, jnp.asarray(improved))
        sums, active = None, active_mask()
        meta["wall_time"] = meta["wall_time"] + time.time() - segment_start
        segment_start = time.time()
        checkpointer.save(group, meta)
        epoch_start = time.time()
    checkpointer.wait()
    checkpointer.close()

    tests = evaluate(group.best, "test")
    wall_time = meta["wall_time"] + time.time() - segment_start
    summaries = []
    for i, (config, workdir, point_meta) in enumerate(
        zip(configs, workdirs, meta["points"], strict=True)
    ):
        steps = int(jax.device_get(group.current.step[i]))
        summary = loop.summarize(
            config,
            task,
            status="early_stopped" if point_meta["stopped"] else "finished",
            steps=steps,
            steps_per_epoch=steps_per_epoch,
            best=point_meta["best"],
            test=tests[i],
            examples_per_sec=point_meta["trained_examples"] / max(meta["train_time"], 1e-9),
            compile_time=meta["compile_time"],
            wall_time=wall_time,
            startup=startup,
            devices=1,
            executor="vmap",
            vmap_group_size=len(points),
        )
        loop.write_final_record(workdir, logs[i], summary)
        summaries.append(summary)
    return summaries
