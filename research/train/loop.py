"""The one training loop: a single run is a group of one point; a vmapped sweep group is a
population of points stepped as one program. Every lifecycle feature lives here once.

Side effects (data loading, checkpoints, the run record, progress) live in the loop; the steps it
calls are pure. A run resumes at any checkpoint because the batch at a step is a function of
(seed, epoch, step) and the loop's counters travel in the checkpoint.
"""

import contextlib
import dataclasses
import datetime
import pathlib
import sys
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from research.train import records, sharding
from research.train.checkpoint import Checkpointer, has_checkpoint, other_version
from research.train.counters import (
    DIVERGED,
    EARLY_STOPPED,
    FINISHED,
    Chrono,
    Counters,
    PointCounters,
)
from research.train.lifecycle import Diverged, Preempted, StopSignal, has_diverged
from research.train.population import (
    Population,
    averages,
    build_population,
    means,
    per_point,
    point_sums,
    static_key,
)
from research.train.profiling import Trace
from research.train.setup import build_setup
from research.train.transfer import init_shared_from
from research.train.workdir import check_workdir, claim_workdir, with_saved_vocabulary
from research.validation import validate


def train_and_evaluate(
    config: ml_collections.ConfigDict, workdir: str | pathlib.Path, overwrite: bool = False
) -> dict[str, Any]:
    """Trains one run, validates every epoch, tests the best checkpoint; returns summary.json's
    dict. Raises Diverged if the loss did, Preempted after a SIGTERM (state saved)."""
    workdir = pathlib.Path(workdir)
    (result,) = train_points([config], [workdir], workdir, stacked=False, overwrite=overwrite)
    if isinstance(result, Diverged):
        raise result
    return result


def train_points(
    configs: Sequence[ml_collections.ConfigDict],
    workdirs: Sequence[pathlib.Path],
    run_dir: pathlib.Path,
    *,
    stacked: bool,
    overwrite: bool = False,
    until_epoch: int | None = None,
    origin: "Origin | None" = None,
) -> "list[dict[str, Any] | Diverged] | Paused":
    """Trains points whose configs differ only in `population.VMAPPED_KEYS` (one unless
    `stacked`), each with its run record in its workdir and the group's latest checkpoints in
    `run_dir`. Returns each point's summary, or the Diverged error of a point that diverged
    (the others carry on). Nothing in a workdir is written or deleted until the data, model,
    task and initial state are built; a stop signal at any phase raises Preempted.

    A tuner's hooks: `until_epoch` pauses after that epoch (saved, not tested) and returns
    `Paused`, so that a later call goes on; `origin` starts a new group from some points of
    another group's newest checkpoint."""
    validate(*configs)
    if stacked and (overwrite or len({static_key(config) for config in configs}) != 1):
        raise ValueError("a stacked group is points that agree outside VMAPPED_KEYS, no overwrite")
    chrono = Chrono()
    mesh = sharding.make_mesh(configs[0].mesh)
    with StopSignal().installed() as stop, jax.set_mesh(mesh):
        for config, workdir in zip(configs, workdirs, strict=True):
            check_workdir(config, workdir, overwrite)
        dataset, task, model = build_setup(
            with_saved_vocabulary(configs[0], workdirs[0], overwrite)
        )
        population, state = build_population(configs, dataset, task, model, mesh, stacked)
        fresh = origin is None and (overwrite or not has_checkpoint(run_dir))
        if configs[0].init_from and fresh:
            points = [population.point(state, i) for i in range(population.size)]
            points = init_shared_from(configs[0].init_from, points, dataset.info)
            state = population.join(points)
        stop.check("during start-up, before anything was written")
        with contextlib.ExitStack() as claimed:
            for config, workdir in zip(configs, workdirs, strict=True):
                claimed.enter_context(claim_workdir(config, workdir, overwrite))
            run = _Run(population, task, run_dir, workdirs, chrono, stop, until_epoch)
            claimed.callback(run.checkpointer.close)
            claimed.callback(population.close)
            claimed.callback(run.trace.stop)
            state = run.start(state, dataset.info, origin)
            state = run.train(state)
            if run.training() and run.last_epoch < configs[0].train.num_epochs:
                return run.pause()
            return run.test(state)


def steps_in_dispatch(step: int, steps_per_epoch: int, per_dispatch: int, every: int) -> int:
    """How many steps one call to the device runs from `step`: `per_dispatch` (the config's
    `train.steps_per_dispatch`) from a multiple of it within the epoch when no epoch end and no
    checkpoint (every `every` steps; 0: none) falls inside, else 1. A function of the step, so a
    resumed run dispatches exactly as an uninterrupted one."""
    index = step % steps_per_epoch
    if index % per_dispatch or index + per_dispatch > steps_per_epoch:
        return 1
    if every and step // every != (step + per_dispatch - 1) // every:
        return 1
    return per_dispatch


def dispatch_lengths(steps_per_epoch: int, per_dispatch: int, every: int) -> set[int]:
    """Every length `steps_in_dispatch` gives over a run (one program to compile for each)."""
    if per_dispatch > steps_per_epoch or 0 < every < per_dispatch:
        return {1}
    aligned = steps_per_epoch % per_dispatch == 0 and every % per_dispatch == 0
    return {per_dispatch} if aligned else {1, per_dispatch}


@dataclasses.dataclass(frozen=True)
class Paused:
    """A group paused after `until_epoch`: every point's counters, and the validation metric
    (and "max" or "min") that picked each one's best epoch."""

    points: list[PointCounters]
    target: str
    mode: str


@dataclasses.dataclass(frozen=True)
class Origin:
    """Where a group split off another starts (a tuner's survivors go on without the others):
    that group's `run_dir`, its number of points and the `indices` of those this group
    continues, each with its state and counters. With `stopped`, they stop there (their
    runs end, tested, as early-stopped)."""

    run_dir: pathlib.Path
    size: int
    indices: tuple[int, ...]
    stopped: bool = False

    def restore(self, state: Any, mesh: jax.sharding.Mesh) -> tuple[Any, dict]:
        """(state, counters JSON) of these points, shaped and sharded like `state`."""
        replicated = sharding.replicated(mesh)
        target = jax.tree.map(
            lambda leaf: jax.ShapeDtypeStruct(
                (self.size, *leaf.shape[1:]), leaf.dtype, sharding=replicated
            ),
            state,
        )
        checkpointer = Checkpointer(self.run_dir, [], keep=1)
        try:
            restored = checkpointer.restore_latest(target)
        finally:
            checkpointer.close()
        if restored is None:
            raise ValueError(f"no checkpoint in {self.run_dir} to continue from")
        stacked, meta = restored
        rows = jnp.asarray(self.indices)
        shardings = jax.tree.map(lambda leaf: leaf.sharding, state)
        pick = jax.jit(
            lambda tree: jax.tree.map(lambda leaf: leaf[rows], tree), out_shardings=shardings
        )
        points = [meta["points"][i] for i in self.indices]
        return pick(stacked), {**meta, "points": points}


class _Run:
    """One population's run: the loop over steps and what happens at an epoch's end."""

    def __init__(self, population: Population, task, run_dir, workdirs, chrono, stop, until_epoch):
        self.population, self.task, self.workdirs = population, task, workdirs
        self.chrono, self.stop = chrono, stop
        self.config = population.configs[0]
        self.checkpointer = Checkpointer(run_dir, workdirs, self.config.train.keep_checkpoints)
        self.trace = Trace(self.config.train.profile_steps, pathlib.Path(run_dir) / "profile")
        self.counters = Counters.new(population.size)
        self.last_saved: int | None = None  # the newest step saved, for divergence messages
        self.epoch_first_step = 0  # the first step this process trained in the current epoch
        self.logs: list[records.MetricsLog] | None = None  # process 0 only
        # The epoch after which train() returns: the last one, or where a tuner pauses.
        self.last_epoch = until_epoch or self.config.train.num_epochs

    def start(self, state: Any, info: dict[str, Any], origin: Origin | None = None) -> Any:
        """The state to train from: the newest intact checkpoint, else the origin's, else
        `state`; opens the records (cut back to the checkpoint) and writes each point's
        vocab.json."""
        restored = self.checkpointer.restore_latest(state)
        if restored is None and origin is not None:
            restored = origin.restore(state, self.population.mesh)
        if restored is not None:
            try:
                state, self.counters = restored[0], Counters.from_json(restored[1])
            except (KeyError, TypeError):
                raise other_version(self.checkpointer.latest.directory) from None
            self.chrono.resume(self.counters.seconds)
            self.last_saved = self.counters.step
        if origin is not None and origin.stopped:
            for point in self.counters.points:
                point.status = EARLY_STOPPED if point.active else point.status
        if jax.process_index() == 0:
            self.logs = [
                records.MetricsLog(w, self.counters.step, config)
                for w, config in zip(self.workdirs, self.population.configs, strict=True)
            ]
            if "vocabulary" in info:  # launch.sample and init_from read it
                for workdir in self.workdirs:
                    records.write_json(workdir / "vocab.json", info["vocabulary"])
        return state

    def active_mask(self) -> jax.Array:
        """[points] bool: which points the train step moves (the others stay frozen)."""
        return jnp.asarray([point.active for point in self.counters.points])

    def training(self) -> list[int]:
        """The points still training."""
        return [i for i, point in enumerate(self.counters.points) if point.active]

    def train(self, state: Any) -> Any:
        """Steps until every point has stopped or the last epoch ends; on a stop signal saves
        and raises Preempted."""
        population, counters, chrono = self.population, self.counters, self.chrono
        steps_per_epoch = population.steps_per_epoch
        total_steps = self.last_epoch * steps_per_epoch
        every = self.config.train.checkpoint_every_steps
        per_dispatch = self.config.train.steps_per_dispatch
        if counters.step >= total_steps or not self.training():
            return state  # a finished run rerun: only the test evaluation is left
        active = self.active_mask()
        sums = self._saved_sums()
        with chrono.measure("compile"):
            options, programs = population.compiler_options, {}
            for length in dispatch_lengths(steps_per_epoch, per_dispatch, every):
                if length == 1:
                    lowered = population.train_step.lower(
                        state, active, population.abstract_batches()
                    )
                else:
                    batches = population.abstract_batches(length)
                    lowered = population.train_steps.lower(state, active, sums, batches)
                programs[length] = lowered.compile(options)
        self.stop.check(f"while compiling, at step {counters.step}")
        progress = _Progress(total_steps, counters.step)
        chrono.start_training()
        self.epoch_first_step = counters.step
        step = counters.step
        while step < total_steps and self.training():
            epoch, index = divmod(step, steps_per_epoch)
            length = steps_in_dispatch(step, steps_per_epoch, per_dispatch, every)
            self.trace.at(step, state, length)
            if length == 1:
                batch = population.batch_at(epoch, index)
                state, first = programs[1](state, active, batch)
                sums = jax.tree.map(jnp.add, sums, first)
            else:
                batches = population.batches_at(step, length)
                state, sums, first = programs[length](state, active, sums, batches)
            if step == 0:
                for point, first_metrics in zip(counters.points, averages(first), strict=True):
                    point.first_loss = first_metrics["loss"]
            step = counters.step = step + length
            progress.update(length)
            preempted = self.stop.requested or any(
                self.checkpointer.reached_preemption(s) for s in range(step - length + 1, step + 1)
            )
            saved = False
            if index + length == steps_per_epoch:
                saved = self.end_epoch(state, sums, epoch, progress)
                sums, active = population.zero_sums(), self.active_mask()
            elif (every and step % every == 0) or preempted:
                epoch_sums = point_sums(sums)
                for point, point_epoch_sums in zip(counters.points, epoch_sums, strict=True):
                    point.epoch_sums = point_epoch_sums
                saved = self.save_unless_diverged(state, means(epoch_sums), epoch)
                active = self.active_mask()  # points stop only where they save
            if preempted:
                self.checkpointer.wait()
                progress.close()
                done = "saved" if saved else "nothing new saved"
                self.stop.check(f"at step {step}, {done}")
                raise Preempted(f"preempted at step {step}, {done}; rerun to resume")
        progress.close()
        self.checkpointer.wait()
        return state

    def _saved_sums(self) -> dict[str, jax.Array]:
        """The epoch's metric sums [points] so far: zero, or a mid-epoch checkpoint's."""
        zeros = self.population.zero_sums()
        saved = [point.epoch_sums for point in self.counters.points]
        if all(sums is None for sums in saved):
            return zeros
        return {
            name: jnp.asarray([(sums or {}).get(name, 0.0) for sums in saved], zero.dtype)
            for name, zero in zeros.items()
        }

    def mark_diverged(self, state: Any, train: list[dict[str, float]], epoch: int) -> None:
        """Stops every training point whose mean loss so far this epoch diverged or whose
        parameters are no longer finite."""
        first_step = epoch * self.population.steps_per_epoch + 1
        finite = self.population.finite(state)
        for i in self.training():
            point, loss = self.counters.points[i], train[i]["loss"]
            if has_diverged(loss, point.first_loss) or not finite[i]:
                error = Diverged.at(
                    self.population.configs[i], epoch + 1, (first_step, self.counters.step),
                    loss, point.first_loss, self.last_saved,
                )  # fmt: skip
                point.status, point.error = DIVERGED, str(error)

    def save_unless_diverged(self, state: Any, train: list[dict[str, float]], epoch: int) -> bool:
        """Saves the group unless every point that was training has diverged (a diverged state
        is never saved as progress); True if it saved."""
        self.mark_diverged(state, train, epoch)
        if not self.training():
            return False
        self.save(state)
        return True

    def save(self, state: Any) -> None:
        self.counters.seconds = self.chrono.totals()
        self.checkpointer.save(self.counters.step, state, self.counters.to_json())
        self.last_saved = self.counters.step

    def end_epoch(self, state: Any, sums: dict[str, jax.Array], epoch: int, progress) -> bool:
        """Validates every training point, stops the diverged and the patient-out ones, writes
        the epoch's rows and saves the group (and each improved point's best); True if saved."""
        population, counters, config = self.population, self.counters, self.config
        step = counters.step - 1
        train, training = averages(sums), self.training()  # waits for the epoch's last step
        seconds = self.chrono.end_lap()
        self.mark_diverged(state, train, epoch)
        val = population.evaluate(state, "val")
        rates = per_point(state.opt_state.hyperparams["learning_rate"])
        examples = (counters.step - self.epoch_first_step) * config.data.batch_size
        wall_time = self.chrono.total("wall")
        for point in counters.points:
            point.epoch_sums = None
        for i in self.training():
            point = counters.points[i]
            point.trained_examples += examples
            target, mode = self.task.target, self.task.mode
            if point.end_epoch(val[i], target, mode, config.train.patience, epoch, step):
                meta = dataclasses.asdict(point)
                self.checkpointer.save_best(i, counters.step, population.point(state, i), meta)
            if self.logs:
                records.write_epoch(
                    self.logs[i], step, epoch, train[i], val[i], float(rates[i]),
                    examples / seconds, wall_time,
                )  # fmt: skip
        progress.epoch(
            epoch + 1,
            config.train.num_epochs,
            training,
            train,
            val,
            examples / seconds,
            [point.best for point in counters.points],
            (self.task.target, self.task.mode),
        )
        saved = any(counters.points[i].status != DIVERGED for i in training)
        if saved:  # an epoch in which every point diverged saves nothing
            self.save(state)
        self.chrono.start_lap()
        self.epoch_first_step = counters.step
        return saved

    def pause(self) -> Paused:
        """Ends this call after `last_epoch` (saved by its end); a later call goes on."""
        for log in self.logs or []:
            log.close()
        return Paused(self.counters.points, self.task.target, self.task.mode)

    def test(self, state: Any) -> list[dict[str, Any] | Diverged]:
        """Every point's best checkpoint on the test split; writes the final records."""
        population, counters = self.population, self.counters
        tests = [None] * population.size
        if any(point.status != DIVERGED for point in counters.points):
            self.stop.check("before the test evaluation; training is saved")
            bests = []
            for i in range(population.size):
                restored = self.checkpointer.restore_best(i, population.point_target)
                bests.append(restored[0] if restored else population.point(state, i))
            tests = population.evaluate(population.join(bests), "test")
            self.stop.check("during the test evaluation; training is saved")
        steps = per_point(state.step)
        results = []
        for i, (config, point) in enumerate(zip(population.configs, counters.points, strict=True)):
            if point.status == DIVERGED:
                if self.logs:
                    self.logs[i].close()
                results.append(Diverged(point.error))
                continue
            summary = self.summary(config, point, int(steps[i]), tests[i])
            if self.logs:
                records.write_final_record(self.workdirs[i], self.logs[i], summary)
            results.append(summary)
        return results

    def summary(
        self, config: ml_collections.ConfigDict, point: PointCounters, steps: int, test: dict
    ) -> dict[str, Any]:
        mesh = self.population.mesh
        return records.summarize(
            config,
            status=FINISHED if point.active else point.status,
            steps=steps,
            epochs=steps // self.population.steps_per_epoch,
            target={"metric": self.task.target, "mode": self.task.mode},
            best=point.best,
            test=test,
            examples_per_sec=point.trained_examples / max(self.chrono.total("train"), 1e-9),
            compile_time_s=self.chrono.total("compile"),
            wall_time_s=self.chrono.total("wall"),
            startup_s=self.chrono.startup,
            executor="vmap" if self.population.stacked else "single",
            group_size=self.population.size,
            devices=mesh.size,
            mesh=dict(mesh.shape),
            processes=jax.process_count(),
        )


class _Progress:
    """A tqdm bar with rate and ETA on a terminal; one plain line per epoch otherwise.

    Only process 0 reports, so a multi-host run prints each epoch once.
    """

    def __init__(self, total: int, initial: int):
        self.bar = None
        self.quiet = jax.process_index() != 0
        self.remaining, self.done, self.started = total - initial, 0, time.time()
        if sys.stderr.isatty() and not self.quiet:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True)

    def update(self, n: int) -> None:
        self.done += n
        if self.bar:
            self.bar.update(n)

    def epoch(self, epoch, num_epochs, points, train, val, rate, best, target) -> None:
        """One line: a single point's train loss and val metrics, or each point's val loss;
        then the best validation target so far, the rate and the whole run's ETA (at this
        pace, if no point stops early)."""
        if len(train) == 1:
            text = f"train loss {train[0]['loss']:.4f}  " + "  ".join(
                f"val {k} {v:.4f}" for k, v in val[0].items()
            )
        else:
            text = f"{len(points)}/{len(train)} points training  val loss " + " ".join(
                f"{val[i]['loss']:.4f}" for i in points
            )
        name, mode = target
        pick = max if mode == "max" else min
        top = pick((b for b in best if b), key=lambda b: b["val"][name], default=None)
        if top:
            text += f"  best val {name} {top['val'][name]:.4f} (epoch {top['epoch']})"
        eta = (time.time() - self.started) / max(self.done, 1) * (self.remaining - self.done)
        text = (
            f"epoch {epoch}/{num_epochs}  {text}  {rate * len(points):,.0f} examples/s  "
            f"ETA {datetime.timedelta(seconds=round(eta))}"
        )
        if self.bar:
            self.bar.set_postfix_str(text.split("  ", 1)[1])
        elif not self.quiet:
            print(text, flush=True)

    def close(self) -> None:
        if self.bar:
            self.bar.close()
