"""Tests of the sequence experiments: configs that build their models, and short mock-data runs."""

import numpy as np
import pytest
from conftest import mock_tfds

from research import config as cfg
from research.models import build_model
from research.sampling import generate
from research.train.loop import train_and_evaluate
from tests.conftest import ROOT

SEQUENCE_EXPERIMENTS = {
    "text_lstm": {"vocab_size": 100},
    "shakespeare_lstm": {"vocab_size": 100},
    "shakespeare_transformer": {"vocab_size": 100},
    "text_bert_mlm": {"vocab_size": 100},
    "sst2_lstm": {"vocab_size": 100, "num_classes": 2},
    "sst2_lstm_lm": {"vocab_size": 100},
    "sst2_bert": {"vocab_size": 100, "num_classes": 2},
    "imdb_transformer": {"vocab_size": 100, "num_classes": 2},
    "digits_rows_lstm": {"num_classes": 10},
    "mnist_rows_lstm": {"num_classes": 10},
}


def load(spec: str, **overrides):
    config = cfg.load(str(ROOT / "experiments" / spec))
    config.unlock()
    cfg.apply_overrides(config, overrides)
    config.lock()
    return config


@pytest.mark.parametrize("name, data_fields", SEQUENCE_EXPERIMENTS.items())
def test_the_model_builds_with_the_fields_its_data_gives(name, data_fields) -> None:
    config = load(f"{name}.py")
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in config.model.items()}
    build_model(kwargs.pop("name"), **kwargs, **data_fields)


def test_local_sst2_files_and_a_pretrained_encoder_that_fits() -> None:
    lstm = load("sst2_lstm.py:path=/data/sst2")
    assert lstm.data.name == "labelled_text"
    paths = (lstm.data.path, lstm.data.val_path, lstm.data.test_path)
    assert paths == tuple(f"/data/sst2/stsa.binary.{s}" for s in ("train", "dev", "test"))
    pretrain = load("text_bert_mlm.py:path=/data/sst2")
    finetune = load("sst2_bert.py:path=/data/sst2")
    shape_keys = ("max_len", "num_layers", "num_heads", "embed_dim", "mlp_dim")
    assert all(pretrain.model[k] == finetune.model[k] for k in shape_keys)
    vocabulary_keys = ("name", "path", "val_path", "test_path", "tokenizer", "vocab_size")
    assert all(pretrain.data[k] == finetune.data[k] for k in vocabulary_keys)  # same WordPiece
    lstm_lm = load("sst2_lstm_lm.py:path=/data/sst2")
    assert all(lstm_lm.data[k] == lstm.data[k] for k in vocabulary_keys)
    assert all(lstm_lm.model[k] == lstm.model[k] for k in ("embed_dim", "hidden_size", "cell"))
    assert load("shakespeare_lstm.py:path=in.txt").data.name == "text_file"


@pytest.fixture(scope="module")
def tfds():
    from research.data.tfds_source import import_tfds

    return import_tfds()


TINY_TRANSFORMER = {
    "model.num_layers": 1,
    "model.num_heads": 2,
    "model.embed_dim": 16,
    "model.mlp_dim": 32,
}


@pytest.mark.slow
@pytest.mark.parametrize(
    "spec, overrides",
    [
        ("shakespeare_transformer.py", {"data.seq_len": 16, "model.max_len": 16}),
        ("shakespeare_lstm.py", {"data.seq_len": 16, "model.hidden_size": 16}),
        ("text_bert_mlm.py:sst2=true", {"data.vocab_size": 200}),
        ("sst2_bert.py", {"data.vocab_size": 200}),
        ("sst2_lstm.py", {"data.vocab_size": 200, "model.hidden_size": 16}),
        ("sst2_lstm_lm.py", {"data.vocab_size": 200, "model.hidden_size": 16}),
        ("imdb_transformer.py", {"data.vocab_size": 200, "model.max_len": 256}),
        ("mnist_rows_lstm.py", {"model.hidden_size": 16}),
    ],
)
def test_short_runs_on_mock_data(tfds, tmp_path, spec, overrides) -> None:
    if "transformer" in spec or "bert" in spec:
        overrides = {**TINY_TRANSFORMER, **overrides}
    config = load(spec, **{"data.batch_size": 4, "train.num_epochs": 1, **overrides})
    with mock_tfds(num_examples=20):
        summary = train_and_evaluate(config, tmp_path)
    assert summary["status"] == "finished" and summary["steps"] > 0
    assert np.isfinite(summary["test"]["loss"])
    if config.model.name == "transformer_lm":
        text = generate(tmp_path, "a", 20, 1.0, seed=0)
        assert text == generate(tmp_path, "a", 20, 1.0, seed=0) and text.startswith("a")
