"""Transformer encoder and heads: parameter counts, attention masking, training and sampling."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from research.models import build_model
from research.models.transformer import SelfAttention, sample

VOCAB, MAX_LEN, LAYERS, HEADS, EMBED, MLP = 13, 10, 2, 2, 8, 16
SMALL = dict(
    vocab_size=VOCAB, max_len=MAX_LEN, num_layers=LAYERS, num_heads=HEADS, embed_dim=EMBED,
    mlp_dim=MLP, dropout_rate=0.0,
)  # fmt: skip


def count(params) -> int:
    return sum(x.size for x in jax.tree.leaves(params))


def padded_tokens(lengths: list[int], time: int, seed: int = 0) -> jax.Array:
    """tokens [len(lengths), time] with random real tokens followed by pad (0)."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(1, VOCAB, (len(lengths), time))
    tokens[np.arange(time)[None, :] >= np.array(lengths)[:, None]] = 0
    return jnp.asarray(tokens, jnp.int32)


def dense(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out  # kernel and bias


def encoder_params() -> int:
    block = (
        2 * EMBED  # attention LayerNorm
        + 4 * dense(EMBED, EMBED)  # query, key, value, output projections
        + 2 * EMBED  # MLP LayerNorm
        + dense(EMBED, MLP)
        + dense(MLP, EMBED)
    )
    return VOCAB * EMBED + MAX_LEN * EMBED + LAYERS * block + 2 * EMBED  # + final LayerNorm


@pytest.mark.parametrize(
    "name, extra, head_params, logits_shape",
    [  # masked LM: transform, its LayerNorm, output; classifier: pooler, head
        ("bert_mlm", {}, dense(EMBED, EMBED) + 2 * EMBED + dense(EMBED, VOCAB), (3, 7, VOCAB)),
        (
            "transformer_classifier",
            {"num_classes": 4},
            dense(EMBED, EMBED) + dense(EMBED, 4),
            (3, 4),
        ),
        ("transformer_lm", {}, dense(EMBED, VOCAB), (3, 7, VOCAB)),
    ],
)
def test_heads_shapes_and_parameter_counts(name, extra, head_params, logits_shape):
    model = build_model(name, **SMALL, **extra)
    tokens = padded_tokens([7, 4, 1], 7)
    variables = jax.eval_shape(model.init, jax.random.key(0), tokens)
    logits = jax.eval_shape(model.apply, variables, tokens)
    assert logits.shape == logits_shape and logits.dtype == jnp.float32
    assert count(variables["params"]["encoder"]) == encoder_params()
    assert count(variables["params"]) == encoder_params() + head_params


def test_classifier_starts_from_a_masked_lm_encoder():
    tokens = padded_tokens([7, 4], 7)
    mlm = build_model("bert_mlm", **SMALL)
    classifier = build_model("transformer_classifier", **SMALL, num_classes=3)
    mlm_params = mlm.init(jax.random.key(0), tokens)["params"]
    params = dict(classifier.init(jax.random.key(1), tokens)["params"])
    assert jax.tree.structure(params["encoder"]) == jax.tree.structure(mlm_params["encoder"])
    params["encoder"] = mlm_params["encoder"]
    encode = lambda model, tokens: model.encoder(tokens)
    hidden = classifier.apply({"params": params}, tokens, method=encode)
    np.testing.assert_array_equal(hidden, mlm.apply({"params": mlm_params}, tokens, method=encode))


@pytest.mark.parametrize("pooling", ["cls", "mean", "max"])
def test_classifier_logits_ignore_padding(pooling):
    model = build_model("transformer_classifier", **SMALL, num_classes=3, pooling=pooling)
    tokens = padded_tokens([6, 3, 1], 6)
    logits, variables = jax.jit(model.init_with_output)(jax.random.key(0), tokens)
    more_pad = jnp.pad(tokens, ((0, 0), (0, 4)))
    np.testing.assert_allclose(jax.jit(model.apply)(variables, more_pad), logits, atol=1e-5)
    alone = jax.jit(model.apply)(variables, tokens[1:2, :3])  # no padding at all
    np.testing.assert_allclose(alone[0], logits[1], atol=1e-5)
    if pooling != "cls":  # the summary reads every real token, not only the first
        changed = tokens.at[1, 2].set(tokens[1, 2] % (VOCAB - 1) + 1)
        assert np.abs(jax.jit(model.apply)(variables, changed)[1] - logits[1]).max() > 1e-4


def test_masked_lm_logits_at_positions_equal_the_full_logits_there():
    model = build_model("bert_mlm", **SMALL)
    tokens = padded_tokens([7, 4], 7)
    full, variables = jax.jit(model.init_with_output)(jax.random.key(0), tokens)
    positions = jnp.asarray([[6, 0, 3], [2, 2, 5]], jnp.int32)
    at_positions = jax.jit(model.apply)(variables, (tokens, positions))
    assert at_positions.shape == (2, 3, VOCAB)
    np.testing.assert_allclose(at_positions, full[jnp.arange(2)[:, None], positions], atol=1e-6)


def test_attention_matches_numpy_reference():
    batch, time = 2, 5
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, time, EMBED)).astype(np.float32)
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], bool)
    attention = SelfAttention(HEADS)
    variables = attention.init(jax.random.key(0), x, mask)
    out = attention.apply(variables, x, mask)

    p = jax.tree.map(lambda a: np.asarray(a, np.float64), variables["params"])
    head_dim = EMBED // HEADS
    project = lambda name: np.einsum("btd,dhk->bthk", x, p[name]["kernel"]) + p[name]["bias"]
    q, k, v = project("query"), project("key"), project("value")
    scores = np.einsum("bqhk,bshk->bhqs", q, k) / np.sqrt(head_dim)
    scores = np.where(mask[:, None, None, :], scores, -np.inf)
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    context = np.einsum("bhqs,bshk->bqhk", weights, v)
    ref = np.einsum("bqhk,hkd->bqd", context, p["out"]["kernel"]) + p["out"]["bias"]
    np.testing.assert_allclose(out, ref, atol=1e-5)


def test_causal_mask_hides_future_tokens():
    model = build_model("transformer_lm", **SMALL)
    tokens = padded_tokens([8, 8], 8)
    logits, variables = model.init_with_output(jax.random.key(0), tokens)
    future = tokens.at[:, 5].set(tokens[:, 5] % (VOCAB - 1) + 1)
    changed = model.apply(variables, future)
    np.testing.assert_allclose(changed[:, :5], logits[:, :5], atol=1e-5)
    assert not np.allclose(changed[:, 5:], logits[:, 5:], atol=1e-3)


def test_pad_embedding_does_not_reach_real_positions():
    model = build_model("bert_mlm", **SMALL)
    tokens = padded_tokens([7, 4, 2], 7)
    logits, variables = model.init_with_output(jax.random.key(0), tokens)
    params = jax.tree.map(lambda a: a, variables["params"])  # a copy to edit
    table = params["encoder"]["token_embed"]["embedding"]
    new_pad = jax.random.normal(jax.random.key(1), (EMBED,))  # not a constant: LN removes that
    params["encoder"]["token_embed"]["embedding"] = table.at[0].set(new_pad)
    changed = model.apply({"params": params}, tokens)
    real = np.asarray(tokens != 0)
    np.testing.assert_allclose(changed[real], logits[real], atol=1e-5)
    assert not np.allclose(changed[~real], logits[~real], atol=1e-3)


@pytest.mark.parametrize("name", ["bert_mlm", "transformer_lm"])
def test_attention_weights_are_distributions_over_allowed_keys(name):
    model = build_model(name, **SMALL)
    tokens = padded_tokens([6, 3], 6)
    mutable = ["params", "intermediates"]  # the sown weights come back, too
    variables = model.init(jax.random.key(0), tokens, mutable=mutable)
    for i in range(LAYERS):
        (weights,) = variables["intermediates"]["encoder"][f"blocks_{i}"]["attention"]["attention"]
        assert weights.shape == (2, HEADS, 6, 6)  # [batch, heads, query, key]
        np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-5)
        pad_keys = np.broadcast_to(np.asarray(tokens == 0)[:, None, None, :], weights.shape)
        np.testing.assert_array_equal(np.asarray(weights)[pad_keys], 0.0)
        future = np.triu(np.ones((6, 6), bool), 1)
        assert np.all(np.asarray(weights)[..., future] == 0) == (name == "transformer_lm")


def test_longer_than_max_len_is_rejected():
    model = build_model("transformer_lm", **SMALL)
    with pytest.raises(ValueError, match="max_len"):
        model.init(jax.random.key(0), jnp.ones((1, MAX_LEN + 1), jnp.int32))


def test_dropout_draws_from_the_dropout_rng_only_in_training():
    model = build_model("transformer_classifier", **{**SMALL, "dropout_rate": 0.5})
    tokens = padded_tokens([7, 4], 7)
    eval_logits, variables = model.init_with_output(jax.random.key(0), tokens)
    np.testing.assert_array_equal(model.apply(variables, tokens, train=False), eval_logits)
    rngs = lambda seed: {"dropout": jax.random.key(seed)}
    train = lambda seed: model.apply(variables, tokens, train=True, rngs=rngs(seed))
    np.testing.assert_array_equal(train(1), train(1))
    assert not np.allclose(train(1), train(2))


def test_bfloat16_compute_keeps_float32_params_and_logits():
    """Every layer computes in bfloat16 (so ignoring `dtype` fails); only the attention
    softmax and the logits are float32."""
    model = build_model("transformer_lm", **SMALL, dtype=jnp.bfloat16)
    tokens = padded_tokens([7, 4], 7)
    variables = jax.jit(model.init)(jax.random.key(0), tokens)
    assert {x.dtype for x in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}
    apply = functools.partial(model.apply, capture_intermediates=True, mutable=["intermediates"])
    logits, state = jax.jit(apply)(variables, tokens)
    outputs = jax.tree_util.tree_leaves_with_path(state["intermediates"])
    dtypes = {jax.tree_util.keystr(path): leaf.dtype.name for path, leaf in outputs}
    float32 = {name for name, dtype in dtypes.items() if dtype == "float32"}
    softmax = {f"['encoder']['blocks_{i}']['attention']['attention'][0]" for i in range(LAYERS)}
    assert float32 == {"['__call__'][0]", *softmax} and logits.dtype == jnp.float32
    assert set(dtypes.values()) == {"bfloat16", "float32"}  # embeddings, norms, projections
    assert "['encoder']['blocks_1']['mlp_out']['__call__'][0]" in dtypes
    reference = jax.jit(build_model("transformer_lm", **SMALL).apply)(variables, tokens)
    error = np.abs(np.asarray(logits) - np.asarray(reference)).max()
    assert 1e-4 < error < 0.1  # bfloat16's rounding: far above float32's, far below a bug's


def test_adam_steps_lower_the_loss_on_a_copy_task():
    # Each sequence repeats a random 3-token pattern: later tokens copy the one 3 steps back.
    rng = np.random.default_rng(0)
    sequences = jnp.asarray(np.tile(rng.integers(1, VOCAB, (16, 3)), 3), jnp.int32)
    inputs, targets = sequences[:, :-1], sequences[:, 1:]
    model = build_model("transformer_lm", **SMALL)
    params = model.init(jax.random.key(0), inputs)["params"]
    optimizer = optax.adam(1e-2)

    def loss_fn(params):
        logits = model.apply({"params": params}, inputs)
        return optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()

    @jax.jit
    def train_step(params, opt_state):
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = optimizer.update(grads, opt_state)
        return optax.apply_updates(params, updates), opt_state, loss

    opt_state = optimizer.init(params)
    initial = float(loss_fn(params))
    for _ in range(30):
        params, opt_state, _ = train_step(params, opt_state)
    assert float(loss_fn(params)) < 0.7 * initial


def test_sample_is_reproducible_and_greedy_at_low_temperature():
    model = build_model("transformer_lm", **SMALL)
    prompt = jnp.asarray([3, 1, 4], jnp.int32)
    params = model.init(jax.random.key(0), prompt[None])["params"]
    length = 12  # 3 + 12 tokens > MAX_LEN: the window slides
    draw = lambda key, temperature=1.0: sample(model, params, prompt, length, temperature, key)

    tokens = draw(jax.random.key(1))
    assert tokens.shape == (3 + length,) and tokens.dtype == jnp.int32
    np.testing.assert_array_equal(tokens[:3], prompt)
    np.testing.assert_array_equal(draw(jax.random.key(1)), tokens)
    assert not np.array_equal(draw(jax.random.key(2)), tokens)

    greedy = list(np.asarray(prompt))
    apply = jax.jit(model.apply)
    for _ in range(length):  # the argmax over real tokens given the last MAX_LEN tokens
        window = greedy[-MAX_LEN:] + [0] * (MAX_LEN - len(greedy[-MAX_LEN:]))
        logits = apply({"params": params}, jnp.asarray([window], jnp.int32))
        greedy.append(1 + int(jnp.argmax(logits[0, min(len(greedy), MAX_LEN) - 1, 1:])))
    np.testing.assert_array_equal(draw(jax.random.key(3), 1e-6), greedy)
