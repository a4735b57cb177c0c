"""Generate text from a character-LM run: `python -m launch.sample --workdir=DIR --prompt=TEXT`.

Restores the run's best checkpoint and vocabulary; never trains or writes into the workdir.
"""

import json
import pathlib

from absl import flags

from launch import common
from research.errors import UserError

flags.DEFINE_string("workdir", None, "Workdir of a finished language-model run.")
flags.DEFINE_string("prompt", "\n", "Text to continue (every character must be in the vocabulary).")
flags.DEFINE_integer("length", 200, "Number of tokens to generate after the prompt.")
flags.DEFINE_float("temperature", 1.0, "Softmax temperature (> 0); small values approach argmax.")
flags.DEFINE_integer("seed", 0, "Sampling seed: the same seed gives the same text.")
FLAGS = flags.FLAGS


def generate(workdir: str, prompt: str, length: int, temperature: float, seed: int) -> str:
    """The prompt followed by `length` sampled tokens, decoded to text."""
    import jax
    import jax.numpy as jnp

    from research.data import vocab
    from research.models import rnn, transformer
    from research.train.loop import restore_best_state

    samplers = {"rnn_lm": rnn.sample, "transformer_lm": transformer.sample}
    if length < 0 or temperature <= 0:
        raise UserError("--length must be >= 0 and --temperature > 0.")
    config, model, state = restore_best_state(workdir)
    if config.model.name not in samplers:
        raise UserError(
            f"{workdir!r} trained {config.model.name!r}, not a language model "
            f"({', '.join(samplers)}); sampling needs one."
        )
    vocabulary = vocab.from_json(json.loads((pathlib.Path(workdir) / "vocab.json").read_text()))
    tokens = vocabulary.encode(prompt)
    if len(tokens) == 0 or not tokens.all():
        raise UserError(
            f"--prompt={prompt!r} is empty or has characters the run's vocabulary lacks; "
            f"use characters of its training text."
        )
    key = jax.random.key(seed)
    out = samplers[config.model.name](
        model, state.params, jnp.asarray(tokens), length, temperature, key
    )
    return prompt + vocabulary.decode(jax.device_get(out)[len(tokens) :].tolist())


def main(argv: list[str], overrides: dict[str, str]) -> None:
    if len(argv) > 1 or overrides or not FLAGS.workdir:
        common.fail(
            "usage: python -m launch.sample --workdir=DIR [--prompt=TEXT] [--length=N] "
            "[--temperature=T] [--seed=S]"
        )
    print(generate(FLAGS.workdir, FLAGS.prompt, FLAGS.length, FLAGS.temperature, FLAGS.seed))


if __name__ == "__main__":
    common.run(main)
