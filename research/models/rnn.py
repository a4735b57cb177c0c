"""Recurrent models (vanilla RNN and LSTM) written like their equations and unrolled with scan.

Padded steps (token 0) leave the state unchanged, so a sequence's final state is its state at its
last real token whatever padding follows it.
"""

import functools
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from research.checks import FRACTION, Check, integer, one_of
from research.models import DTYPE, MODELS, SAMPLERS, choose, embeddings
from research.models.pooling import pool

# An RNN carry is h [batch, hidden]; an LSTM carry is the pair (c, h), both [batch, hidden].
Carry = jax.Array | tuple[jax.Array, jax.Array]


class RNNCell(nn.Module):
    """h_t = tanh(W_hh h_{t-1} + W_xh x_t + b)."""

    hidden_size: int
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, h: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """One step: h [batch, hidden], x [batch, features] -> (new carry, output h_t)."""
        dense = functools.partial(nn.Dense, dtype=self.dtype, param_dtype=self.param_dtype)
        w_hh = dense(self.hidden_size, use_bias=False, name="W_hh")
        w_xh = dense(self.hidden_size, name="W_xh")  # its bias is b
        h = jnp.tanh(w_hh(h) + w_xh(x))
        return h, h

    def initial_carry(self, batch_size: int) -> jax.Array:
        return jnp.zeros((batch_size, self.hidden_size), self.dtype)

    @staticmethod
    def hidden(carry: jax.Array) -> jax.Array:
        return carry


def _forget_bias_one(key: jax.Array, shape: tuple[int, ...], dtype: jnp.dtype) -> jax.Array:
    """Gate bias [4 * hidden] laid out (i, f, o, g): 1 for the forget gate, 0 elsewhere.

    Starting with f ~ sigmoid(1) keeps the cell state flowing early in training.
    """
    hidden = shape[0] // 4
    return jnp.zeros(shape, dtype).at[hidden : 2 * hidden].set(1.0)


class LSTMCell(nn.Module):
    """(i, f, o, g) = (sigmoid, sigmoid, sigmoid, tanh)(W [h_{t-1}; x_t] + b);
    c_t = f * c_{t-1} + i * g;  h_t = o * tanh(c_t).
    """

    hidden_size: int
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(
        self, carry: tuple[jax.Array, jax.Array], x: jax.Array
    ) -> tuple[tuple[jax.Array, jax.Array], jax.Array]:
        """One step: carry (c, h) each [batch, hidden], x [batch, features] -> (carry, h_t)."""
        c, h = carry
        w = nn.Dense(
            4 * self.hidden_size,
            bias_init=_forget_bias_one,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="W",
        )
        z_i, z_f, z_o, z_g = jnp.split(w(jnp.concatenate([h, x.astype(h.dtype)], -1)), 4, -1)
        i, f, o, g = nn.sigmoid(z_i), nn.sigmoid(z_f), nn.sigmoid(z_o), jnp.tanh(z_g)
        c = f * c + i * g
        h = o * jnp.tanh(c)
        return (c, h), h

    def initial_carry(self, batch_size: int) -> tuple[jax.Array, jax.Array]:
        zeros = jnp.zeros((batch_size, self.hidden_size), self.dtype)
        return zeros, zeros

    @staticmethod
    def hidden(carry: tuple[jax.Array, jax.Array]) -> jax.Array:
        return carry[1]


CELLS = {"rnn": RNNCell, "lstm": LSTMCell}
# The allowed values of the fields both recurrent models have.
RECURRENT_CHECKS: dict[str, Check] = {
    "embed_dim": integer(1),
    "hidden_size": integer(1),
    "num_layers": integer(1),
    "cell": one_of(*CELLS),
    "dropout_rate": FRACTION,
    "dtype": DTYPE,
}


def _cell_class(cell: str) -> type[RNNCell] | type[LSTMCell]:
    return choose("cell", cell, CELLS)


def masked_step(
    cell: RNNCell | LSTMCell, carry: Carry, x: jax.Array, real: jax.Array
) -> tuple[Carry, jax.Array]:
    """One cell step where padded sequences (real [batch] False) keep their carry and output 0.

    x: [batch, features] -> (carry, h_t [batch, hidden]).
    """
    new_carry, h = cell(carry, x)
    keep = lambda new, old: jnp.where(real[:, None], new, old)
    return jax.tree.map(keep, new_carry, carry), jnp.where(real[:, None], h, 0)


class Recurrent(nn.Module):
    """One recurrent layer: a cell unrolled over time by `nn.scan`, with padded steps masked."""

    cell_type: str = "lstm"
    hidden_size: int = 128
    reverse: bool = False
    dtype: jnp.dtype = jnp.float32

    def setup(self):
        self.cell = _cell_class(self.cell_type)(self.hidden_size, dtype=self.dtype)

    def __call__(self, inputs: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
        """inputs [batch, time, features], mask [batch, time] (True = real step).

        Returns the final hidden state [batch, hidden] (after the last real step, or the first
        one when `reverse`) and the per-step outputs [batch, time, hidden], zero at padded steps.
        """
        scan = nn.scan(
            lambda cell, carry, step_inputs: masked_step(cell, carry, *step_inputs),
            variable_broadcast="params",
            split_rngs={"params": False},
            in_axes=1,
            out_axes=1,
            reverse=self.reverse,
        )
        carry = self.cell.initial_carry(inputs.shape[0])
        carry, outputs = scan(self.cell, carry, (inputs, mask))
        return self.cell.hidden(carry), outputs


class Bidirectional(nn.Module):
    """A forward and a backward `Recurrent` layer whose features are concatenated (2 * hidden)."""

    cell_type: str = "lstm"
    hidden_size: int = 128
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, inputs: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Same contract as `Recurrent`, with [batch, 2 * hidden] and [batch, time, 2 * hidden]."""
        layer = functools.partial(Recurrent, self.cell_type, self.hidden_size, dtype=self.dtype)
        h_fwd, out_fwd = layer(name="forward")(inputs, mask)
        h_bwd, out_bwd = layer(reverse=True, name="backward")(inputs, mask)
        return jnp.concatenate([h_fwd, h_bwd], -1), jnp.concatenate([out_fwd, out_bwd], -1)


@MODELS.register("rnn_lm")
class RNNLanguageModel(nn.Module):
    """Embedding -> stacked RNN/LSTM -> y_t = W_hy h_t: next-token logits [batch, time, vocab].

    `initial_carry` and `step` run the same parameters one token at a time, for `sample`.
    """

    vocab_size: int = 256
    embed_dim: int = 64
    hidden_size: int = 256
    num_layers: int = 1
    cell: str = "lstm"
    dropout_rate: float = 0.0
    dtype: jnp.dtype = jnp.float32

    checks: ClassVar[dict[str, Check]] = RECURRENT_CHECKS

    def setup(self):
        self.embed = nn.Embed(self.vocab_size, self.embed_dim, dtype=self.dtype)
        self.layers = [
            Recurrent(self.cell, self.hidden_size, dtype=self.dtype) for _ in range(self.num_layers)
        ]
        self.dropout = nn.Dropout(self.dropout_rate)
        self.W_hy = nn.Dense(self.vocab_size, dtype=self.dtype)

    def __call__(self, inputs: jax.Array, train: bool = False) -> jax.Array:
        """inputs: tokens [batch, time] int32 (0 = pad) -> logits [batch, time, vocab] float32."""
        mask = inputs != 0
        x = embeddings(self, self.embed(inputs))
        for layer in self.layers:
            _, x = layer(self.dropout(x, deterministic=not train), mask)
        return self.W_hy(self.dropout(x, deterministic=not train)).astype(jnp.float32)

    def initial_carry(self, batch_size: int) -> tuple[Carry, ...]:
        """The all-zero state of every layer, as `step` expects it."""
        return tuple(layer.cell.initial_carry(batch_size) for layer in self.layers)

    def step(
        self, carry: tuple[Carry, ...], tokens: jax.Array
    ) -> tuple[tuple[Carry, ...], jax.Array]:
        """Feeds one token per sequence, tokens [batch], -> (new carry, logits [batch, vocab]).

        Matches `__call__` step for step, pad tokens included.
        """
        x = self.embed(tokens)
        new_carry = []
        for layer, layer_carry in zip(self.layers, carry, strict=True):
            layer_carry, x = masked_step(layer.cell, layer_carry, x, tokens != 0)
            new_carry.append(layer_carry)
        return tuple(new_carry), self.W_hy(x).astype(jnp.float32)


@MODELS.register("rnn_classifier")
class RNNClassifier(nn.Module):
    """Stacked (optionally bidirectional) RNN/LSTM whose summary of the sequence is classified.

    `pooling` picks the summary: "final" (the last real step's state, the classic reading),
    "max" or "mean" over the last layer's outputs at real steps (`pooling.pool`). Inputs are
    tokens [batch, time] (0 = pad) when `vocab_size` is set (`word_dropout_rate` then drops
    whole tokens while training), else real-valued features [batch, time, features] with no
    padding (e.g. an 8x8 image read row by row).
    """

    vocab_size: int | None = None
    embed_dim: int = 64
    hidden_size: int = 128
    num_layers: int = 1
    cell: str = "lstm"
    bidirectional: bool = False
    dropout_rate: float = 0.0
    word_dropout_rate: float = 0.0
    pooling: str = "final"
    num_classes: int = 10
    dtype: jnp.dtype = jnp.float32

    checks: ClassVar[dict[str, Check]] = {
        **RECURRENT_CHECKS,
        "word_dropout_rate": FRACTION,
        "pooling": one_of("final", "max", "mean"),
    }

    @nn.compact
    def __call__(self, inputs: jax.Array, train: bool = False) -> jax.Array:
        """Returns logits [batch, num_classes] float32."""
        if self.vocab_size is None:
            mask = jnp.ones(inputs.shape[:2], bool)
            x = inputs.astype(self.dtype)
        else:
            mask = inputs != 0
            x = nn.Embed(self.vocab_size, self.embed_dim, dtype=self.dtype, name="embed")(inputs)
            x = embeddings(self, x)
            # Whole tokens vanish (their vectors zeroed), so no single word can decide the label.
            word_dropout = nn.Dropout(self.word_dropout_rate, broadcast_dims=(2,))
            x = word_dropout(x, deterministic=not train)
        layer = functools.partial(
            Bidirectional if self.bidirectional else Recurrent,
            self.cell,
            self.hidden_size,
            dtype=self.dtype,
        )
        dropout = nn.Dropout(self.dropout_rate, deterministic=not train)
        for i in range(self.num_layers):
            final, x = layer(name=f"layers_{i}")(dropout(x), mask)
        head = nn.Dense(self.num_classes, dtype=self.dtype, name="head")
        return head(dropout(pool(self.pooling, x, mask, final=final))).astype(jnp.float32)


@SAMPLERS.register("rnn_lm")
@functools.partial(jax.jit, static_argnames=("model", "length"))
def sample(
    model: RNNLanguageModel,
    params: dict,
    prompt_tokens: jax.Array,
    length: int,
    temperature: float,
    key: jax.Array,
) -> jax.Array:
    """Continues a prompt by `length` sampled tokens inside one compiled `lax.scan`.

    prompt_tokens: [T0] int32, T0 >= 1; params: the model's `params` collection. Step t feeds
    token t and picks token t + 1: the prompt's own token while still inside the prompt, else a
    draw from softmax(logits / temperature) over the real tokens (never the pad id 0) with key
    fold_in(key, t), so the same key gives the same tokens and a tiny temperature gives the
    argmax continuation. Returns tokens [T0 + length] int32, starting with the prompt.
    """
    variables = {"params": params}
    prompt_len = prompt_tokens.shape[0]
    total = prompt_len + length
    prompt = jnp.zeros(total, jnp.int32).at[:prompt_len].set(prompt_tokens)

    def body(state, t):
        carry, token = state
        carry, logits = model.apply(variables, carry, token[None], method=model.step)
        real_logits = logits[0].at[0].set(-jnp.inf)  # pad is never generated
        drawn = jax.random.categorical(jax.random.fold_in(key, t), real_logits / temperature)
        token = jnp.where(t + 1 < prompt_len, prompt[t + 1], drawn).astype(jnp.int32)
        return (carry, token), token

    carry = model.apply(variables, 1, method=model.initial_carry)
    _, tokens = jax.lax.scan(body, (carry, prompt[0]), jnp.arange(total - 1))
    return jnp.concatenate([prompt[:1], tokens])
