"""Tests of launch/bench.py: the JSON fields for a tiny model, and the compilation-cache hit."""

import json
import os

import pytest
from conftest import run_module

from launch import bench


def test_peak_table_matches_device_kinds() -> None:
    assert bench.peak_flops("NVIDIA H200", "bfloat16") == 989e12
    assert bench.peak_flops("NVIDIA L40S", "bfloat16") == 362e12  # not the L4's
    assert bench.peak_flops("TPU v5 lite", "bfloat16") == 197e12  # v5e, not v5p
    assert bench.peak_flops("TPU v4", "float32") is None
    assert bench.peak_flops("cpu", "float32") is None


def test_fake_dataset_has_the_requested_shapes() -> None:
    dataset = bench.fake_dataset(4, (5, 6, 3), 7)
    assert dataset.splits["train"]["image"].shape == (16, 5, 6, 3)
    assert dataset.info["num_classes"] == 7 and dataset.info["input_shape"] == (5, 6, 3)


@pytest.mark.slow
def test_bench_writes_its_fields_and_a_second_run_hits_the_cache(tmp_path) -> None:
    out, cache = tmp_path / "bench.json", tmp_path / "cache"
    args = (
        "--config=experiments/digits_lenet.py",
        "--steps=3",
        "--warmup_steps=1",
        f"--out={out}",
        f"--cache_dir={cache}",
        "--config.model.features=(8, 16)",
    )
    runs = []
    for _ in range(2):
        result = run_module("launch.bench", *args)
        assert result.returncode == 0, result.stderr
        assert "flops_per_example" in result.stdout
        runs.append(json.loads(out.read_text()))
    first, second = runs
    assert first["experiment"] == "digits_lenet" and first["batch_size"] == 32
    assert first["overrides"] == {"model.features": "(8, 16)"}
    assert first["flops_per_example"] > 1e4
    assert first["synthetic_examples_per_sec"] > 0 and first["pipeline_examples_per_sec"] > 0
    assert first["pipeline_over_synthetic"] > 0 and first["input_ms_per_batch"] > 0
    assert first["achieved_flops_per_sec"] > 0
    assert first["mfu"] is None and first["peak_flops_per_sec"] is None  # CPU: no known peak
    assert not first["compile_cache_hit"] and any(cache.iterdir())
    assert second["compile_cache_hit"]
    assert second["uncached_compile_time_s"] == first["compile_time_s"]
    assert second["compile_time_saved_s"] == first["compile_time_s"] - second["compile_time_s"]
    assert second["flops_per_example"] == first["flops_per_example"]


def test_ynnpack_convolutions_compiles_the_step_as_xla_does_by_default(tmp_path) -> None:
    """The flag that times the loop's convolution lever against XLA's default: the program
    it times has YNNPACK convolution fusions, which the loop's has not; --profile_steps prints
    and records the traced steps' time per XLA operation."""
    out = tmp_path / "bench.json"
    args = ("--config=experiments/digits_resnet.py", "--steps=2", "--warmup_steps=0")
    result = run_module(
        "launch.bench", *args, f"--out={out}", "--ynnpack_convolutions", "--profile_steps=0:2"
    )
    assert result.returncode == 0, result.stderr
    written = json.loads(out.read_text())
    assert written["ynnpack_convolutions"] is True
    assert "XLA operations over the 2 traced steps" in result.stdout
    assert written["operations_ms_per_step"]["ynn_fusion"] > 0  # its convolutions, traced
    import jax.numpy as jnp
    from conftest import ROOT

    from research import config as config_lib

    config = config_lib.load(str(ROOT / "experiments" / "digits_resnet.py"))
    with bench.built(config) as (_, _, population, state):
        batch, active = population.batch_at(0, 0), jnp.ones(1, bool)
        lowered = population.train_step.lower(state, active, batch)
        options = (population.compiler_options, bench.YNNPACK_CONVOLUTIONS)
        programs = [lowered.compile(option) for option in options]
    convolutions = [
        sum("__ynn_fusion" in line and "conv_general_dilated" in line for line in text)
        for text in (program.as_text().splitlines() for program in programs)
    ]
    assert convolutions[0] == 0 < convolutions[1]


def test_unusable_counts_are_refused_before_anything_is_built(tmp_path) -> None:
    flags = ("--steps=0", "--warmup_steps=-1", "--batch_size=0", "--fake_data", "--fake_classes=0")
    out = tmp_path / "bench.json"
    result = run_module("launch.bench", *flags, "--fake_shape=a,3", f"--out={out}", timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    for words in (*flags[:3], flags[4], "--fake_shape=a,3 must be positive integers", ">= 1"):
        assert words in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not out.exists()


# The twins' model variants, as (model.name, fields, one example input).
TWIN_CASES = [
    ("lenet", {"num_classes": 10}, ("image", (28, 28, 1))),
    ("lenet", {"num_classes": 3, "padding": ("SAME", "SAME"), "pool": "avg"}, ("image", (8, 8, 1))),
    ("cifar_resnet", {"depth": 20}, ("image", (32, 32, 3))),
    ("resnet", {"depth": 50, "width": 8, "num_classes": 7}, ("image", (64, 64, 3))),
    ("resnet", {"depth": 18, "width": 8, "stem": "cifar"}, ("image", (16, 16, 3))),
    ("rnn_lm", {"vocab_size": 30, "num_layers": 2, "hidden_size": 16}, ("tokens", (12,))),
    ("rnn_lm", {"vocab_size": 30, "cell": "rnn", "hidden_size": 16}, ("tokens", (12,))),
    ("bert_mlm", {"vocab_size": 30, "max_len": 16, "embed_dim": 32}, ("tokens", (16,))),
]


@pytest.mark.parametrize("name, fields, example", TWIN_CASES)
def test_twins_have_our_trainable_parameter_count(name, fields, example) -> None:
    """The count the comparison checks before timing: equal for every mirrored variant."""
    torch_twins = pytest.importorskip("research.torch_twins")
    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch

    from research.models import build_model

    model = build_model(name, **fields)
    kind, shape = example
    inputs = jnp.ones((2, *shape), jnp.float32 if kind == "image" else jnp.int32)
    if name == "bert_mlm":
        inputs = (inputs, jnp.zeros((2, 3), jnp.int32))
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), inputs, train=False))
    ours = sum(np.prod(leaf.shape) for leaf in jax.tree.leaves(variables["params"]))
    first = torch.ones(2, shape[-1], *shape[:-1]) if kind == "image" else torch.ones(2, *shape)
    twin = torch_twins.TWINS[name](model, first.long() if kind == "tokens" else first)
    assert sum(p.numel() for p in twin.parameters() if p.requires_grad) == ours


@pytest.mark.parametrize("name", ["sgd", "momentum", "nesterov", "adam", "adamw"])
def test_torch_optimizer_makes_our_updates(name) -> None:
    """Three steps of each optimizer with weight decay (on kernels only) move a layer's
    parameters the same in torch.optim and in research.train.optim."""
    torch_twins = pytest.importorskip("research.torch_twins")
    import jax
    import ml_collections
    import numpy as np
    import optax
    import torch

    from research.train.optim import make_optimizer

    config = ml_collections.ConfigDict(
        {
            "name": name,
            "learning_rate": 0.1,
            "momentum": 0.9,
            "weight_decay": 0.05,
            "schedule": "constant",
            "warmup_epochs": 0.0,
            "grad_clip_norm": 0.0,
            "ema_decay": 0.0,
        }
    )
    layer = torch.nn.Linear(3, 2)
    params = {"kernel": layer.weight.detach().numpy().copy(), "bias": layer.bias.detach().numpy()}
    params = jax.tree.map(np.array, params)
    tx = make_optimizer(config, steps_per_epoch=10, num_epochs=1)
    state, update = tx.init(params), torch_twins.optimizer(config, layer)
    for step in range(3):
        grads = {"kernel": np.full((2, 3), 0.3 + step, np.float32), "bias": np.ones(2, np.float32)}
        updates, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        layer.weight.grad, layer.bias.grad = (torch.from_numpy(g) for g in grads.values())
        update.step()
    np.testing.assert_allclose(layer.weight.detach().numpy(), params["kernel"], atol=1e-5)
    np.testing.assert_allclose(layer.bias.detach().numpy(), params["bias"], atol=1e-5)


@pytest.mark.slow
def _compare(tmp_path, *flags: str) -> tuple[str, dict]:
    """A tiny digits LeNet-5 compared in 3 rounds of 2 steps: the output and the JSON, after
    checking what every comparison writes (numbered rounds, the median and range of ratios)."""
    out = tmp_path / "compare.json"
    result = run_module(
        "launch.bench",
        "--config=experiments/digits_lenet.py",
        "--config.model.features=(4, 8)",
        *flags,
        "--rounds=3",
        "--steps=2",
        "--warmup_steps=1",
        f"--out={out}",
        f"--cache_dir={tmp_path / 'cache'}",
    )
    assert result.returncode == 0, result.stderr
    rounds = [line for line in result.stdout.splitlines() if line.startswith("round")]
    assert [line[:9] for line in rounds] == ["round 1/3", "round 2/3", "round 3/3"]
    report = json.loads(out.read_text())
    ratios = [r["ratio"] for r in report["rounds"]]
    assert report["median_ratio"] == sorted(ratios)[1]
    assert report["ratio_range"] == [min(ratios), max(ratios)]
    assert report["batch_size"] == 32 and report["model"] == "lenet"
    return result.stdout, report


def test_compare_with_torch_alternates_rounds_and_writes_the_ratio(tmp_path) -> None:
    pytest.importorskip("torch")
    stdout, report = _compare(tmp_path, "--compare=torch")
    threads = f"{len(os.sched_getaffinity(0))} threads"
    assert "OMP_WAIT_POLICY=PASSIVE" in stdout and threads in stdout
    assert all(r["ratio"] == pytest.approx(r["torch_ms"] / r["ours_ms"]) for r in report["rounds"])
    convs = (25 * 1 * 4 + 4) + (25 * 4 * 8 + 8)  # 5x5 kernels and biases
    dense = (2 * 2 * 8 * 256 + 256) + (256 * 128 + 128) + (128 * 10 + 10)
    assert report["parameters"] == convs + dense
    assert report["optimizer"] == "adam"
    assert report["input_shape"]["image"] == [8, 8, 1]


def test_compare_group_times_a_vmapped_group_against_separate_steps(tmp_path) -> None:
    """What a sweep's points cost per step in one vmapped program against one after another:
    per point, in alternating rounds, and the ratio of the two."""
    stdout, report = _compare(tmp_path, "--compare=group", "--points=3")
    assert stdout.count("ms per point step") == 6 and report["points"] == 3
    ratios = [r["separate_ms"] / r["group_ms"] for r in report["rounds"]]
    assert [r["ratio"] for r in report["rounds"]] == pytest.approx(ratios)
    assert report["median_group_ms"] > 0 and report["median_separate_ms"] > 0
    assert report["group_compile_time_s"] > 0 and report["separate_compile_time_s"] > 0


def test_compare_refuses_models_without_twins_and_unmirrored_settings() -> None:
    pytest.importorskip("torch")
    result = run_module("launch.bench", "--config=experiments/digits_mlp.py", "--compare=torch")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "model.name='mlp' has no PyTorch twin" in result.stderr
    for name in ("bert_mlm", "cifar_resnet", "lenet", "resnet", "rnn_lm"):
        assert name in result.stderr
    result = run_module(
        "launch.bench",
        "--config=experiments/cifar10_resnet20.py",
        "--config.model.preact=true",
        "--config.optimizer.ema_decay=0.9",
        "--compare=torch",
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "model.preact=True" in result.stderr and "optimizer.ema_decay" in result.stderr


def test_comparison_and_suite_flags_are_refused_before_anything_is_built(tmp_path) -> None:
    out = tmp_path / "bench.json"
    flags = ("--compare=tf", "--suite=gpu", "--rounds=0", "--points=1")
    result = run_module("launch.bench", *flags, f"--out={out}", timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    for words in (
        "--compare=tf must be torch",
        "or group",
        "--suite=gpu must be one of",
        "--rounds=0",
        "--points=1 must be >= 2",
        "--points sizes the group of --compare=group, which is not given",
    ):
        assert words in result.stderr
    suite = ("--suite=accelerator", "--config=experiments/digits_lenet.py", "--config.seed=1")
    result = run_module("launch.bench", *suite, "--batch_size=8", f"--out={out}", timeout=120)
    assert result.returncode == 2
    assert "drop --config, --batch_size, --config.seed" in result.stderr
    result = run_module("launch.bench", "--shrink", f"--out={out}", timeout=120)
    assert result.returncode == 2 and "--shrink" in result.stderr
    assert not out.exists()


@pytest.mark.slow
def test_accelerator_suite_shrunk_writes_json_and_table(tmp_path) -> None:
    out = tmp_path / "accelerator.json"
    result = run_module(
        "launch.bench",
        "--suite=accelerator",
        "--shrink",
        "--steps=2",
        "--warmup_steps=1",
        f"--out={out}",
        f"--cache_dir={os.environ['JAX_COMPILATION_CACHE_DIR']}",  # conftest's: cold once
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    names = [r["entry"] for r in report["results"]]
    assert names == ["resnet50_bf16_fake_imagenet", "bert_base_mlm_bf16", "char_lstm"]
    resnet, bert, lstm = report["results"]
    assert resnet["fake_data"] and resnet["input_shape"]["image"] == [32, 32, 3]
    assert resnet["dtype"] == "bfloat16" and bert["dtype"] == "bfloat16"
    assert bert["throughput"] == pytest.approx(16 * bert["synthetic_examples_per_sec"])
    assert lstm["throughput"] == pytest.approx(17 * lstm["synthetic_examples_per_sec"])
    assert resnet["throughput"] == resnet["synthetic_examples_per_sec"]
    for r in report["results"]:
        assert r["pipeline_over_synthetic"] > 0 and r["compile_time_s"] > 0
        assert r["flops_per_example"] > 0
    table = out.with_suffix(".md").read_text().splitlines()
    assert len(table) == 5 and table[2].startswith("| resnet50_bf16_fake_imagenet | cpu |")
    assert "images/s" in table[2] and "tokens/s" in table[3] and "n/a" in table[4]
