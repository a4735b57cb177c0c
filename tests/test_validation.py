"""research.validation: every bad value, and every field the run would not read, is refused before
anything runs, in one paragraph naming the key, what is allowed and the flag that fixes it."""

import pathlib

import pytest
from conftest import ROOT, run_module

from research import config as config_lib
from research import data, tasks
from research.config import FIELDS, base_config, flatten
from research.errors import UserError
from research.sweep import expand
from research.tasks.classification import AUGMENTATIONS
from research.train.optim import OPTIMIZERS, SCHEDULES
from research.validation import validate

EXPERIMENTS = sorted((ROOT / "experiments").glob("[!_]*.py"))
REGISTRIES = (data.SOURCES, tasks.TASKS, AUGMENTATIONS, OPTIMIZERS, SCHEDULES)
STEP = {"optimizer.schedule": "step"}

# (experiment, --config.KEY=VALUE overrides as the command line gives them, words the message
# must hold besides each overridden key). The default experiment unless named.
CASES = [
    # Ranges of the base fields.
    ("digits_lenet", {"train.num_epochs": "0"}, ["integer >= 1"]),
    ("digits_lenet", {"data.batch_size": "0"}, ["integer >= 1"]),
    ("digits_lenet", {"data.eval_batch_size": "0"}, ["integer >= 1"]),
    ("digits_lenet", {"seed": "-1"}, ["[0, 2147483647]"]),
    ("digits_lenet", {"seed": str(2**31)}, ["[0, 2147483647]"]),
    ("digits_lenet", {"optimizer.learning_rate": "-1"}, [">= 0"]),
    ("digits_lenet", {"optimizer.learning_rate": "1e999"}, ["inf", ">= 0"]),
    ("digits_lenet", {"optimizer.weight_decay": "-1e-4"}, [">= 0"]),
    ("digits_lenet", {"optimizer.name": "momentum", "optimizer.momentum": "2"}, ["[0, 1)"]),
    ("digits_lenet", {"optimizer.warmup_epochs": "50"}, ["from 0 to train.num_epochs (40)"]),
    ("digits_lenet", {**STEP, "optimizer.decay_epochs": "(10, 50)"}, ["below train.num_epochs"]),
    ("digits_lenet", {**STEP, "optimizer.decay_factor": "0"}, ["(0, 1)"]),
    ("digits_lenet", {"optimizer.grad_clip_norm": "-1"}, [">= 0"]),
    ("digits_lenet", {"optimizer.ema_decay": "1.0"}, ["[0, 1)"]),
    ("digits_lenet", {"optimizer.ema_decay": "-0.5"}, ["[0, 1)"]),
    ("digits_lenet", {"train.patience": "-1"}, ["integer >= 0"]),
    ("digits_lenet", {"train.keep_checkpoints": "0"}, ["integer >= 1"]),
    ("digits_lenet", {"train.checkpoint_every_steps": "-1"}, ["integer >= 0"]),
    ("digits_lenet", {"train.adversarial_epsilon": "-0.1"}, [">= 0"]),
    ("digits_lenet", {"task.label_smoothing": "2"}, ["[0, 1)"]),
    ("digits_lenet", {"task.crop_padding": "-1"}, ["integer >= 0"]),
    ("digits_lenet", {"task.loss": "hinge"}, ["cross_entropy, squared"]),
    ("digits_lenet", {"data.validation_fraction": "0"}, ["(0, 1)"]),
    ("digits_lenet", {"data.validation_fraction": "1"}, ["(0, 1)"]),
    ("digits_lenet", {"mesh.data": "0"}, ["-1 (every device)"]),
    ("digits_lenet", {"mesh.fsdp": "0"}, ["integer >= 1"]),
    ("digits_lenet", {"mesh.fsdp_min_size": "-1"}, ["integer >= 0"]),
    ("digits_lenet", {"mesh.replicate": "('[',)"}, ["regular expression"]),
    ("digits_lenet", {"init_from": "no/such/run"}, ["workdir of a finished run"]),
    ("digits_lenet", {"data.name": "image_folder", "data.path": "no/such/dir"}, ["existing"]),
    # Registered names, checked by their registry.
    ("digits_lenet", {"model.name": "vgg"}, ["lenet, mlp"]),
    ("digits_lenet", {"task.name": "regression"}, ["char_lm, classification"]),
    ("digits_lenet", {"task.augment": "mixup"}, ["crop, crop_flip, none"]),
    ("digits_lenet", {"optimizer.name": "lion"}, ["adam, adamw, momentum"]),
    ("digits_lenet", {"optimizer.schedule": "linear"}, ["constant, cosine, step"]),
    # Fields the run would not read.
    ("digits_lenet", {"data.path": "README.md"}, ["'digits'", "image_folder, labelled_text"]),
    ("text_lstm", {"data.path": "README.md"}, ["'python_docs'", "text_file"]),
    ("digits_lenet", {"data.tfds_data_dir": "/tmp"}, ["'digits'", "any other name"]),
    ("digits_lenet", {"data.download": "true"}, ["'digits'", "tiny_shakespeare"]),
    ("digits_lenet", {"task.augment": "none"}, ["task.crop_padding", "crop, crop_flip"]),
    ("digits_lenet", {"task.name": "char_lm"}, ["task.augment", "classification"]),
    ("digits_lenet", {"model.name": "mlp"}, ["model.dense_sizes", "default_config('mlp')"]),
    ("digits_lenet", {"data.name": "python_docs"}, ["data.seq_len", "lacks"]),
    ("text_lstm", {"data.name": "digits"}, ["data.seq_len", "python_docs"]),
    ("sst2_lstm", {"data.test_path": "README.md"}, ["'glue/sst2'", "labelled_text"]),
    # Source-specific fields (research/data/text.py).
    ("text_lstm", {"data.seq_len": "0"}, ["integer >= 1"]),
    ("text_lstm", {"data.tokenizer": "bpe"}, ["char, wordpiece"]),
    ("sst2_lstm", {"data.vocab_size": "2"}, ["integer >= 5"]),
    ("text_lstm", {"data.vocab_path": "no/vocab.json"}, ["existing"]),
    # Each model's own hyperparameters.
    ("digits_lenet", {"model.features": "(16,)"}, ["2 entries"]),
    ("digits_lenet", {"model.padding": "('SAME',)"}, ["2 entries", "SAME, VALID"]),
    ("digits_lenet", {"model.dense_sizes": "(0, 84)"}, ["integer >= 1"]),
    ("digits_lenet", {"model.dropout_rate": "1.5"}, ["[0, 1)"]),
    ("digits_lenet", {"model.pool": "min"}, ["max, avg"]),
    ("digits_lenet", {"model.activation": "gelu"}, ["sigmoid, tanh, relu"]),
    ("digits_lenet", {"model.dtype": "int8"}, ["float32, bfloat16"]),
    ("digits_mlp", {"model.hidden_sizes": "(64, -1)"}, ["integer >= 1"]),
    ("digits_resnet", {"model.depth": "21"}, ["6n+2"]),
    ("digits_resnet", {"model.width": "0"}, ["integer >= 1"]),
    ("imagenet_resnet50", {"model.depth": "42"}, ["18, 34, 50"]),
    ("imagenet_resnet50", {"model.stem": "tiny"}, ["imagenet, cifar"]),
    ("cifar10_plain20", {"model.zero_init_last_bn": "true"}, ["model.residual is false"]),
    ("text_lstm", {"model.cell": "gru"}, ["rnn, lstm"]),
    ("text_lstm", {"model.num_layers": "0"}, ["integer >= 1"]),
    ("digits_rows_lstm", {"model.pooling": "cls"}, ["final, max, mean"]),
    ("sst2_lstm", {"model.word_dropout_rate": "1.0"}, ["[0, 1)"]),
    ("text_bert_mlm", {"model.num_heads": "3"}, ["divides model.embed_dim (128)"]),
    ("text_bert_mlm", {"model.max_len": "64"}, [">= data.seq_len (127)"]),
    ("imdb_transformer", {"model.pooling": "final"}, ["cls, mean, max"]),
]
# A handful through the command line: exit 2, one paragraph, no traceback, workdir untouched.
CLI_IDS = {
    "digits_lenet:train.num_epochs=0",
    "digits_lenet:data.batch_size=0",
    "digits_lenet:data.eval_batch_size=0",
    "digits_lenet:seed=-1",
    "digits_lenet:model.features=(16,)",
    "text_lstm:data.path=README.md",
}


def _validate(experiment: str, overrides: dict[str, str]) -> None:
    config = config_lib.load(str(ROOT / "experiments" / f"{experiment}.py"))
    config.unlock()
    config_lib.apply_overrides(config, overrides)
    config.lock()
    validate(config)


def _case_id(case: tuple) -> str:
    experiment, overrides, _ = case
    return f"{experiment}:" + ",".join(f"{k}={v}" for k, v in overrides.items())


CLI_CASES = [index for index, case in enumerate(CASES) if _case_id(case) in CLI_IDS]


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_a_bad_value_is_refused_naming_the_key_what_is_allowed_and_the_fix(case) -> None:
    experiment, overrides, words = case
    with pytest.raises(UserError) as refused:
        _validate(experiment, overrides)
    message = str(refused.value)
    assert "\n" not in message  # one paragraph
    assert "--config." in message  # the flag that fixes it
    assert any(key in message for key in overrides), message
    for word in words:
        assert word in message, message


def _snapshot(workdir: pathlib.Path) -> dict[str, bytes] | None:
    if not workdir.exists():
        return None
    return {str(p.relative_to(workdir)): p.read_bytes() for p in workdir.rglob("*") if p.is_file()}


@pytest.mark.parametrize("index", CLI_CASES, ids=lambda index: _case_id(CASES[index]))
def test_the_command_line_exits_2_before_touching_the_workdir(index, tmp_path) -> None:
    experiment, overrides, words = CASES[index]
    workdir = tmp_path / "run"
    overwrite = []
    if index % 2:  # a finished run there, which even --overwrite must leave as it was
        (workdir / "checkpoints" / "best" / "40").mkdir(parents=True)
        (workdir / "checkpoints" / "best" / "40" / "state").write_bytes(b"\x00weights")
        for name in ("config.json", "metrics.jsonl", "summary.json"):
            (workdir / name).write_text(f'{{"file": "{name}"}}\n')
        overwrite = ["--overwrite"]
    before = _snapshot(workdir)
    flags = [f"--config.{key}={value}" for key, value in overrides.items()]
    result = run_module(
        "launch.train",
        f"--config=experiments/{experiment}.py",
        f"--workdir={workdir}",
        *overwrite,
        *flags,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    message = result.stderr.strip()
    assert message.startswith("error: ") and "\n" not in message, message
    for word in [*overrides, *words]:
        assert word in message, message
    assert _snapshot(workdir) == before


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda path: path.stem)
def test_every_experiment_config_and_sweep_point_is_valid(path: pathlib.Path) -> None:
    config = config_lib.load(str(path))
    validate(config)
    points = expand(config, config_lib.load_module(str(path)).sweep())  # validates each point
    validate(*(point.config for point in points))


def test_every_field_declares_its_allowed_values_and_every_read_field_exists() -> None:
    base = flatten(base_config("t"))
    declared = set(FIELDS)
    for registry in REGISTRIES:
        registry.owned()  # imports the modules that declare
        group = {k for k in base if k.startswith(f"{registry.group}.")}
        group |= {f"{registry.group}.{field}" for field in registry.defaults}
        declared |= {f"{registry.group}.{field}" for field in registry.checks}
        for name in registry.names():
            assert {f"{registry.group}.{f}" for f in registry.reads(name)} <= group, name
        assert set(registry.checks) >= set(registry.defaults), registry.kind
    assert set(base) <= declared
