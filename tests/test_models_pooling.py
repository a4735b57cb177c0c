"""Sequence summaries: max and mean read only real steps; a model's own summary passes through."""

import jax.numpy as jnp
import numpy as np
import pytest

from research.errors import UserError
from research.models.pooling import pool


def test_pooling_reads_only_real_steps():
    outputs = jnp.asarray(
        [[[1.0, -5.0], [3.0, -2.0], [0.0, 0.0]], [[-4.0, -1.0], [0.0, 0.0], [0.0, 0.0]]]
    )
    mask = jnp.asarray([[True, True, False], [True, False, False]])
    final = jnp.asarray([[3.0, -2.0], [-4.0, -1.0]])
    np.testing.assert_array_equal(pool("final", outputs, mask, final=final), final)
    np.testing.assert_array_equal(pool("cls", outputs, mask, cls=outputs[:, 0]), outputs[:, 0])
    # Padded outputs are 0, larger than every real value of the second row: max must skip them.
    np.testing.assert_array_equal(pool("max", outputs, mask, final=final), [[3, -2], [-4, -1]])
    np.testing.assert_array_equal(pool("mean", outputs, mask, final=final), [[2, -3.5], [-4, -1]])
    with pytest.raises(UserError, match=r"model.pooling to one of: final, max, mean"):
        pool("last", outputs, mask, final=final)
