"""Matmul FLOPs from the jaxpr: every scan step counts, convolutions by their formula."""

import jax
import jax.numpy as jnp

from research.flops import matmul_flops
from research.models import build_model


def test_lstm_flops_count_every_time_step() -> None:
    batch, time, vocab, embed, hidden = 4, 6, 11, 5, 8
    model = build_model("rnn_lm", vocab_size=vocab, embed_dim=embed, hidden_size=hidden)
    tokens = jnp.ones((batch, time), jnp.int32)
    params = model.init(jax.random.key(0), tokens)
    gates = 2 * batch * (hidden + embed) * 4 * hidden  # W [h; x] per step
    head = 2 * batch * hidden * vocab  # W_hy per step
    assert matmul_flops(model.apply, params, tokens) == time * (gates + head)
    # XLA's cost analysis counts the scanned body once: fewer than even the gates of all steps.
    analysis = jax.jit(model.apply).lower(params, tokens).compile().cost_analysis()
    analysis = analysis[0] if isinstance(analysis, list) else analysis
    assert analysis["flops"] < time * gates


def test_convolution_and_gradient_flops() -> None:
    conv = lambda x, w: jax.lax.conv_general_dilated(x, w, (1, 1), "VALID").sum()
    x, w = jnp.ones((2, 3, 32, 32)), jnp.ones((6, 3, 5, 5))  # the lecture's 32x32x3, six 5x5x3
    forward = 2 * 2 * (28 * 28 * 6) * (5 * 5 * 3)
    assert matmul_flops(conv, x, w) == forward
    # The gradient adds the weights' (same size) and the input's, a zero-padded ("full")
    # convolution counted as executed: every 32x32x3 input value from a 5x5x6 window.
    input_gradient = 2 * 2 * (32 * 32 * 3) * (5 * 5 * 6)
    assert matmul_flops(jax.grad(conv, argnums=(0, 1)), x, w) == 2 * forward + input_gradient
