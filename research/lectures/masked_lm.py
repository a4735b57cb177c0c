"""A tiny word-level masked-LM on text that ships with Python (the help topics of pydoc_data and
the docstrings of the standard library's modules), and the attention weights of one word: local
and small on purpose (the official text pipeline lives in research/data). No I/O; it trains
through `fit.train` with the library's masked-LM task."""

import ast
import collections
import pathlib
import re
import sysconfig

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from research.lectures import fit
from research.models import build_model
from research.tasks.language import MaskedLM

PAD, MASK, UNK = 0, 1, 2
SPECIALS = ("[pad]", "[mask]", "[unk]")


def corpus_words(docstrings: bool = False) -> list[str]:
    """Python's help topics (66k words), and with `docstrings` the standard library's module,
    class and function docstrings (260k more), lower-cased and split into words and numbers."""
    from pydoc_data.topics import topics

    texts = [topics[name] for name in sorted(topics)]
    if docstrings:
        texts += stdlib_docstrings()
    return re.findall(r"[a-z]+|[0-9]+", " ".join(texts).lower())


def stdlib_docstrings() -> list[str]:
    """Docstrings of the standard library's modules and their top-level packages' modules, in
    path order; test suites and IDLE are left out, and files that do not parse are skipped."""
    root = pathlib.Path(sysconfig.get_paths()["stdlib"])
    texts = []
    for path in sorted(root.glob("*.py")) + sorted(root.glob("*/*.py")):
        if {"test", "tests", "idlelib"} & set(path.relative_to(root).parts):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError):
            continue
        documented = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
        texts += [
            doc
            for node in ast.walk(tree)
            if isinstance(node, documented) and (doc := ast.get_docstring(node))
        ]
    return texts


class Vocabulary:
    """The `size` most frequent words after the special tokens; other words map to [unk]."""

    def __init__(self, words: list[str], size: int):
        common = [word for word, _ in collections.Counter(words).most_common(size - len(SPECIALS))]
        self.words = [*SPECIALS, *common]
        self.ids = {word: i for i, word in enumerate(self.words)}

    def encode(self, words: list[str]) -> np.ndarray:
        return np.array([self.ids.get(word, UNK) for word in words], np.int32)


def train(
    token_ids: np.ndarray,
    held_out_ids: np.ndarray,
    vocab_size: int,
    optimizer: ml_collections.ConfigDict,
    *,
    steps: int,
    seq_len: int,
    batch_size: int,
    seed: int,
    **model_fields,
) -> fit.Run:
    """Trains a `bert_mlm` with the library's masked-LM task on random windows of token_ids,
    one batch per step, through `fit.train`; the run's "held_out" curve is the task's loss and
    masked-word accuracy on the consecutive windows of held_out_ids."""
    model = build_model("bert_mlm", vocab_size=vocab_size, max_len=seq_len, **model_fields)
    # Every selected word becomes [mask] (no random or kept words, so the output vector at a
    # word must come from its context), and [unk] is a word like any other, as the baseline
    # counts it.
    task = MaskedLM(UNK, MASK, vocab_size, mask_share=1.0, random_share=0.0)
    ids = jnp.asarray(token_ids)
    held_out = held_out_ids[: len(held_out_ids) // seq_len * seq_len].reshape(-1, seq_len)
    data_key = jax.random.fold_in(jax.random.key(seed), 1)  # apart from fit.train's keys

    @jax.jit
    def batch_at(step: int) -> dict[str, jax.Array]:
        starts = jax.random.randint(
            jax.random.fold_in(data_key, step), (batch_size,), 0, len(ids) - seq_len
        )
        return {"tokens": jax.vmap(lambda s: jax.lax.dynamic_slice(ids, (s,), (seq_len,)))(starts)}

    return fit.train(
        model,
        task,
        optimizer,
        lambda epoch, step: batch_at(step),
        steps_per_epoch=steps,
        num_epochs=1,
        seed=seed,
        evaluate_on={"held_out": {"tokens": jnp.asarray(held_out)}},
    )


def word_attention(model, params, tokens: np.ndarray, position: int) -> np.ndarray:
    """Attention weights [layers, heads, time] from the word at `position` to every word of
    one sentence tokens [time], read from the weights the encoder sows."""
    _, state = model.apply({"params": params}, jnp.asarray(tokens)[None], mutable="intermediates")
    blocks = state["intermediates"]["encoder"]
    layers = sorted(blocks, key=lambda name: int(name.rsplit("_", 1)[-1]))
    weights = [blocks[name]["attention"]["attention"][0][0, :, position] for name in layers]
    return np.asarray(jnp.stack(weights))


def hidden_state(model, params, tokens: np.ndarray, position: int) -> np.ndarray:
    """The encoder's final vector [embed] for the word at `position` of tokens [time]."""
    hidden = model.apply(
        {"params": params},
        jnp.asarray(tokens)[None],
        method=lambda module, x: module.encoder(x),
    )
    return np.asarray(hidden[0, position])
