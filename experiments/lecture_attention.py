"""Lecture claim: self-attention contextualises a word: in a masked-LM trained briefly on Python's
help text and the standard library's docstrings, an ambiguous word attends to different words in
two contexts and gets different vectors (heat maps of its attention weights)."""

import pathlib
from typing import Any

import ml_collections
import numpy as np

from research.config import base_config, parse_arg
from research.lectures import masked_lm, plots, verdict
from research.models import default_config
from research.sweep import axis


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    quick = parse_arg(arg, quick=False).quick
    config = base_config("lecture_attention")
    # Read by research.lectures.masked_lm, not research.data; quick runs skip the docstrings.
    config.data.name = "pydoc_topics" if quick else "pydoc_topics+docstrings"
    config.model = default_config(
        "bert_mlm",
        max_len=32,
        num_layers=1 if quick else 2,
        num_heads=2 if quick else 4,
        embed_dim=32 if quick else 64,
        mlp_dim=64 if quick else 256,
        dropout_rate=0.0,
    )
    config.data.batch_size = 32
    config.optimizer.learning_rate = 2e-3
    config.train.num_epochs = 1  # unused: the budget is study.steps of random windows
    config.study = {
        "steps": 10 if quick else 2000,
        "vocab_size": 500 if quick else 2000,
        "held_out_fraction": 0.1,
        "word": "set",
        # The word sits at the same position in both, so its input vectors are identical.
        "contexts": (
            "a set is an unordered collection of distinct hashable objects",
            "to set an attribute of an object use the setattr function",
        ),
    }
    return config


def sweep() -> list[dict[str, Any]]:
    return axis("seed", [0, 1, 2])


def run(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> dict[str, Any]:
    words = masked_lm.corpus_words(docstrings=config.data.name.endswith("+docstrings"))
    vocab = masked_lm.Vocabulary(words, config.study.vocab_size)
    ids = vocab.encode(words)
    split = int(len(ids) * (1 - config.study.held_out_fraction))
    fields = {k: v for k, v in config.model.items() if k not in ("name", "max_len")}
    trained = masked_lm.train(
        ids[:split],
        ids[split:],
        len(vocab.words),
        config.optimizer,
        steps=config.study.steps,
        seq_len=config.model.max_len,
        batch_size=config.data.batch_size,
        seed=config.seed,
        **fields,
    )
    model, params, losses = trained.model, trained.params, trained.losses
    accuracy = trained.curves["held_out"][-1]["accuracy"]
    baseline = float(np.bincount(ids[split:]).max() / (len(ids) - split))

    sentences = [sentence.split() for sentence in config.study.contexts]
    fig, axes = plots.grid(1, len(sentences), size=(6, 3))
    attended, vectors = [], []
    for ax, sentence in zip(axes[0], sentences, strict=True):
        tokens = vocab.encode(sentence)
        position = sentence.index(config.study.word)
        weights = masked_lm.word_attention(model, params, tokens, position).mean(axis=1)
        rows = [f"layer {i + 1}" for i in range(len(weights))]
        plots.heatmap(ax, weights, rows, sentence, f"attention of {config.study.word!r}")
        others = [i for i in np.argsort(-weights[-1]) if i != position][:3]
        attended.append([f"{sentence[i]} ({weights[-1][i]:.2f})" for i in others])
        vectors.append(masked_lm.hidden_state(model, params, tokens, position))
    figure = plots.save(fig, workdir / "attention_contexts.png")

    a, b = vectors
    cosine = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
    held = accuracy > baseline and cosine < 0.9
    return verdict.write(
        workdir,
        title="Lecture 8: attention contextualises words",
        claim=f"The same word ({config.study.word!r}) at the same position attends to different "
        "words in different contexts, so its output vector depends on the context.",
        measured=[
            f"masked-LM ({config.study.steps} steps): loss {losses[0]:.3f} -> {losses[-1]:.3f}; "
            f"held-out masked-word accuracy {accuracy:.3f} (most frequent word: {baseline:.3f})",
            *(
                f"context {i + 1} ({' '.join(s)}): most attended in the last layer: "
                + ", ".join(top)
                for i, (s, top) in enumerate(zip(sentences, attended, strict=True))
            ),
            f"cosine similarity of its two output vectors: {cosine:.3f} (inputs identical: 1)",
        ],
        held=held,
        figures=[figure],
        numbers={"accuracy": accuracy, "baseline": baseline, "cosine": cosine},
        note="Held needs the model to beat the most-frequent-word baseline and the cosine "
        "similarity to fall below 0.9.",
    )
