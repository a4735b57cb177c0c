"""Text from a finished language-model run: restore its best checkpoint and vocabulary, sample.

Reads the workdir only; writes nothing. `launch.sample` is the command-line entry point.
"""

import json
import pathlib

import jax
import jax.numpy as jnp

from research.data import vocab
from research.errors import UserError
from research.models import rnn, transformer
from research.train.loop import restore_best_params

SAMPLERS = {"rnn_lm": rnn.sample, "transformer_lm": transformer.sample}


def generate(
    workdir: str | pathlib.Path, prompt: str, length: int, temperature: float, seed: int
) -> str:
    """The prompt followed by `length` tokens sampled in one compiled scan, decoded to text.

    The same (workdir, prompt, length, temperature, seed) always gives the same text.
    """
    if length < 0 or temperature <= 0:
        raise UserError("The length must be >= 0 and the temperature > 0.")
    config, model, params = restore_best_params(workdir)
    if config.model.name not in SAMPLERS:
        raise UserError(
            f"{str(workdir)!r} trained {config.model.name!r}, not a language model "
            f"({', '.join(SAMPLERS)}); sampling needs one."
        )
    saved = json.loads((pathlib.Path(workdir) / "vocab.json").read_text())
    vocabulary = vocab.from_json(saved)
    tokens = vocabulary.encode(prompt)
    if len(tokens) == 0 or not tokens.all():
        raise UserError(
            f"The prompt {prompt!r} is empty or has characters the run's vocabulary lacks; "
            "use characters of its training text."
        )
    sample = SAMPLERS[config.model.name]
    out = sample(model, params, jnp.asarray(tokens), length, temperature, jax.random.key(seed))
    return prompt + vocabulary.decode(jax.device_get(out)[len(tokens) :].tolist())
