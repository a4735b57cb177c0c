"""Recurrent models: cell equations, scan vs a Python loop, masking, bidirectionality, training
and sampling."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from research.errors import UserError
from research.models import build_model
from research.models.rnn import Bidirectional, LSTMCell, Recurrent, RNNCell, sample


def count(params) -> int:
    return sum(x.size for x in jax.tree.leaves(params))


def shapes(model, inputs: jax.Array):
    """(variables, logits) as shape structs: traced only, nothing compiled or run."""
    variables = jax.eval_shape(model.init, jax.random.key(0), inputs)
    return variables, jax.eval_shape(model.apply, variables, inputs)


def cell_params(cell: str, inputs: int, hidden: int) -> int:
    if cell == "rnn":  # W_hh, W_xh, b
        return hidden * hidden + inputs * hidden + hidden
    return (hidden + inputs) * 4 * hidden + 4 * hidden  # W [h; x] -> (i, f, o, g), b


def padded_tokens(lengths: list[int], time: int, vocab: int, seed: int = 0) -> jax.Array:
    """tokens [len(lengths), time] with random real tokens followed by pad (0)."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(1, vocab, (len(lengths), time))
    tokens[np.arange(time)[None, :] >= np.array(lengths)[:, None]] = 0
    return jnp.asarray(tokens, jnp.int32)


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_lm_shape_and_parameter_count(cell):
    vocab, embed, hidden, layers = 13, 5, 7, 3
    model = build_model(
        "rnn_lm", vocab_size=vocab, embed_dim=embed, hidden_size=hidden, num_layers=layers,
        cell=cell,
    )  # fmt: skip
    tokens = padded_tokens([4, 2], 6, vocab)
    variables, logits = shapes(model, tokens)
    assert logits.shape == (2, 6, vocab) and logits.dtype == jnp.float32
    expected = (
        vocab * embed
        + cell_params(cell, embed, hidden)
        + (layers - 1) * cell_params(cell, hidden, hidden)
        + hidden * vocab
        + vocab  # W_hy and its bias
    )
    assert count(variables["params"]) == expected


@pytest.mark.parametrize("bidirectional", [False, True])
def test_classifier_shapes_and_parameter_counts(bidirectional):
    hidden, layers, classes, directions = 6, 2, 10, 1 + bidirectional
    features = jnp.asarray(np.random.default_rng(0).normal(size=(3, 8, 8)), jnp.float32)
    model = build_model(
        "rnn_classifier", hidden_size=hidden, num_layers=layers, cell="lstm",
        bidirectional=bidirectional, num_classes=classes,
    )  # fmt: skip
    variables, logits = shapes(model, features)
    assert logits.shape == (3, classes)
    expected = directions * (
        cell_params("lstm", 8, hidden) + cell_params("lstm", directions * hidden, hidden)
    ) + (directions * hidden * classes + classes)
    assert count(variables["params"]) == expected

    vocab, embed = 20, 4
    tokens = padded_tokens([5, 3, 1], 5, vocab)
    model = build_model(
        "rnn_classifier", vocab_size=vocab, embed_dim=embed, hidden_size=hidden, num_layers=1,
        cell="rnn", bidirectional=bidirectional, num_classes=classes,
    )  # fmt: skip
    variables, logits = shapes(model, tokens)
    assert logits.shape == (3, classes)
    expected = (
        vocab * embed
        + directions * cell_params("rnn", embed, hidden)
        + directions * hidden * classes
        + classes
    )
    assert count(variables["params"]) == expected


def test_lstm_cell_matches_numpy_gate_equations():
    batch, features, hidden = 3, 4, 5
    rng = np.random.default_rng(0)
    c, h = rng.normal(size=(batch, hidden)), rng.normal(size=(batch, hidden))
    x = rng.normal(size=(batch, features))
    cell = LSTMCell(hidden)
    params = cell.init(jax.random.key(0), (jnp.asarray(c), jnp.asarray(h)), jnp.asarray(x))
    w = np.asarray(params["params"]["W"]["kernel"], np.float64)
    b = np.asarray(params["params"]["W"]["bias"], np.float64)
    np.testing.assert_array_equal(b, np.r_[np.zeros(hidden), np.ones(hidden), np.zeros(2 * hidden)])
    b = rng.normal(size=b.shape)  # a random bias, so every gate's bias slice is exercised
    params = {"params": {"W": {"kernel": jnp.asarray(w), "bias": jnp.asarray(b)}}}
    args = (jnp.asarray(c, jnp.float32), jnp.asarray(h, jnp.float32)), jnp.asarray(x, jnp.float32)
    (c_new, h_new), out = cell.apply(params, *args)

    sigmoid = lambda z: 1 / (1 + np.exp(-z))
    z = np.concatenate([h, x], 1) @ w + b
    i, f, o, g = (z[:, k * hidden : (k + 1) * hidden] for k in range(4))
    c_ref = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
    h_ref = sigmoid(o) * np.tanh(c_ref)
    np.testing.assert_allclose(c_new, c_ref, atol=1e-5)
    np.testing.assert_allclose(h_new, h_ref, atol=1e-5)
    np.testing.assert_array_equal(out, h_new)


def test_rnn_cell_matches_numpy_equation():
    rng = np.random.default_rng(1)
    h, x = rng.normal(size=(2, 5)), rng.normal(size=(2, 3))
    cell = RNNCell(5)
    params = cell.init(jax.random.key(0), jnp.asarray(h, jnp.float32), jnp.asarray(x, jnp.float32))
    p = jax.tree.map(np.asarray, params["params"])
    h_new, _ = cell.apply(params, jnp.asarray(h, jnp.float32), jnp.asarray(x, jnp.float32))
    ref = np.tanh(h @ p["W_hh"]["kernel"] + x @ p["W_xh"]["kernel"] + p["W_xh"]["bias"])
    np.testing.assert_allclose(h_new, ref, atol=1e-5)


@pytest.mark.parametrize("cell_type", ["rnn", "lstm"])
def test_scan_over_time_equals_python_loop_of_the_cell(cell_type):
    batch, time, features, hidden = 2, 7, 3, 4
    x = jnp.asarray(np.random.default_rng(0).normal(size=(batch, time, features)), jnp.float32)
    mask = jnp.ones((batch, time), bool)
    layer = Recurrent(cell_type, hidden)
    (final, outputs), variables = jax.jit(layer.init_with_output)(jax.random.key(0), x, mask)

    cell = {"rnn": RNNCell, "lstm": LSTMCell}[cell_type](hidden)
    cell_vars = {"params": variables["params"]["cell"]}
    carry = cell.initial_carry(batch)
    for t in range(time):
        carry, h = cell.apply(cell_vars, carry, x[:, t])
        np.testing.assert_allclose(outputs[:, t], h, atol=1e-5)
    np.testing.assert_allclose(final, cell.hidden(carry), atol=1e-5)


@pytest.mark.parametrize("pooling", ["final", "max", "mean"])
def test_padding_keeps_the_state_so_classifier_output_ignores_it(pooling):
    lengths, vocab = [6, 3, 1], 11
    model = build_model(
        "rnn_classifier", vocab_size=vocab, embed_dim=4, hidden_size=5, num_layers=2,
        cell="lstm", bidirectional=True, num_classes=3, pooling=pooling,
    )  # fmt: skip
    tokens = padded_tokens(lengths, 6, vocab)
    logits, variables = jax.jit(model.init_with_output)(jax.random.key(0), tokens)
    more_pad = jnp.pad(tokens, ((0, 0), (0, 4)))
    np.testing.assert_allclose(jax.jit(model.apply)(variables, more_pad), logits, atol=1e-5)
    alone = jax.jit(model.apply)(variables, tokens[1:2, : lengths[1]])  # no padding at all
    np.testing.assert_allclose(alone[0], logits[1], atol=1e-5)


def test_word_dropout_drops_whole_tokens_only_in_training():
    vocab = 11
    model = build_model(
        "rnn_classifier", vocab_size=vocab, embed_dim=4, hidden_size=5, num_classes=3,
        pooling="mean", word_dropout_rate=1.0,
    )  # fmt: skip
    tokens = padded_tokens([6, 6], 6, vocab)
    variables = model.init(jax.random.key(0), tokens)
    trained = model.apply(variables, tokens, train=True, rngs={"dropout": jax.random.key(1)})
    # Every token dropped: both sentences read as the same all-zero sequence while training ...
    np.testing.assert_allclose(trained[0], trained[1], atol=1e-6)
    # ... and evaluation sees the words again.
    evaluated = model.apply(variables, tokens)
    assert np.abs(evaluated[0] - evaluated[1]).max() > 1e-3


def test_final_state_is_the_state_at_the_last_real_token():
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 6, 3)), jnp.float32)
    mask = jnp.asarray([[1, 1, 1, 1, 0, 0], [1, 1, 0, 0, 0, 0]], bool)
    layer = Recurrent("lstm", 4)
    (final, outputs), variables = jax.jit(layer.init_with_output)(jax.random.key(0), x, mask)
    np.testing.assert_allclose(final, outputs[jnp.arange(2), jnp.asarray([3, 1])], atol=1e-6)
    np.testing.assert_array_equal(outputs[~mask], 0)


def test_bidirectional_doubles_features_and_backward_reads_reversed():
    batch, time, features, hidden = 2, 5, 3, 4
    x = jnp.asarray(np.random.default_rng(0).normal(size=(batch, time, features)), jnp.float32)
    mask = jnp.ones((batch, time), bool)
    layer = Bidirectional("lstm", hidden)
    (final, outputs), variables = jax.jit(layer.init_with_output)(jax.random.key(0), x, mask)
    assert final.shape == (batch, 2 * hidden) and outputs.shape == (batch, time, 2 * hidden)

    forward = Recurrent("lstm", hidden)
    fwd_final, fwd_out = jax.jit(forward.apply)({"params": variables["params"]["forward"]}, x, mask)
    np.testing.assert_allclose(outputs[..., :hidden], fwd_out, atol=1e-6)
    np.testing.assert_allclose(final[:, :hidden], fwd_final, atol=1e-6)
    bwd_params = {"params": variables["params"]["backward"]}
    rev_final, rev_out = jax.jit(forward.apply)(bwd_params, x[:, ::-1], mask)
    np.testing.assert_allclose(outputs[..., hidden:], rev_out[:, ::-1], atol=1e-5)
    np.testing.assert_allclose(final[:, hidden:], rev_final, atol=1e-5)


def small_lm(cell: str = "lstm", num_layers: int = 1, **kwargs):
    return build_model(
        "rnn_lm", vocab_size=12, embed_dim=8, hidden_size=16, num_layers=num_layers, cell=cell,
        **kwargs,
    )  # fmt: skip


def test_step_reproduces_the_scanned_logits():
    model = small_lm(num_layers=2)
    tokens = padded_tokens([6, 3], 6, 12)  # pad steps must match too
    logits, variables = jax.jit(model.init_with_output)(jax.random.key(0), tokens)
    carry = model.apply(variables, 2, method=model.initial_carry)
    step = jax.jit(functools.partial(model.apply, variables, method=model.step))
    for t in range(tokens.shape[1]):
        carry, step_logits = step(carry, tokens[:, t])
        np.testing.assert_allclose(step_logits, logits[:, t], atol=1e-5)


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_adam_steps_lower_the_loss_on_a_copy_task(cell):
    # Each sequence repeats a random 3-token pattern: later tokens copy the one 3 steps back.
    rng = np.random.default_rng(0)
    sequences = jnp.asarray(np.tile(rng.integers(1, 12, (16, 3)), 5), jnp.int32)
    inputs, targets = sequences[:, :-1], sequences[:, 1:]
    model = small_lm(cell)
    params = jax.jit(model.init)(jax.random.key(0), inputs)["params"]
    optimizer = optax.adam(2e-2)

    @jax.jit
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


def test_dropout_draws_from_the_dropout_rng_only_in_training():
    model = small_lm(dropout_rate=0.5)
    tokens = padded_tokens([6, 4], 6, 12)
    eval_logits, variables = jax.jit(model.init_with_output)(jax.random.key(0), tokens)
    apply = jax.jit(model.apply, static_argnames="train")
    np.testing.assert_array_equal(apply(variables, tokens, train=False), eval_logits)
    train = lambda seed: apply(
        variables, tokens, train=True, rngs={"dropout": jax.random.key(seed)}
    )
    np.testing.assert_array_equal(train(1), train(1))
    assert not np.allclose(train(1), train(2))
    assert not np.allclose(train(1), eval_logits)


def test_bfloat16_compute_keeps_float32_params_and_logits():
    """Every layer computes in bfloat16 (so ignoring `dtype` fails), only logits are float32."""
    model = small_lm(dtype=jnp.bfloat16)
    tokens = padded_tokens([6, 4], 6, 12)
    variables = jax.jit(model.init)(jax.random.key(0), tokens)
    assert {x.dtype for x in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}
    apply = functools.partial(model.apply, capture_intermediates=True, mutable=["intermediates"])
    logits, state = jax.jit(apply)(variables, tokens)
    outputs = jax.tree_util.tree_leaves_with_path(state["intermediates"])
    dtypes = {jax.tree_util.keystr(path): leaf.dtype.name for path, leaf in outputs}
    assert dtypes.pop("['__call__'][0]") == "float32" == logits.dtype.name
    assert {"['embed']['__call__'][0]", "['W_hy']['__call__'][0]"} < dtypes.keys()
    assert any(name.startswith("['layers_0']") for name in dtypes)  # the recurrent states
    assert set(dtypes.values()) == {"bfloat16"}, dtypes
    reference = jax.jit(small_lm().apply)(variables, tokens)
    error = np.abs(np.asarray(logits) - np.asarray(reference)).max()
    assert 1e-4 < error < 0.1  # bfloat16's rounding: far above float32's, far below a bug's


def test_unknown_cell_is_a_user_error():
    with pytest.raises(UserError, match="model.cell"):
        small_lm("gru").init(jax.random.key(0), jnp.ones((1, 2), jnp.int32))


def test_sample_is_reproducible_and_greedy_at_low_temperature():
    model = small_lm()
    prompt = jnp.asarray([3, 1, 4], jnp.int32)
    params = jax.jit(model.init)(jax.random.key(0), prompt[None])["params"]
    draw = lambda key, temperature=1.0: sample(model, params, prompt, 20, temperature, key)

    tokens = draw(jax.random.key(1))
    assert tokens.shape == (23,) and tokens.dtype == jnp.int32
    np.testing.assert_array_equal(tokens[:3], prompt)
    np.testing.assert_array_equal(draw(jax.random.key(1)), tokens)
    assert not np.array_equal(draw(jax.random.key(2)), tokens)

    # The argmax over real tokens, re-reading the whole sequence each time; the pad after the
    # current position cannot reach it, which keeps one shape and one compilation.
    greedy = np.zeros(23, np.int32)
    greedy[:3] = prompt
    apply = jax.jit(model.apply)
    for t in range(2, 22):
        logits = apply({"params": params}, jnp.asarray(greedy[None]))
        greedy[t + 1] = 1 + int(jnp.argmax(logits[0, t, 1:]))
    np.testing.assert_array_equal(draw(jax.random.key(3), 1e-6), greedy)
