"""A BERT-style pre-LayerNorm Transformer encoder with attention written out, and its heads.

Every head holds the encoder as a submodule named `encoder`, so a classifier can start from a
masked-LM checkpoint by copying `params["encoder"]`. Attention weights are sown into the
`intermediates` collection for figures.
"""

import functools
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from research.checks import FRACTION, Check, integer, one_of
from research.models import DTYPE, MODELS, SAMPLERS, embeddings
from research.models.pooling import pool


class SelfAttention(nn.Module):
    """Multi-head self-attention: softmax(q k^T / sqrt(head_dim)) v over the allowed keys."""

    num_heads: int
    causal: bool = False
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
        """x [batch, time, embed], mask [batch, time] (True = real token) -> [batch, time, embed].

        Sows the attention weights [batch, heads, query, key] as `intermediates/.../attention`.
        """
        time, embed_dim = x.shape[-2:]
        if embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by {self.num_heads} heads")
        head_dim = embed_dim // self.num_heads
        project = functools.partial(
            nn.DenseGeneral, (self.num_heads, head_dim), dtype=self.dtype
        )  # [batch, time, heads, head_dim]
        q, k, v = project(name="query")(x), project(name="key")(x), project(name="value")(x)

        scores = jnp.einsum("bqhd,bkhd->bhqk", q, k).astype(jnp.float32) / jnp.sqrt(head_dim)
        allowed = mask[:, None, None, :]  # pad keys are never attended to
        if self.causal:
            allowed = allowed & jnp.tril(jnp.ones((time, time), bool))  # nor are future keys
        scores = jnp.where(allowed, scores, jnp.finfo(jnp.float32).min)
        weights = jax.nn.softmax(scores, axis=-1)
        self.sow("intermediates", "attention", weights)

        context = jnp.einsum("bhqk,bkhd->bqhd", weights.astype(self.dtype), v)
        return nn.DenseGeneral(embed_dim, axis=(-2, -1), dtype=self.dtype, name="out")(context)


class EncoderBlock(nn.Module):
    """Pre-LayerNorm residual block: x + Dropout(Attn(LN(x))), then x + Dropout(MLP(LN(x)))."""

    num_heads: int
    mlp_dim: int
    dropout_rate: float = 0.0
    causal: bool = False
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array, train: bool = False) -> jax.Array:
        """x [batch, time, embed], mask [batch, time] -> [batch, time, embed]."""
        dropout = nn.Dropout(self.dropout_rate, deterministic=not train)
        attention = SelfAttention(self.num_heads, self.causal, self.dtype, name="attention")
        x = x + dropout(attention(nn.LayerNorm(dtype=self.dtype, name="attention_norm")(x), mask))

        h = nn.LayerNorm(dtype=self.dtype, name="mlp_norm")(x)
        h = nn.gelu(nn.Dense(self.mlp_dim, dtype=self.dtype, name="mlp_in")(h), approximate=False)
        h = nn.Dense(x.shape[-1], dtype=self.dtype, name="mlp_out")(h)
        return x + dropout(h)


class Encoder(nn.Module):
    """Token + learned position embeddings -> `num_layers` blocks -> final LayerNorm."""

    vocab_size: int = 256
    max_len: int = 128
    num_layers: int = 4
    num_heads: int = 4
    embed_dim: int = 256
    mlp_dim: int = 1024
    dropout_rate: float = 0.1
    causal: bool = False
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, tokens: jax.Array, train: bool = False) -> jax.Array:
        """tokens [batch, time] int32 (0 = pad), time <= max_len -> hidden [batch, time, embed]."""
        time = tokens.shape[1]
        if time > self.max_len:
            raise ValueError(f"sequence length {time} exceeds the encoder's max_len {self.max_len}")
        mask = tokens != 0
        embed = functools.partial(nn.Embed, features=self.embed_dim, dtype=self.dtype)
        x = embeddings(self, embed(self.vocab_size, name="token_embed")(tokens))
        x = x + embed(self.max_len, name="position_embed")(jnp.arange(time))
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        for i in range(self.num_layers):
            block = EncoderBlock(
                self.num_heads,
                self.mlp_dim,
                self.dropout_rate,
                self.causal,
                self.dtype,
                name=f"blocks_{i}",
            )
            x = block(x, mask, train)
        return nn.LayerNorm(dtype=self.dtype, name="final_norm")(x)


class _EncoderModel(nn.Module):
    """The encoder hyperparameters every head shares; `setup` builds the `encoder` submodule."""

    vocab_size: int = 256
    max_len: int = 128
    num_layers: int = 4
    num_heads: int = 4
    embed_dim: int = 256
    mlp_dim: int = 1024
    dropout_rate: float = 0.1
    dtype: jnp.dtype = jnp.float32
    causal: ClassVar[bool] = False

    checks: ClassVar[dict[str, Check]] = {
        "max_len": Check(
            lambda config: (
                f"an integer >= data.seq_len ({config.data.seq_len})"
                if config.data.get("seq_len")
                else "an integer >= 1"
            ),
            lambda value, config: (
                integer(1).ok(value, config) and value >= (config.data.get("seq_len") or 1)
            ),
        ),
        "num_layers": integer(1),
        "num_heads": Check(
            lambda config: (
                f"an integer >= 1 that divides model.embed_dim ({config.model.embed_dim})"
            ),
            lambda value, config: (
                integer(1).ok(value, config) and config.model.embed_dim % value == 0
            ),
        ),
        "embed_dim": integer(1),
        "mlp_dim": integer(1),
        "dropout_rate": FRACTION,
        "dtype": DTYPE,
    }

    def setup(self):
        self.encoder = Encoder(
            self.vocab_size,
            self.max_len,
            self.num_layers,
            self.num_heads,
            self.embed_dim,
            self.mlp_dim,
            self.dropout_rate,
            self.causal,
            self.dtype,
        )


@MODELS.register("bert_mlm")
class BertMLM(_EncoderModel):
    """Masked-LM head: dense + GELU + LayerNorm transform, then a projection to the vocabulary."""

    def setup(self):
        super().setup()
        self.transform = nn.Dense(self.embed_dim, dtype=self.dtype)
        self.transform_norm = nn.LayerNorm(dtype=self.dtype)
        self.output = nn.Dense(self.vocab_size, dtype=self.dtype)

    def __call__(
        self, inputs: jax.Array | tuple[jax.Array, jax.Array], train: bool = False
    ) -> jax.Array:
        """inputs: tokens [batch, time] -> logits [batch, time, vocab] float32, or the pair
        (tokens, positions [batch, slots] int32) -> logits [batch, slots, vocab] at only those
        positions, as the masked-LM task asks, sparing the vocabulary projection elsewhere."""
        tokens, positions = inputs if isinstance(inputs, tuple) else (inputs, None)
        h = self.encoder(tokens, train)
        if positions is not None:
            h = jnp.take_along_axis(h, positions[..., None], axis=1)
        h = self.transform_norm(nn.gelu(self.transform(h), approximate=False))
        return self.output(h).astype(jnp.float32)


@MODELS.register("transformer_classifier")
class TransformerClassifier(_EncoderModel):
    """Sequence summary -> tanh dense pooler -> class logits.

    `pooling` picks the summary: "cls" (BERT's: the hidden state at position 0, where the
    [CLS] token sits), or "mean" or "max" over the real tokens' states (`pooling.pool`); a
    masked-LM never trains the [CLS] state, while every real token's state it does.
    """

    num_classes: int = 2
    pooling: str = "cls"

    checks: ClassVar[dict[str, Check]] = {
        **_EncoderModel.checks,
        "pooling": one_of("cls", "mean", "max"),
    }

    def setup(self):
        super().setup()
        self.pooler = nn.Dense(self.embed_dim, dtype=self.dtype)
        self.dropout = nn.Dropout(self.dropout_rate)
        self.head = nn.Dense(self.num_classes, dtype=self.dtype)

    def __call__(self, inputs: jax.Array, train: bool = False) -> jax.Array:
        """inputs: tokens [batch, time] with [CLS] first -> logits [batch, num_classes] float32."""
        hidden = self.encoder(inputs, train)
        summary = pool(self.pooling, hidden, inputs != 0, cls=hidden[:, 0])
        pooled = jnp.tanh(self.pooler(summary))
        return self.head(self.dropout(pooled, deterministic=not train)).astype(jnp.float32)


@MODELS.register("transformer_lm")
class TransformerLM(_EncoderModel):
    """Causal encoder -> next-token logits [batch, time, vocab]."""

    causal: ClassVar[bool] = True

    def setup(self):
        super().setup()
        self.output = nn.Dense(self.vocab_size, dtype=self.dtype)

    def __call__(self, inputs: jax.Array, train: bool = False) -> jax.Array:
        """inputs: tokens [batch, time] -> logits [batch, time, vocab] float32."""
        return self.output(self.encoder(inputs, train)).astype(jnp.float32)


@SAMPLERS.register("transformer_lm")
@functools.partial(jax.jit, static_argnames=("model", "length"))
def sample(
    model: TransformerLM,
    params: dict,
    prompt_tokens: jax.Array,
    length: int,
    temperature: float,
    key: jax.Array,
) -> jax.Array:
    """Continues a prompt by `length` sampled tokens inside one compiled `lax.scan`.

    Same contract as `research.models.rnn.sample`: prompt_tokens [T0] int32 with T0 >= 1,
    params the `params` collection, token t + 1 drawn from softmax(logits / temperature) over
    the real tokens (never the pad id 0) with key fold_in(key, t); returns tokens [T0 + length].
    Each step re-encodes a fixed window of the last min(T0 + length, max_len) tokens (slots not
    yet generated sit after the current position, where the causal mask hides them).
    """
    prompt_len = prompt_tokens.shape[0]
    total = prompt_len + length
    window = min(total, model.max_len)
    tokens = jnp.zeros(total, jnp.int32).at[:prompt_len].set(prompt_tokens)

    def body(tokens, t):
        start = jnp.maximum(t + 1 - window, 0)
        context = jax.lax.dynamic_slice(tokens, (start,), (window,))
        logits = model.apply({"params": params}, context[None])[0, t - start]
        real_logits = logits.at[0].set(-jnp.inf)  # pad is never generated
        drawn = jax.random.categorical(jax.random.fold_in(key, t), real_logits / temperature)
        return tokens.at[t + 1].set(drawn.astype(jnp.int32)), None

    tokens, _ = jax.lax.scan(body, tokens, jnp.arange(prompt_len - 1, total - 1))
    return tokens
