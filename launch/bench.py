"""Benchmark one experiment's train step: compile time, throughput, FLOPs and MFU, as JSON.

`python -m launch.bench --config=experiments/NAME.py[:ARG] [--batch_size=B] [--steps=N]`
builds the state and step exactly as launch.train does, then times the step on one
device-resident batch (synthetic) and on the real input pipeline (a fresh batch per step).
`--compare=torch` times the same step against its PyTorch twin (research.torch_twins) in
alternating rounds, `--compare=group --points=N` a vmapped group of N points against one
point's step taken N times; `--suite=accelerator` benchmarks the entries of launch.bench_suite.
"""

import collections
import contextlib
import itertools
import json
import os
import pathlib
import statistics
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from launch import bench_suite, common
from research import data as data_lib
from research.flops import matmul_flops
from research.sweep import expand
from research.train import records, sharding
from research.train.population import build_population
from research.train.profiling import Trace, operation_seconds
from research.train.setup import build_setup

flags.DEFINE_integer("batch_size", None, "Global batch size (default: the experiment's).")
flags.DEFINE_integer("steps", 20, "Timed steps for each of the two measurements.")
flags.DEFINE_integer("warmup_steps", 2, "Untimed steps before each measurement.")
flags.DEFINE_string("out", None, "JSON output (default: runs/bench/<experiment name>.json).")
flags.DEFINE_string("cache_dir", "runs/jax_cache", "JAX persistent compilation cache.")
flags.DEFINE_bool(
    "fake_data",
    False,
    "Random uint8 images of --fake_shape instead of the experiment's dataset (for machines "
    "without it, e.g. ImageNet); the pipeline then gathers from these arrays.",
)
flags.DEFINE_list("fake_shape", ["224", "224", "3"], "Image shape for --fake_data.")
flags.DEFINE_integer("fake_classes", 1000, "Number of classes for --fake_data.")
flags.DEFINE_string(
    "profile_steps",
    None,
    "START:END: a jax.profiler trace of timed pipeline steps START to END - 1 into "
    "runs/bench/profile/<experiment name>.",
)
flags.DEFINE_string(
    "compare",
    None,
    "torch: time the step against its PyTorch twin on one fixed batch, in alternating rounds of "
    "--steps steps (PyTorch is the optional extra: pip install -e '.[bench]'). group: time a "
    "vmapped group of --points points (seeds seed .. seed + points - 1, as launch.sweep "
    "--executor=vmap trains them) against one point's step taken --points times, per point.",
)
flags.DEFINE_integer("points", 8, "The points in the group that --compare=group times.")
flags.DEFINE_integer("rounds", 7, "Rounds of each side for --compare; medians are reported.")
flags.DEFINE_string(
    "suite", None, f"One of {sorted(bench_suite.SUITES)}: a fixed set of benchmarks instead."
)
flags.DEFINE_bool("shrink", False, "Tiny shapes for every --suite entry: a test, not a figure.")
flags.DEFINE_bool(
    "ynnpack_convolutions",
    False,
    "Compile the step as XLA's CPU backend does by default, convolutions through YNNPACK, "
    "instead of with the loop's population.CPU_STEP_COMPILER_OPTIONS: time both to measure it.",
)
FLAGS = flags.FLAGS

# Dense peak FLOP/s per chip by compute dtype; float32 on NVIDIA tensor cores is TF32, which
# XLA uses for float32 matmuls and convolutions by default. Matched in order against
# `device_kind`, so more specific names come first.
PEAK_FLOPS: tuple[tuple[str, dict[str, float]], ...] = (
    ("H200", {"bfloat16": 989e12, "float32": 494e12}),
    ("H100", {"bfloat16": 989e12, "float32": 494e12}),
    ("A100", {"bfloat16": 312e12, "float32": 156e12}),
    ("L40S", {"bfloat16": 362e12, "float32": 183e12}),
    ("L4", {"bfloat16": 121e12, "float32": 60e12}),
    ("TPU v6 lite", {"bfloat16": 918e12}),
    ("TPU v5 lite", {"bfloat16": 197e12}),
    ("TPU v5", {"bfloat16": 459e12}),
    ("TPU v4", {"bfloat16": 275e12}),
    ("TPU v3", {"bfloat16": 123e12}),
)


def peak_flops(device_kind: str, dtype: str) -> float | None:
    """The chip's dense peak for `dtype`, or None where unknown (every CPU)."""
    for name, peaks in PEAK_FLOPS:
        if name in device_kind:
            return peaks.get(dtype)
    return None


CACHE_HIT = "/jax/compilation_cache/cache_hits"
EVENTS = collections.Counter()  # JAX monitoring events so far in this process


def enable_compilation_cache(directory: str) -> None:
    """Turns on JAX's persistent cache for every compilation, however short, and counts hits."""
    jax.config.update("jax_compilation_cache_dir", directory)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

    jax.monitoring.register_event_listener(lambda event, **_: EVENTS.update([event]))


def fake_dataset(batch_size: int, shape: tuple[int, ...], num_classes: int) -> data_lib.Dataset:
    """Random images and labels, four batches' worth, with the statistics of real pixels."""
    rng = np.random.default_rng(0)
    n = 4 * batch_size
    arrays = {
        "image": rng.integers(0, 256, (n, *shape), dtype=np.uint8),
        "label": rng.integers(0, num_classes, n).astype(np.int32),
    }
    return data_lib.Dataset({"train": arrays}, data_lib.image_info(arrays, num_classes))


def _time_steps(
    train_step, state, batches, count: int, trace=None, points: int = 1
) -> tuple[Any, float]:
    """Runs `count` steps of a population of `points` on `next(batches)`; returns the state
    and seconds until it is ready. A `trace` (research.train.profiling.Trace) records the steps
    it names."""
    active = jnp.ones(points, bool)
    start = time.perf_counter()
    for step in range(count):
        if trace:
            trace.at(step, state)
        state, _ = train_step(state, active, next(batches))
    if trace:
        trace.at(count, state)
    jax.block_until_ready(state)
    return state, time.perf_counter() - start


def _timed_on(compiled, state, batch, points: int = 1):
    """Seconds for `count` calls of `compiled` (a population of `points`) on the fixed `batch`,
    as a function of `count` that carries the state from call to call."""

    def measure(count: int) -> float:
        nonlocal state
        state, seconds = _time_steps(compiled, state, itertools.repeat(batch), count, points=points)
        return seconds

    return measure


@contextlib.contextmanager
def built(config, dataset: data_lib.Dataset | None = None, points: int = 1):
    """Inside the config's mesh: its task, model, population and initial state, built exactly
    as launch.train builds them; `dataset` replaces the config's data. With `points` > 1 the
    population is the vmapped group of seeds config.seed onwards that launch.sweep
    --executor=vmap would build."""
    mesh = sharding.make_mesh(config.mesh)
    configs = [config]
    if points > 1:
        seeds = [{"seed": config.seed + index} for index in range(points)]
        configs = [point.config for point in expand(config, seeds)]
    with jax.set_mesh(mesh):
        dataset, task, model = build_setup(config, dataset)
        population, state = build_population(configs, dataset, task, model, mesh, points > 1)
        yield task, model, population, state


# XLA's CPU default, which CPU_STEP_COMPILER_OPTIONS narrows to matmuls.
YNNPACK_CONVOLUTIONS = {
    "xla_cpu_experimental_ynn_fusion_type": (
        "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION"
    )
}


def _compile(population, state, batch) -> tuple[Any, float, bool]:
    """The compiled step (one step per call), with the loop's compiler options unless
    --ynnpack_convolutions; the seconds its compilation took, and whether the cache had it."""
    hits_before = EVENTS[CACHE_HIT]
    start = time.perf_counter()
    options = population.compiler_options
    if FLAGS.ynnpack_convolutions:
        options = YNNPACK_CONVOLUTIONS
    active = jnp.ones(len(population.configs), bool)
    compiled = population.train_step.lower(state, active, batch).compile(options)
    return compiled, time.perf_counter() - start, EVENTS[CACHE_HIT] > hits_before


def benchmark(
    config, steps: int, warmup: int, dataset: data_lib.Dataset | None = None, trace=None
) -> dict:
    """The benchmark's fields for a locked config; `dataset` replaces the config's data; a
    `trace` records the steps it names of the timed pipeline measurement."""
    with built(config, dataset) as (_, _, population, state):
        train_step = population.train_step

        def pipeline(start: int = 0):
            """The loop's batches in the loop's order (wrapping around the epoch)."""
            step = start
            while True:
                yield population.batch_at(*divmod(step, population.steps_per_epoch))
                step += 1

        first, active = next(pipeline()), jnp.ones(1, bool)
        flops = matmul_flops(train_step, state, active, first)  # global: the whole batch
        compiled, compile_time, cache_hit = _compile(population, state, first)
        state, _ = _time_steps(compiled, state, itertools.repeat(first), warmup)
        state, synthetic_time = _time_steps(compiled, state, itertools.repeat(first), steps)
        batches = pipeline(1)
        state, _ = _time_steps(compiled, state, batches, warmup)
        state, pipeline_time = _time_steps(compiled, state, batches, steps, trace)
        # The host's share alone: building and placing batches, with no step to overlap.
        start = time.perf_counter()
        jax.block_until_ready([next(batches) for _ in range(steps)])
        input_time = time.perf_counter() - start
        devices = population.mesh.size

    batch_size = config.data.batch_size
    synthetic = steps * batch_size / synthetic_time
    real = steps * batch_size / pipeline_time
    flops_per_example = flops / batch_size
    achieved = flops_per_example * synthetic
    device = jax.devices()[0]
    dtype = str(config.model.get("dtype", "float32"))
    peak = peak_flops(device.device_kind, dtype)
    return {
        "experiment": config.name,
        "backend": jax.default_backend(),
        "device_kind": device.device_kind,
        "devices": devices,
        "dtype": dtype,
        "batch_size": batch_size,
        "input_shape": {key: value.shape[1:] for key, value in first.items()},
        "steps": steps,
        "compile_time_s": compile_time,
        "compile_cache_hit": cache_hit,
        "synthetic_examples_per_sec": synthetic,
        "pipeline_examples_per_sec": real,
        "pipeline_over_synthetic": real / synthetic,
        "input_ms_per_batch": 1e3 * input_time / steps,
        "step_ms_synthetic": 1e3 * synthetic_time / steps,
        "flops_per_example": flops_per_example,
        "achieved_flops_per_sec": achieved,
        "peak_flops_per_sec": peak and peak * devices,
        "mfu": achieved / (peak * devices) if achieved and peak else None,
    }


def _uncached_compile_time(result: dict, out: pathlib.Path) -> float | None:
    """This run's compile time on a cache miss; on a hit, the miss recorded in `out` before."""
    if not result["compile_cache_hit"]:
        return result["compile_time_s"]
    return json.loads(out.read_text()).get("uncached_compile_time_s") if out.exists() else None


def _torch_twins():
    """research.torch_twins, or exit 2 saying how to install PyTorch, an optional extra.

    Torch's OpenMP threads wait for work by spinning unless told otherwise: on cores that
    other processes share, that made its steps 4-20x slower here, so unless the environment
    says otherwise they wait passively (read once, as torch loads)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        from research import torch_twins
    except ImportError as error:
        common.fail(f"--compare=torch needs PyTorch ({error}): pip install -e '.[bench]'.")
    return torch_twins


def compare_with_torch(twins, config, dataset, rounds: int, steps: int, warmup: int) -> dict:
    """Our step against its PyTorch twin (`twins` is research.torch_twins) on one fixed batch,
    in `rounds` rounds of `steps` steps, ours then PyTorch's, so a load on the machine slows
    both alike. The ratio is PyTorch's time over ours: above 1, ours is faster."""
    threads = len(os.sched_getaffinity(0))
    twins.torch.set_num_threads(threads)
    with built(config, dataset) as (task, model, population, state):
        first = population.batch_at(0, 0)
        key = jax.random.key(config.seed)
        torch_step, torch_parameters = twins.train_step(
            config, task, model, jax.device_get(first), key
        )
        parameters = sum(leaf.size for leaf in jax.tree.leaves(state.params))
        if parameters != torch_parameters:
            common.fail(
                f"the PyTorch twin of model.name={config.model.name!r} has {torch_parameters:,} "
                f"trainable parameters and ours {parameters:,}: not the same architecture."
            )
        compiled, compile_time, _ = _compile(population, state, first)
        ours = _timed_on(compiled, state, first)

        def theirs(count: int) -> float:
            start = time.perf_counter()
            for _ in range(count):
                torch_step()
            return time.perf_counter() - start

        print(
            f"PyTorch {twins.torch.__version__} on {threads} threads (torch.set_num_threads: the "
            f"cores this process may use; JAX's {jax.default_backend()} backend uses them too), "
            f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}; {parameters:,} trainable "
            "parameters each",
            flush=True,
        )
        timing = alternate(
            ("ours", "ours", ours), ("torch", "PyTorch", theirs), rounds, steps, warmup
        )
    return {
        "experiment": config.name,
        "model": config.model.name,
        "optimizer": config.optimizer.name,
        "batch_size": config.data.batch_size,
        "input_shape": {key: value.shape[1:] for key, value in first.items()},
        "parameters": parameters,
        "backend": jax.default_backend(),
        "jax_version": jax.__version__,
        "torch_version": twins.torch.__version__,
        "threads": threads,
        "omp_wait_policy": os.environ["OMP_WAIT_POLICY"],
        "steps_per_round": steps,
        "compile_time_s": compile_time,
        **timing,
    }


def alternate(first, second, rounds: int, steps: int, warmup: int, unit: str = "ms/step") -> dict:
    """Two measures, each (key, label, seconds for a count of steps), in `rounds` rounds of
    `steps` steps, the first then the second, so a load on the machine slows both alike: per
    round each one's milliseconds per step and the ratio second/first (above 1, the first is
    faster), and their medians."""
    (key_a, label_a, measure_a), (key_b, label_b, measure_b) = first, second
    measure_a(warmup), measure_b(warmup)
    per_round = []
    for index in range(rounds):
        a_ms, b_ms = (1e3 * measure(steps) / steps for measure in (measure_a, measure_b))
        per_round.append({f"{key_a}_ms": a_ms, f"{key_b}_ms": b_ms, "ratio": b_ms / a_ms})
        print(
            f"round {index + 1}/{rounds}: {label_a} {a_ms:.1f} {unit}, {label_b} {b_ms:.1f} "
            f"{unit}, {label_b}/{label_a} {b_ms / a_ms:.2f}",
            flush=True,
        )
    ratios = [r["ratio"] for r in per_round]
    return {
        "rounds": per_round,
        f"median_{key_a}_ms": statistics.median(r[f"{key_a}_ms"] for r in per_round),
        f"median_{key_b}_ms": statistics.median(r[f"{key_b}_ms"] for r in per_round),
        "median_ratio": statistics.median(ratios),
        "ratio_range": [min(ratios), max(ratios)],
    }


def compare_group(config, dataset, points: int, rounds: int, steps: int, warmup: int) -> dict:
    """A vmapped group of `points` points against one point's step taken `points` times, per
    point and step, on fixed batches in alternating rounds: what training a sweep's points as
    one program (launch.sweep --executor=vmap, launch.tune) saves or costs per step against
    training them one after another (--executor=local), start-up and compilation aside."""
    with built(config, dataset, points) as (_, _, group, group_state):
        with built(config, group.dataset) as (_, _, single, single_state):
            group_batch, single_batch = group.batch_at(0, 0), single.batch_at(0, 0)
            group_step, group_compile, _ = _compile(group, group_state, group_batch)
            single_step, single_compile, _ = _compile(single, single_state, single_batch)
            in_group = _timed_on(group_step, group_state, group_batch, points)
            one = _timed_on(single_step, single_state, single_batch)
            timing = alternate(
                ("group", "group", lambda count: in_group(count) / points),
                ("separate", "separate", lambda count: one(count * points) / points),
                rounds,
                steps,
                warmup,
                unit="ms per point step",
            )
    return {
        "experiment": config.name,
        "model": config.model.name,
        "batch_size": config.data.batch_size,
        "points": points,
        "backend": jax.default_backend(),
        "devices": group.mesh.size,
        "steps_per_round": steps,
        "group_compile_time_s": group_compile,
        "separate_compile_time_s": single_compile,
        **timing,
    }


def run_suite(name: str, steps: int, warmup: int, shrink: bool) -> dict:
    """Every entry of suite `name` through `benchmark()`; all configs are loaded and checked
    before the first is built."""
    entries = bench_suite.SUITES[name]
    configs = []
    for entry in entries:
        overrides = {**entry.overrides, **(entry.shrunk if shrink else {})}
        configs.append(common.load_config(overrides, entry.config))
    start = time.perf_counter()
    results = []
    for entry, config in zip(entries, configs, strict=True):
        shape = entry.shrunk_fake_shape if shrink else entry.fake_shape
        dataset = shape and fake_dataset(config.data.batch_size, shape, 1000)
        result = benchmark(config, steps, warmup, dataset or None)
        result.update(entry=entry.name, config=entry.config, fake_data=bool(shape), unit=entry.unit)
        result["throughput"] = bench_suite.throughput(entry, result)
        print(f"{entry.name}: {result['throughput']:,.0f} {entry.unit}/s", flush=True)
        results.append(result)
    wall = time.perf_counter() - start
    return {"suite": name, "shrink": shrink, "wall_s": wall, "results": results}


def check_flags(overrides: dict[str, str]) -> tuple[int, ...]:
    """Refuses counts and combinations the benchmark cannot use before anything is built;
    returns the fake image shape (empty without --fake_data)."""
    fake_classes = FLAGS.fake_classes if FLAGS.fake_data else None
    wrong = [
        f"--{name}={value} must be >= {least} ({meaning})"
        for name, value, least, meaning in (
            ("steps", FLAGS.steps, 1, "the timed steps of each measurement"),
            ("warmup_steps", FLAGS.warmup_steps, 0, "the untimed steps before each"),
            ("batch_size", FLAGS.batch_size, 1, "or omitted for the experiment's own"),
            ("fake_classes", fake_classes, 1, "the number of labels"),
            ("rounds", FLAGS.rounds, 1, "the rounds of each side of --compare"),
            ("points", FLAGS.points, 2, "the points of the group --compare=group times"),
        )
        if value is not None and value < least
    ]
    if FLAGS.compare not in (None, "torch", "group"):
        wrong.append(
            f"--compare={FLAGS.compare} must be torch (the framework with twins) or group (a "
            "vmapped group against separate steps)"
        )
    if FLAGS["points"].present and FLAGS.compare != "group":
        wrong.append("--points sizes the group of --compare=group, which is not given")
    if FLAGS.suite not in (None, *bench_suite.SUITES):
        wrong.append(f"--suite={FLAGS.suite} must be one of {sorted(bench_suite.SUITES)}")
    if FLAGS.suite is not None:
        fixed = ("config", "batch_size", "fake_data", "compare", "profile_steps")
        given = [f"--{name}" for name in fixed if FLAGS[name].present]
        given += [f"--config.{key}" for key in overrides]
        if given:
            wrong.append(f"--suite sets its own experiments and data; drop {', '.join(given)}")
    if FLAGS.shrink and FLAGS.suite is None:
        wrong.append("--shrink shrinks the entries of a --suite, which is not given")
    if FLAGS.compare and FLAGS.profile_steps is not None:
        wrong.append("--profile_steps traces the plain benchmark, not --compare")
    shape = tuple(FLAGS.fake_shape) if FLAGS.fake_data else ()
    if FLAGS.fake_data and not (shape and all(n.isdigit() and int(n) > 0 for n in shape)):
        wrong.append(f"--fake_shape={','.join(shape)} must be positive integers (e.g. 224,224,3)")
    if wrong:
        common.fail(f"cannot benchmark: {'; '.join(wrong)}. Pass such values.")
    return tuple(int(n) for n in shape)


def main(argv: list[str], overrides: dict[str, str]) -> None:
    if len(argv) > 1:
        common.fail(f"unexpected arguments {argv[1:]}; flags look like --name=value.")
    shape = check_flags(overrides)
    enable_compilation_cache(FLAGS.cache_dir)
    if FLAGS.suite is not None:
        result = run_suite(FLAGS.suite, FLAGS.steps, FLAGS.warmup_steps, FLAGS.shrink)
        out = _write(result, FLAGS.out or f"runs/bench/{FLAGS.suite}.json")
        table = bench_suite.markdown(result["results"])
        out.with_suffix(".md").write_text(table)
        print(f"{table}wrote {out.with_suffix('.md')}", flush=True)
        return
    if FLAGS.batch_size is not None:
        overrides = {**overrides, "data.batch_size": str(FLAGS.batch_size)}
    config = common.load_config(overrides)
    twins = _torch_twins() if FLAGS.compare == "torch" else None
    if twins and jax.default_backend() != "cpu":
        common.fail(
            f"--compare=torch times both frameworks on the CPU (its twins run there), but JAX "
            f"would run on {jax.default_backend()}. Rerun with JAX_PLATFORMS=cpu."
        )
    unsupported = twins and twins.unsupported(config)
    if unsupported:
        reasons = "; ".join(unsupported)
        common.fail(f"cannot compare {config.name} with its PyTorch twin: {reasons}.")
    dataset = None
    if FLAGS.fake_data:
        dataset = fake_dataset(config.data.batch_size, shape, FLAGS.fake_classes)
    if FLAGS.compare:
        timing = (FLAGS.rounds, FLAGS.steps, FLAGS.warmup_steps)
        if twins:
            result = compare_with_torch(twins, config, dataset, *timing)
            ratio, meaning, name = "PyTorch/ours", "ours is faster", f"{config.name}_vs_torch"
        else:
            result = compare_group(config, dataset, FLAGS.points, *timing)
            ratio, meaning = "separate/group per point step", "the group trains each point faster"
            name = f"{config.name}_group{FLAGS.points}"
        result.update(
            config=FLAGS.config,
            overrides=overrides,
            fake_data=FLAGS.fake_data,
            ynnpack_convolutions=FLAGS.ynnpack_convolutions,
        )
        low, high = result["ratio_range"]
        print(
            f"median {ratio} {result['median_ratio']:.2f} (rounds {low:.2f} to {high:.2f}); "
            f"above 1, {meaning}",
            flush=True,
        )
        _write(result, FLAGS.out or f"runs/bench/{name}.json")
        return
    trace = None
    if FLAGS.profile_steps is not None:
        steps = common.step_range(FLAGS.profile_steps)
        if steps[1] > FLAGS.steps:
            common.fail(f"--profile_steps ends after the {FLAGS.steps} timed steps (--steps).")
        trace = Trace(steps, pathlib.Path("runs/bench/profile") / config.name)
    result = benchmark(config, FLAGS.steps, FLAGS.warmup_steps, dataset, trace)
    if trace:
        result["operations_ms_per_step"] = _print_operations(trace)
    variant = "_ynnpack" if FLAGS.ynnpack_convolutions else ""
    out = pathlib.Path(FLAGS.out or f"runs/bench/{config.name}{variant}.json")
    uncached = _uncached_compile_time(result, out)
    result.update(
        config=FLAGS.config,
        overrides=overrides,
        fake_data=FLAGS.fake_data,
        ynnpack_convolutions=FLAGS.ynnpack_convolutions,
        compile_cache_dir=FLAGS.cache_dir,
        uncached_compile_time_s=uncached,
        compile_time_saved_s=uncached and uncached - result["compile_time_s"],
    )
    for key, value in result.items():
        print(f"{key:30s} {value}")
    _write(result, out)


def _print_operations(trace: Trace, top: int = 12) -> dict[str, float]:
    """Prints and returns the traced steps' milliseconds per step by XLA operation kind (summed
    over the runtime's threads, so they can add up to more than a step's wall time)."""
    seconds = operation_seconds(trace.directory)
    traced = trace.steps[1] - trace.steps[0]
    total = sum(seconds.values()) or 1.0
    print(f"XLA operations over the {traced} traced steps (thread time, top {top}):")
    for name, value in list(seconds.items())[:top]:
        print(f"  {name:40s} {1e3 * value / traced:10.2f} ms/step {100 * value / total:6.1f}%")
    return {name: 1e3 * value / traced for name, value in seconds.items()}


def _write(result: dict, path: str | pathlib.Path) -> pathlib.Path:
    out = pathlib.Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    records.write_json(out, result)
    print(f"wrote {out}", flush=True)
    return out


if __name__ == "__main__":
    common.run(main)
