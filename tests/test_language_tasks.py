"""Tests of the language tasks' numbers, short char-LM and digits-rows runs, and init_from."""

import json
import math
from pydoc_data.topics import topics

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from research import config as cfg
from research.config import base_config
from research.errors import UserError
from research.models import build_model
from research.tasks import language
from research.tasks.classification import ImageClassification
from research.train.loop import train_and_evaluate
from research.train.optim import make_optimizer
from research.train.setup import build_setup
from research.train.steps import create_state, make_eval_step, make_train_step
from research.train.transfer import init_shared_from, restore_best_params

ROOT = cfg.pathlib.Path(__file__).resolve().parents[1]
CORPUS = "\n\n".join(map(topics.get, sorted(topics)))[:60_000]


def load(experiment: str, overrides: dict):
    config = cfg.load(str(ROOT / "experiments" / experiment))
    config.unlock()
    cfg.apply_overrides(config, overrides)
    config.lock()
    return config


def cross_entropy(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    logits = logits.astype(np.float64)
    log_z = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
    return log_z - np.take_along_axis(logits, targets[..., None], -1)[..., 0]


def test_char_lm_bits_per_char_is_nats_over_ln2_and_pads_never_count() -> None:
    rng = np.random.default_rng(0)
    tokens = rng.integers(3, 20, (4, 9)).astype(np.int32)
    tokens[1, 6:] = 0  # a window padded at the end of the text
    logits = rng.normal(size=(4, 8, 20)).astype(np.float32)
    mask = np.array([1, 1, 1, 0], np.float32)  # the last row is eval padding
    task = language.CharLM()
    inputs, aux = task.model_inputs({"tokens": jnp.asarray(tokens)}, jax.random.key(0), train=True)
    np.testing.assert_array_equal(inputs, tokens[:, :-1])
    loss, sums = task.loss_and_metrics(jnp.asarray(logits), {"tokens": tokens, "mask": mask}, aux)
    real = (tokens[:, 1:] != 0) * mask[:, None]
    expected = cross_entropy(logits, tokens[:, 1:])
    assert float(sums["count"]) == real.sum() == 3 * 8 - 3
    np.testing.assert_allclose(float(sums["loss"]), (expected * real).sum(), rtol=1e-5)
    np.testing.assert_allclose(float(loss), (expected * real).sum() / real.sum(), rtol=1e-5)
    assert float(sums["bits_per_char"]) == pytest.approx(float(sums["loss"]) / math.log(2), 1e-7)


MLM = language.MaskedLM(num_special=4, mask_id=3, vocab_size=104)


def corrupt(tokens: np.ndarray, seed: int = 0):
    return language.mask_tokens(
        jnp.asarray(tokens), jax.random.key(seed), num_special=4, mask_id=3, vocab_size=104
    )


def test_masking_proportions_are_15_percent_then_80_10_10() -> None:
    tokens = np.random.default_rng(1).integers(4, 104, (512, 256)).astype(np.int32)
    inputs, selected = map(np.asarray, corrupt(tokens))
    assert abs(selected.mean() - 0.15) < 0.015
    chosen, original = inputs[selected], tokens[selected]
    assert abs((chosen == 3).mean() - 0.8) < 0.03
    random = (chosen != 3) & (chosen != original)
    assert abs(random.mean() - 0.1 * 99 / 100) < 0.03  # a random draw may repeat the token
    assert abs((chosen == original).mean() - (0.1 + 0.1 / 100)) < 0.03
    assert chosen[random].min() >= 4  # random replacements are never special tokens
    np.testing.assert_array_equal(inputs[~selected], tokens[~selected])
    # Without the random and kept shares (the lecture's variant) every selected token is [MASK].
    only_mask, same = language.mask_tokens(
        jnp.asarray(tokens), jax.random.key(0), 4, 3, 104, mask_share=1.0, random_share=0.0
    )
    np.testing.assert_array_equal(same, selected)
    np.testing.assert_array_equal(np.asarray(only_mask), np.where(selected, 3, tokens))


def test_masked_lm_never_masks_or_counts_pads_and_specials() -> None:
    rng = np.random.default_rng(2)
    tokens = rng.integers(4, 104, (64, 32)).astype(np.int32)
    tokens[:, 0] = 2  # [CLS]
    tokens[:, 20:] = 0  # padding
    task = MLM
    mask = np.ones(64, np.float32)
    mask[-8:] = 0  # eval padding rows
    batch = {"tokens": jnp.asarray(tokens), "mask": jnp.asarray(mask)}
    (inputs, positions), aux = task.model_inputs(batch, jax.random.key(5), train=True)
    inputs, positions, selected = map(np.asarray, (inputs, positions, aux["selected"]))
    assert not selected[tokens < 4].any()
    np.testing.assert_array_equal(inputs[tokens < 4], tokens[tokens < 4])
    assert np.all(selected[inputs != tokens])  # the loss scores what model_inputs corrupted
    # The model predicts at its slots only; every selected position has one.
    assert positions.shape == (64, language.prediction_slots(32))
    for row in range(64):
        assert set(np.flatnonzero(selected[row])) <= set(positions[row])
    full_logits = rng.normal(size=(64, 32, 104)).astype(np.float32)
    logits = np.take_along_axis(full_logits, positions[..., None], axis=1)
    loss, sums = task.loss_and_metrics(jnp.asarray(logits), batch, aux)
    weights = selected * mask[:, None]
    assert float(sums["count"]) == weights.sum() > 100
    expected = (cross_entropy(full_logits, tokens) * weights).sum() / weights.sum()
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
    perfect = jax.nn.one_hot(np.take_along_axis(tokens, positions, axis=1), 104) * 50
    assert float(task.loss_and_metrics(perfect, batch, aux)[1]["accuracy"]) == weights.sum()


def test_masked_lm_masks_with_the_key_it_is_given() -> None:
    tokens = np.random.default_rng(5).integers(4, 104, (64, 32)).astype(np.int32)
    batch = {"tokens": jnp.asarray(tokens)}
    (inputs, positions), aux = MLM.model_inputs(batch, jax.random.key(0), train=True)
    # Exactly BERT's corruption under that key, drawn once: evaluation with it draws the same.
    expected_inputs, expected_selected = language.mask_tokens(
        batch["tokens"], jax.random.key(0), 4, 3, 104, language.prediction_slots(32)
    )
    np.testing.assert_array_equal(inputs, expected_inputs)
    np.testing.assert_array_equal(aux["selected"], expected_selected)
    np.testing.assert_array_equal(aux["positions"], positions)
    (again, _), again_aux = MLM.model_inputs(batch, jax.random.key(0), train=False)
    np.testing.assert_array_equal(again, inputs)
    np.testing.assert_array_equal(again_aux["selected"], aux["selected"])
    # Another key (the next training step's) masks other tokens at the same 15% rate.
    (other, _), other_aux = MLM.model_inputs(batch, jax.random.key(1), train=True)
    first, second = np.asarray(aux["selected"]), np.asarray(other_aux["selected"])
    assert abs(first.mean() - 0.15) < 0.02 and abs(second.mean() - 0.15) < 0.02
    assert (first & second).sum() < 0.3 * first.sum()  # independent draws overlap ~15%
    assert not np.array_equal(other, inputs)


def test_the_masked_lm_loss_scores_exactly_what_model_inputs_masked() -> None:
    tokens = np.random.default_rng(6).integers(4, 104, (64, 32)).astype(np.int32)
    batch = {"tokens": jnp.asarray(tokens)}
    (inputs, positions), aux = MLM.model_inputs(batch, jax.random.key(2), train=True)
    selected = np.asarray(aux["selected"])
    assert np.all(selected[np.asarray(inputs) != tokens])  # every corrupted token is scored
    # Logits that are right at every slot: each selected token counts once, and nothing else.
    perfect = jax.nn.one_hot(np.take_along_axis(tokens, np.asarray(positions), axis=1), 104) * 50
    loss, sums = MLM.loss_and_metrics(perfect, batch, aux)
    assert float(sums["count"]) == float(sums["accuracy"]) == selected.sum() > 250
    assert float(loss) < 1e-6
    # The same logits scored against another key's masking are mostly wrong: the loss reads
    # the masking it is handed and recomputes nothing.
    _, other_aux = MLM.model_inputs(batch, jax.random.key(3), train=True)
    _, other = MLM.loss_and_metrics(perfect, batch, other_aux)
    assert float(other["accuracy"]) < 0.2 * float(other["count"])


def test_masked_lm_training_through_the_train_step_lowers_the_loss() -> None:
    # Each row repeats one of 20 words, so a masked word is predictable from the others.
    task = language.MaskedLM(num_special=4, mask_id=3, vocab_size=24)
    rng = np.random.default_rng(7)
    rows = lambda n: jnp.asarray(np.broadcast_to(rng.integers(4, 24, (n, 1)), (n, 16)), jnp.int32)
    batches, held_out = rows(256).reshape(8, 32, 16), {"tokens": rows(64)}
    model = build_model(
        "bert_mlm", vocab_size=24, max_len=16, num_layers=1, num_heads=2, embed_dim=32,
        mlp_dim=64, dropout_rate=0.0,
    )  # fmt: skip
    optimizer = base_config("t").optimizer
    optimizer.learning_rate = 1e-2
    example, _ = task.model_inputs({"tokens": batches[0]}, jax.random.key(0), train=False)
    state = create_state(model, make_optimizer(optimizer, 8, 4), example, jax.random.key(0))
    train_step = jax.jit(make_train_step(task, jax.random.key(1)))
    eval_step = jax.jit(make_eval_step(task))
    before = eval_step(state, held_out)
    for step in range(30):
        state, _ = train_step(state, {"tokens": batches[step % 8]})
    after = eval_step(state, held_out)
    assert float(before["loss"] / before["count"]) > math.log(20)  # no better than uniform
    assert float(after["loss"] / after["count"]) < 0.2 * float(before["loss"] / before["count"])
    assert float(after["accuracy"] / after["count"]) > 0.9


def test_prediction_slots_drop_a_selection_only_past_the_cap() -> None:
    assert [language.prediction_slots(t) for t in (1, 10, 64, 128)] == [1, 7, 22, 36]
    tokens = np.random.default_rng(4).integers(4, 104, (2000, 64)).astype(np.int32)
    uncapped = np.asarray(corrupt(tokens)[1])
    inputs, capped = map(
        np.asarray,
        language.mask_tokens(jnp.asarray(tokens), jax.random.key(0), 4, 3, 104, max_per_row=5),
    )
    assert capped.sum(axis=1).max() == 5
    # The same draws: rows under the cap keep every selection, longer ones keep their first 5.
    np.testing.assert_array_equal(capped, uncapped & (np.cumsum(uncapped, axis=1) <= 5))
    np.testing.assert_array_equal(inputs[~capped], tokens[~capped])
    # At the real cap a full 64-token row almost never loses a selection.
    assert (uncapped.sum(axis=1) > language.prediction_slots(64)).mean() < 1e-3


def test_text_classification_shares_the_image_classification_loss() -> None:
    rng = np.random.default_rng(3)
    logits = jnp.asarray(rng.normal(size=(6, 3)).astype(np.float32))
    batch = {"label": jnp.asarray([0, 1, 2, 2, 1, 0]), "mask": jnp.asarray([1.0] * 5 + [0.0])}
    text_task = language.TextClassification(num_classes=3, label_smoothing=0.1)
    image_task = ImageClassification((0.0,), (1.0,), num_classes=3, label_smoothing=0.1)
    assert text_task.loss_and_metrics(logits, batch, {}) == image_task.loss_and_metrics(
        logits, batch, {}
    )
    assert (text_task.target, text_task.mode) == ("accuracy", "max")


@pytest.mark.slow
def test_short_char_lm_run_beats_the_unigram_entropy(tmp_path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(CORPUS, encoding="utf-8")
    overrides = {
        "data.name": "text_file",
        "data.path": str(corpus),
        "data.seq_len": 64,
        "data.batch_size": 16,
        "model.hidden_size": 64,
        "model.embed_dim": 32,
        "optimizer.learning_rate": 1e-2,
        "train.num_epochs": 2,
    }
    summary = train_and_evaluate(load("text_lstm.py", overrides), tmp_path / "run")
    train_text = CORPUS[: int(len(CORPUS) * 0.9)]
    _, counts = np.unique(list(train_text), return_counts=True)
    p = counts / counts.sum()
    unigram_bits = -(p * np.log2(p)).sum()
    val = summary["best"]["val"]
    assert val["bits_per_char"] < unigram_bits - 0.3, (val, unigram_bits)
    assert val["bits_per_char"] == pytest.approx(val["loss"] / math.log(2), rel=1e-6)
    saved = json.loads((tmp_path / "run" / "vocab.json").read_text())
    assert saved["tokens"][3:] == sorted(set(train_text))


@pytest.mark.slow
def test_digits_rows_lstm_learns_in_a_short_run(tmp_path) -> None:
    config = load("digits_rows_lstm.py", {"train.num_epochs": 4, "model.hidden_size": 64})
    summary = train_and_evaluate(config, tmp_path)
    assert summary["best"]["val"]["accuracy"] > 0.8  # chance is 0.1


ENCODER = {"model.max_len": 32, "model.num_layers": 1, "model.num_heads": 2, "model.embed_dim": 32}


def write_stsa_files(directory) -> None:
    """Small stsa.binary.{train,dev,test} files in the SST-2 format: `<label> <sentence>`."""
    for split in ("train", "dev", "test"):
        lines = [f"{i % 2} x{CORPUS[i * 40 : i * 40 + 30].split()}" for i in range(40)]
        (directory / f"stsa.binary.{split}").write_text("\n".join(lines))


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> str:
    """A one-epoch character masked-LM run on the sentences of SST-2-format files (their labels
    unused), as `text_bert_mlm.py:path=DIR` pretrains for sst2_bert."""
    root = tmp_path_factory.mktemp("mlm")
    write_stsa_files(root)
    overrides = {
        "data.tokenizer": "char",
        "data.seq_len": 32,
        "data.batch_size": 8,
        "model.mlp_dim": 64,
        "optimizer.warmup_epochs": 0.0,
        "train.num_epochs": 1,
        **ENCODER,
    }
    train_and_evaluate(load(f"text_bert_mlm.py:path={root}", overrides), root / "run")
    return str(root / "run")


def finetune_config(tmp_path, pretrained: str, **overrides):
    """sst2_bert on stsa.binary files written in tmp_path, tokenized with the MLM's characters."""
    write_stsa_files(tmp_path)
    settings = {
        "init_from": pretrained,
        "data.tokenizer": "char",
        "data.vocab_path": f"{pretrained}/vocab.json",
        "data.seq_len": 32,
        "data.batch_size": 8,
        "model.mlp_dim": 64,
        "optimizer.warmup_epochs": 0.0,
        "train.num_epochs": 1,
        **ENCODER,
        **overrides,
    }
    return load(f"sst2_bert.py:path={tmp_path}", settings)


def test_init_from_copies_the_encoder_exactly(tmp_path, pretrained) -> None:
    config = finetune_config(tmp_path, pretrained)
    dataset, _, model = build_setup(config)
    example = jnp.asarray(dataset.splits["train"]["tokens"][:2])
    state = jax.jit(lambda key: create_state(model, optax.sgd(0.1), example, key))(
        jax.random.key(1)
    )
    (copied,) = init_shared_from(pretrained, [state], dataset.info)
    _, _, source = restore_best_params(pretrained)
    leaves = jax.tree.leaves(source["encoder"])
    assert len(leaves) > 10
    for new, old in zip(jax.tree.leaves(copied.params["encoder"]), leaves, strict=True):
        np.testing.assert_array_equal(new, old)
    for name in ("pooler", "head"):  # the classifier's own layers keep their initialisation
        for new, old in zip(
            jax.tree.leaves(copied.params[name]), jax.tree.leaves(state.params[name]), strict=True
        ):
            np.testing.assert_array_equal(new, old)


def test_an_lstm_classifier_starts_from_a_language_model(tmp_path) -> None:
    write_stsa_files(tmp_path)
    small = {"data.tokenizer": "char", "data.seq_len": 32, "data.batch_size": 8,
             "model.embed_dim": 8, "model.hidden_size": 12, "train.num_epochs": 1}  # fmt: skip
    train_and_evaluate(load(f"sst2_lstm_lm.py:path={tmp_path}", small), tmp_path / "lm")
    lm = str(tmp_path / "lm")
    settings = {**small, "init_from": lm, "data.vocab_path": f"{lm}/vocab.json"}
    config = load(f"sst2_lstm.py:path={tmp_path}", {**settings, "model.bidirectional": False})
    dataset, _, model = build_setup(config)
    example = jnp.asarray(dataset.splits["train"]["tokens"][:2])
    state = jax.jit(lambda key: create_state(model, optax.sgd(0.1), example, key))(
        jax.random.key(1)
    )
    (copied,) = init_shared_from(lm, [state], dataset.info)
    source = restore_best_params(lm)[2]
    for name in ("embed", "layers_0"):  # the LM's embedding and LSTM, exactly
        jax.tree.map(np.testing.assert_array_equal, copied.params[name], source[name])
    jax.tree.map(np.testing.assert_array_equal, copied.params["head"], state.params["head"])
    bidirectional = load(f"sst2_lstm.py:path={tmp_path}", settings)
    with pytest.raises(UserError, match=r"\(embed, layers_0\) do not fit.*unidirectional"):
        train_and_evaluate(bidirectional, tmp_path / "bidirectional")


def test_the_loop_refuses_a_mismatched_encoder(tmp_path, pretrained) -> None:
    with pytest.raises(
        UserError, match=r"its parameters \(encoder\) do not fit this model's \(.*mlp_in"
    ):
        train_and_evaluate(finetune_config(tmp_path, pretrained, **{"model.mlp_dim": 48}), tmp_path)


def test_the_loop_refuses_a_model_of_another_family(tmp_path, pretrained) -> None:
    write_stsa_files(tmp_path)
    settings = {"init_from": pretrained, "data.tokenizer": "char", "data.seq_len": 32,
                "data.vocab_path": f"{pretrained}/vocab.json", "train.num_epochs": 1}  # fmt: skip
    lstm = load(f"sst2_lstm.py:path={tmp_path}", settings)
    with pytest.raises(UserError, match=r"shares no parameter group.*a language model for an RNN"):
        train_and_evaluate(lstm, tmp_path / "run")
    saved = [path for path in (tmp_path / "run" / "checkpoints").rglob("*") if path.is_file()]
    assert saved == []  # refused before the first step: nothing was checkpointed


def test_the_loop_refuses_another_vocabulary(tmp_path, pretrained) -> None:
    config = finetune_config(tmp_path, pretrained, **{"data.vocab_path": None})
    # Other sentences give another character vocabulary than the pretraining files'.
    (tmp_path / "stsa.binary.train").write_text("0 QWERTY ZXCV\n1 ASDF 0123\n" * 20)
    with pytest.raises(UserError, match="another vocabulary.*data.vocab_path="):
        train_and_evaluate(config, tmp_path / "run")
