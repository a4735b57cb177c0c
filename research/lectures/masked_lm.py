"""A tiny word-level masked-LM on text that ships with Python (the help topics of pydoc_data and
the docstrings of the standard library's modules), and the attention weights of one word: local
and small on purpose (the official text pipeline lives in research/data). Pure functions except
the trainer's own state."""

import ast
import collections
import pathlib
import re
import sysconfig

import jax
import jax.numpy as jnp
import numpy as np
import optax

from research.lectures.fit import Trainer
from research.models import build_model

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


def mask_tokens(
    key: jax.Array, tokens: jax.Array, rate: float
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """BERT's corruption without the random-word variant: (inputs with [mask] at a `rate`
    fraction of positions, targets = tokens, weights [batch, time] 1 where masked)."""
    masked = jax.random.bernoulli(key, rate, tokens.shape) & (tokens != PAD)
    return jnp.where(masked, MASK, tokens), tokens, masked.astype(jnp.float32)


def train(
    token_ids: np.ndarray,
    vocab_size: int,
    *,
    steps: int,
    seq_len: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
    **model_fields,
):
    """Trains a `bert_mlm` on random windows of token_ids; returns (model, params, losses)."""
    model = build_model("bert_mlm", vocab_size=vocab_size, max_len=seq_len, **model_fields)
    init_key, data_key = jax.random.split(jax.random.key(seed))
    params = model.init(init_key, jnp.ones((1, seq_len), jnp.int32))["params"]
    ids = jnp.asarray(token_ids)

    def loss(params, batch):
        inputs, targets, weights = batch
        logits = model.apply({"params": params}, inputs)
        per_token = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
        return jnp.sum(per_token * weights) / jnp.maximum(jnp.sum(weights), 1.0)

    @jax.jit
    def batch_at(step):
        start_key, mask_key = jax.random.split(jax.random.fold_in(data_key, step))
        starts = jax.random.randint(start_key, (batch_size,), 0, len(ids) - seq_len)
        windows = jax.vmap(lambda s: jax.lax.dynamic_slice(ids, (s,), (seq_len,)))(starts)
        return mask_tokens(mask_key, windows, 0.15)

    trainer = Trainer(loss, params, learning_rate)
    losses = trainer.run(batch_at(step) for step in range(steps))
    return model, trainer.params, losses


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


def masked_accuracy(model, params, token_ids: np.ndarray, seq_len: int, seed: int) -> float:
    """Accuracy at masked positions of consecutive held-out windows."""
    n = len(token_ids) // seq_len
    windows = jnp.asarray(token_ids[: n * seq_len].reshape(n, seq_len))
    inputs, targets, weights = mask_tokens(jax.random.key(seed), windows, 0.15)
    logits = jax.jit(model.apply)({"params": params}, inputs)
    correct = (jnp.argmax(logits, -1) == targets) * weights
    return float(jnp.sum(correct) / jnp.sum(weights))
