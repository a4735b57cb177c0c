"""The points one compiled program trains, over one of two state layouts.

- single: one point's state, sharded over the mesh like any run (multi-host too);
- stacked: points that differ only in traced values (`VMAPPED_KEYS`) have their states stacked
  along a leading points axis and stepped under `jax.vmap`; the points axis is laid over the
  devices when it divides evenly (8 points on 8 devices run as one program), else each point's
  batch is split over them.

Both layouts expose the same functions, with metrics carrying a leading [points] axis, so the
loop never asks which one it drives. Pure construction: no files.
"""

import dataclasses
import functools
import json
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from research import config as config_lib
from research import data as data_lib
from research.errors import UserError
from research.sweep import Point
from research.tasks import Task
from research.train import sharding
from research.train.optim import make_optimizer
from research.train.steps import create_state, make_eval_step, make_train_step

# Values a stacked group may vary: each lives in a traced array (the optimizer's hyperparameters,
# the keys), never in an array shape or a Python branch. model.dropout_rate is not among them:
# flax's Dropout branches on the rate in Python (`rate == 0.0`), so it cannot be traced.
VMAPPED_KEYS = ("optimizer.learning_rate", "optimizer.weight_decay", "optimizer.momentum", "seed")


def static_key(config: ml_collections.ConfigDict) -> str:
    """The config outside VMAPPED_KEYS, as text: points with equal keys stack."""
    flat = config_lib.flatten(json.loads(config_lib.to_json(config)))
    return json.dumps({k: v for k, v in flat.items() if k not in VMAPPED_KEYS}, sort_keys=True)


def group_points(points: Sequence[Point], max_size: int | None = None) -> list[list[Point]]:
    """Points whose configs agree outside VMAPPED_KEYS, in sweep order, in groups of at most
    `max_size` (all of them by default); one program per group. A cap serves machines where a
    group costs more per point and step than separate runs (XLA's CPU backend with conv nets:
    README, "Sweeps")."""
    groups: dict[str, list[Point]] = {}
    for point in points:
        groups.setdefault(static_key(point.config), []).append(point)
    size = max_size or len(points)
    return [group[i : i + size] for group in groups.values() for i in range(0, len(group), size)]


def point_sums(sums: dict[str, Any]) -> list[dict[str, float]]:
    """Metric sums [points] as one dict of floats per point (float32 survives JSON exactly)."""
    sums = {k: np.asarray(v).reshape(-1) for k, v in jax.device_get(sums).items()}
    return [{k: float(v[i]) for k, v in sums.items()} for i in range(len(sums["count"]))]


def means(sums: list[dict[str, float]]) -> list[dict[str, float]]:
    """Each point's metric sums (of `point_sums`) divided by their `count`."""
    return [{k: v / point["count"] for k, v in point.items() if k != "count"} for point in sums]


def averages(sums: dict[str, Any]) -> list[dict[str, float]]:
    """Per point, the metric sums [points] divided by their `count`."""
    return means(point_sums(sums))


def per_point(leaf: Any) -> np.ndarray:
    """A state leaf of either layout as a host array with one entry per point."""
    return np.asarray(jax.device_get(leaf)).reshape(-1)


@functools.partial(jax.jit, static_argnums=1)
def _all_finite(params: Any, stacked: bool) -> jax.Array:
    axes = (lambda leaf: tuple(range(1, leaf.ndim))) if stacked else (lambda leaf: None)
    checks = [jnp.isfinite(leaf).all(axis=axes(leaf)) for leaf in jax.tree.leaves(params)]
    return jnp.stack(checks).all(axis=0)


def _place(rows: dict[str, np.ndarray], placement: NamedSharding) -> dict[str, jax.Array]:
    """A global batch from this process's rows."""
    return {k: jax.make_array_from_process_local_data(placement, v) for k, v in rows.items()}


@dataclasses.dataclass
class Population:
    """A group's state and compiled steps; every metric has a leading [points] axis."""

    configs: list[ml_collections.ConfigDict]
    stacked: bool
    train_step: Callable  # jitted (state, active [points] bool, batch) -> (state, metric sums)
    # jitted (state, active, sums, batches [steps, ...]) -> (state, sums, first step's metrics):
    # several steps per call; a scan, slower per step than `train_step` for convolutional nets
    # on CPU (README "Several steps per dispatch"), so single steps go through `train_step`
    train_steps: Callable
    metric_shapes: Any  # the metric sums [points] as ShapeDtypeStructs
    batch_shapes: Any  # one step's batch of every point as ShapeDtypeStructs
    compiler_options: dict | None  # for compiling the train steps on this backend
    eval_step: Callable  # jitted (state, batch) -> metric sums
    point_target: Any  # one point's state as ShapeDtypeStructs with shardings, for restores
    steps_per_epoch: int
    dataset: data_lib.Dataset
    mesh: jax.sharding.Mesh
    state_sharding: Any
    batch_sharding: NamedSharding
    eval_batch_sharding: NamedSharding
    steps_batch_sharding: NamedSharding  # batches [steps, ...] of several steps

    @property
    def size(self) -> int:
        return len(self.configs)

    def __post_init__(self):
        base = self.configs[0]
        limit = self.steps_per_epoch * base.train.num_epochs
        depth = base.data.prefetch * base.train.steps_per_dispatch
        self._prefetch = data_lib.Prefetcher(self._host_batch, depth, limit)

    def close(self) -> None:
        """Stops reading batches ahead (the run ended, or stopped early)."""
        self._prefetch.close()

    def _host_batch(self, index: int) -> dict[str, np.ndarray]:
        """The rows of this process of every point's batch at step `index` of the run."""
        epoch, step = divmod(index, self.steps_per_epoch)
        batch_size = self.configs[0].data.batch_size
        process = (jax.process_index(), jax.process_count())
        seeds = [config.seed for config in self.configs]
        rows = {
            s: data_lib.train_batch(self.dataset, s, epoch, step, batch_size, process)
            for s in seeds
        }
        if not self.stacked:
            return rows[seeds[0]]
        return {k: np.stack([rows[s][k] for s in seeds]) for k in rows[seeds[0]]}

    def batch_at(self, epoch: int, step: int) -> dict[str, jax.Array]:
        """The training batch of every point at (epoch, step): each point's own data order,
        read ahead while the device computes."""
        return _place(self._prefetch(epoch * self.steps_per_epoch + step), self.batch_sharding)

    def batches_at(self, first: int, count: int) -> dict[str, jax.Array]:
        """The training batches of the run's steps [first, first + count), stacked [count, ...]
        and placed at once, for `train_steps`."""
        rows = [self._prefetch(index) for index in range(first, first + count)]
        stacked = {k: np.stack([row[k] for row in rows]) for k in rows[0]}
        return _place(stacked, self.steps_batch_sharding)

    def abstract_batches(self, count: int | None = None) -> dict[str, jax.ShapeDtypeStruct]:
        """The shapes and placement of `batches_at(first, count)`, or of one step's batch
        (`batch_at`) without a count, for compiling."""
        if count is None:
            shape, placement = (), self.batch_sharding
        else:
            shape, placement = (count,), self.steps_batch_sharding
        return jax.tree.map(
            lambda s: jax.ShapeDtypeStruct((*shape, *s.shape), s.dtype, sharding=placement),
            self.batch_shapes,
        )

    def zero_sums(self) -> dict[str, jax.Array]:
        """Metric sums [points] of no step, where an epoch's sums start."""
        zeros = lambda s: jnp.zeros(s.shape, s.dtype, device=sharding.replicated(self.mesh))
        return jax.tree.map(zeros, self.metric_shapes)

    def evaluate(self, state: Any, split: str) -> list[dict[str, float]]:
        """Every point's mean metrics over a whole split."""
        process = (jax.process_index(), jax.process_count())
        sums = None
        batch_size = self.configs[0].data.eval_batch_size
        for rows in data_lib.eval_batches(self.dataset, split, batch_size, process):
            metrics = self.eval_step(state, _place(rows, self.eval_batch_sharding))
            sums = metrics if sums is None else jax.tree.map(jnp.add, sums, metrics)
        return averages(sums)

    def finite(self, state: Any) -> np.ndarray:
        """Per point, whether every parameter is finite (a NaN can hide behind a finite loss:
        the loss is computed before the update that broke the parameters)."""
        return per_point(_all_finite(state.params, self.stacked))

    def point(self, state: Any, index: int) -> Any:
        """Point `index`'s own state (what its best checkpoint holds)."""
        return jax.tree.map(lambda leaf: leaf[index], state) if self.stacked else state

    def join(self, states: Sequence[Any]) -> Any:
        """The population's state from every point's (the inverse of `point`)."""
        if not self.stacked:
            return states[0]
        stacked = jax.tree.map(lambda *leaves: jnp.stack(leaves), *states)
        return jax.device_put(stacked, self.state_sharding)


# XLA's CPU backend at its default optimisation level compiles a network's initialisation (a
# random-number program per parameter) about 6x slower than at level 2, which gives the same
# bits (ResNet-18: 35 s -> 6 s on 2 cores). Initialisation runs once, so nothing is lost.
INIT_COMPILER_OPTIONS = {"xla_backend_optimization_level": 2}

# XLA's CPU backend hands matmuls and convolutions to YNNPACK, the convolutions with layout
# transposes around them. Its own convolutions are faster here (train steps: ResNet-20 1.53x,
# MNIST LeNet-5 1.13x, digits LeNet-5 0.92x; README "CPU speed") and as accurate (tests/
# test_speed.py), while YNNPACK's matmuls are the faster ones: YNNPACK keeps the matmuls only.
CPU_STEP_COMPILER_OPTIONS = {
    "xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"
}


def build_population(
    configs: Sequence[ml_collections.ConfigDict],
    dataset: data_lib.Dataset,
    task: Task,
    model: nn.Module,
    mesh: jax.sharding.Mesh,
    stacked: bool,
) -> tuple[Population, Any]:
    """The jitted steps of `configs` (one, unless `stacked`), which agree outside
    VMAPPED_KEYS, and their initial state: one point's, or the points' stacked. The state is
    not kept in the population, which lives as long as the run: the train step donates it."""
    base = configs[0]
    if not stacked and len(configs) != 1:
        raise ValueError("only a stacked population holds several points")
    if stacked and jax.process_count() > 1:
        raise UserError("A vmapped group trains in one process; run multi-host jobs one by one.")
    steps_per_epoch = dataset.size("train") // base.data.batch_size
    keys = jax.vmap(lambda seed: jax.random.split(jax.random.key(seed)))(
        jnp.asarray([config.seed for config in configs])
    )
    init_keys, step_keys = keys[:, 0], keys[:, 1]
    hyperparams = {
        name: jnp.asarray(np.asarray([config.optimizer[name] for config in configs], np.float32))
        for name in ("learning_rate", "momentum", "weight_decay")
    }
    num_epochs = base.train.num_epochs
    tx = make_optimizer(base.optimizer, steps_per_epoch, num_epochs)
    first_rows = data_lib.train_batch(dataset, base.seed, 0, 0, 1)
    example, _ = task.model_inputs(jax.tree.map(jnp.asarray, first_rows), init_keys[0], train=False)

    def init_point(key, weight_decay):
        state = create_state(model, tx, example, key)
        opt_state = state.opt_state
        hparams = {**opt_state.hyperparams, "weight_decay": weight_decay}
        return state.replace(opt_state=opt_state._replace(hyperparams=hparams))

    def point_step(step_key, hparams, state, batch):
        """One point's step; its optimizer is rebuilt from the traced peak learning rate and
        momentum, because optax schedules close over their peak value."""
        point_tx = make_optimizer(
            base.optimizer,
            steps_per_epoch,
            num_epochs,
            peak_learning_rate=hparams["learning_rate"],
            momentum=hparams["momentum"],
        )
        train_step = make_train_step(
            task, step_key, base.train.adversarial_epsilon, base.train.grad_accum_steps
        )
        new, metrics = train_step(state.replace(tx=point_tx), batch)
        return new.replace(tx=state.tx), metrics

    point_abstract = jax.eval_shape(init_point, init_keys[0], hyperparams["weight_decay"][0])
    point_sharding = sharding.state_shardings(point_abstract, mesh, base.mesh)
    point_target = jax.tree.map(
        lambda leaf, s: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=s),
        point_abstract,
        point_sharding,
    )
    replicated = sharding.replicated(mesh)
    # Stacked points lie over the devices when they divide evenly: each device trains whole
    # points on whole batches. Otherwise each point's batch is split over them, as in a run.
    over_devices = stacked and len(configs) % mesh.size == 0 and mesh.shape["fsdp"] == 1
    if not over_devices:
        accumulated = base.train.grad_accum_steps > 1
        sharding.check_batch_size(
            base.data.batch_size // base.train.grad_accum_steps,
            mesh,
            "the micro-batch data.batch_size / train.grad_accum_steps"
            if accumulated
            else "data.batch_size",
        )
        sharding.check_batch_size(base.data.eval_batch_size, mesh, "data.eval_batch_size")
    add_points_axis = lambda tree: jax.tree.map(lambda leaf: leaf[None], tree)
    eval_point = make_eval_step(task)

    if not stacked:
        state_sharding, batch_sharding = point_sharding, sharding.batch_sharding(mesh)
        eval_batch_sharding = batch_sharding
        init = lambda keys, decays: init_point(keys[0], decays[0])

        def step(state, active, batch):
            del active  # the loop ends when its only point stops
            point_hparams = {name: value[0] for name, value in hyperparams.items()}
            new, metrics = point_step(step_keys[0], point_hparams, state, batch)
            return new, add_points_axis(metrics)

        evaluate = lambda state, batch: add_points_axis(eval_point(state, batch))
    else:
        if over_devices:
            points_axis = NamedSharding(mesh, PartitionSpec(sharding.BATCH_AXES))
            state_sharding = jax.tree.map(lambda _: points_axis, point_sharding)
            batch_sharding, eval_batch_sharding = points_axis, replicated
        else:
            state_sharding = jax.tree.map(
                lambda s: NamedSharding(mesh, PartitionSpec(None, *s.spec)), point_sharding
            )
            eval_batch_sharding = sharding.batch_sharding(mesh)
            batch_sharding = NamedSharding(mesh, PartitionSpec(None, sharding.BATCH_AXES))
        init = jax.vmap(init_point)

        def step(state, active, batch):
            """Steps every point; a point that stopped keeps its state."""
            new, metrics = jax.vmap(point_step)(step_keys, hyperparams, state, batch)
            keep = lambda n, o: jnp.where(active.reshape(-1, *[1] * (n.ndim - 1)), n, o)
            return jax.tree.map(keep, new, state), metrics

        evaluate = jax.vmap(eval_point, in_axes=(0, None))

    def steps(state, active, sums, batches):
        """`step` over batches [steps, ...] in order, each step's metric sums added to `sums`
        as it is made, as the loop adds them after single steps; also the first step's
        metrics (the run's first loss, against which divergence is judged)."""

        def one(carry, batch):
            state, sums = carry
            state, metrics = step(state, active, batch)
            return (state, jax.tree.map(jnp.add, sums, metrics)), metrics

        (state, sums), metrics = jax.lax.scan(one, (state, sums), batches)
        return state, sums, jax.tree.map(lambda leaf: leaf[0], metrics)

    steps_batch_sharding = NamedSharding(mesh, PartitionSpec(None, *batch_sharding.spec))
    decays = hyperparams["weight_decay"]
    init = jax.jit(init, out_shardings=state_sharding).lower(init_keys, decays)
    state = init.compile(compiler_options=INIT_COMPILER_OPTIONS)(init_keys, decays)
    points = (len(configs),) if stacked else ()
    batch = jax.tree.map(
        lambda leaf: jax.ShapeDtypeStruct(
            (*points, base.data.batch_size, *leaf.shape[1:]), leaf.dtype
        ),
        first_rows,
    )
    active = jax.ShapeDtypeStruct((len(configs),), bool)
    metric_shapes = jax.eval_shape(step, state, active, batch)[1]
    population = Population(
        configs=list(configs),
        stacked=stacked,
        train_step=jax.jit(
            step,
            in_shardings=(state_sharding, replicated, batch_sharding),
            out_shardings=(state_sharding, replicated),
            donate_argnums=0,
        ),
        train_steps=jax.jit(
            steps,
            in_shardings=(state_sharding, replicated, replicated, steps_batch_sharding),
            out_shardings=(state_sharding, replicated, replicated),
            donate_argnums=(0, 2),
        ),
        metric_shapes=metric_shapes,
        batch_shapes=batch,
        compiler_options=(
            CPU_STEP_COMPILER_OPTIONS if mesh.devices.flat[0].platform == "cpu" else None
        ),
        eval_step=jax.jit(
            evaluate, in_shardings=(state_sharding, eval_batch_sharding), out_shardings=replicated
        ),
        point_target=point_target,
        steps_per_epoch=steps_per_epoch,
        dataset=dataset,
        mesh=mesh,
        state_sharding=state_sharding,
        batch_sharding=batch_sharding,
        eval_batch_sharding=eval_batch_sharding,
        steps_batch_sharding=steps_batch_sharding,
    )
    return population, state
