"""Adversarial training on embeddings: the perturbation, and the gradient the step descends."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from research.errors import UserError
from research.models import build_model
from research.tasks.classification import ImageClassification
from research.tasks.language import TextClassification
from research.train.steps import adversarial, create_state, make_train_step

EPSILON = 0.5


def test_the_perturbation_has_norm_epsilon_per_example_along_the_gradient():
    gradients = (
        jax.random.normal(jax.random.key(0), (3, 5, 4))
        * jnp.asarray([1e-3, 1.0, 50.0])[:, None, None]
    )
    perturbation = adversarial({"embeddings": gradients}, EPSILON)["embeddings"]
    norms = np.linalg.norm(np.asarray(perturbation).reshape(3, -1), axis=1)
    np.testing.assert_allclose(norms, EPSILON, rtol=1e-6)
    cosine = jnp.sum(perturbation * gradients, axis=(1, 2)) / (
        norms * jnp.linalg.norm(gradients.reshape(3, -1), axis=1)
    )
    np.testing.assert_allclose(cosine, 1.0, rtol=1e-6)
    # A zero gradient (an all-padding row) gives no perturbation, not NaN.
    assert not np.any(adversarial(jnp.zeros((1, 2)), EPSILON))


def classifier_state():
    model = build_model("rnn_classifier", vocab_size=20, embed_dim=8, hidden_size=8, num_classes=2)
    tokens = jnp.asarray([[3, 5, 7, 0], [2, 9, 0, 0], [4, 4, 4, 4]], jnp.int32)
    batch = {"tokens": tokens, "label": jnp.asarray([0, 1, 1], jnp.int32)}
    state = create_state(model, optax.sgd(1.0), tokens, jax.random.key(0))
    return model, state, batch


def test_the_step_descends_the_clean_plus_the_adversarial_loss():
    model, state, batch = classifier_state()
    task = TextClassification(num_classes=2)
    embed = state.params["embed"]["embedding"]

    def loss(params, perturbation):
        variables = {"params": params, "perturbations": {"embeddings": perturbation}}
        return task.loss_and_metrics(model.apply(variables, batch["tokens"]), batch, {})[0]

    zero = jnp.zeros(batch["tokens"].shape + (embed.shape[1],))
    attack = adversarial(jax.grad(loss, argnums=1)(state.params, zero), EPSILON)
    clean, attacked = loss(state.params, zero), loss(state.params, attack)
    random = adversarial(jax.random.normal(jax.random.key(1), zero.shape), EPSILON)
    assert attacked > loss(state.params, random) and attacked > clean + 1e-3
    expected = jax.grad(lambda p: loss(p, zero) + loss(p, attack))(state.params)

    new, metrics = jax.jit(make_train_step(task, jax.random.key(0), EPSILON))(state, batch)
    step = jax.tree.map(lambda old, new: old - new, state.params, new.params)  # sgd(1.0)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), step, expected)
    np.testing.assert_allclose(metrics["loss"] / metrics["count"], clean, rtol=1e-6)


def test_a_model_without_embeddings_is_refused_by_name():
    model = build_model("mlp", hidden_sizes=(4,), num_classes=2)
    images = jnp.zeros((2, 2, 2, 1), jnp.uint8)
    state = create_state(model, optax.sgd(1.0), images.astype(jnp.float32), jax.random.key(0))
    task = ImageClassification(mean=(0.0,), std=(1.0,), num_classes=2)
    batch = {"image": images, "label": jnp.asarray([0, 1], jnp.int32)}
    with pytest.raises(UserError, match="train.adversarial_epsilon"):
        make_train_step(task, jax.random.key(0), EPSILON)(state, batch)
