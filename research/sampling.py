"""Text from a finished language-model run: restore its best checkpoint and vocabulary, sample.

Reads the workdir only; writes nothing. `launch.sample` is the command-line entry point.
"""

import json
import pathlib

import jax
import jax.numpy as jnp

from research.checks import integer, number
from research.config import FIELDS
from research.data import vocab
from research.errors import UserError
from research.models import SAMPLERS
from research.train.transfer import restore_best_params

# What each sampling setting allows: a temperature divides the logits; seeds as in training.
SETTINGS = {"length": integer(0), "temperature": number(0, open_low=True), "seed": FIELDS["seed"]}


def check_request(prompt: str, length: int, temperature: float, seed: int) -> None:
    """The sampling settings, refused before anything is read or compiled."""
    if not prompt:
        raise UserError(
            "The prompt is empty, but sampling continues a prompt of at least one token. Pass "
            "--prompt=TEXT (the default is a newline)."
        )
    for name, value in (("length", length), ("temperature", temperature), ("seed", seed)):
        if not SETTINGS[name].ok(value, None):
            hint = " For near-greedy text pass a small one, such as 0.01." * (name == "temperature")
            raise UserError(
                f"{name}={value}, but it must be {SETTINGS[name].allowed}. Pass --{name} with "
                f"such a value.{hint}"
            )


def check_workdir(workdir: pathlib.Path) -> None:
    """Says what a workdir lacks for sampling before anything is restored: a language model, a
    best checkpoint. Missing files are `restore_best_params`'s to name."""
    config_path = workdir / "config.json"
    if not config_path.is_file():
        return
    try:
        model = json.loads(config_path.read_text())["model"]["name"]
    except (ValueError, KeyError, TypeError) as error:
        raise UserError(
            f"{str(config_path)!r} is damaged ({type(error).__name__}: {error}), so the run's "
            "model is unknown. Pass the --workdir of another language-model run."
        ) from None
    if model not in SAMPLERS:
        raise UserError(
            f"{str(workdir)!r} trained {model!r}, not a language model "
            f"({', '.join(SAMPLERS.names())}); sampling needs one. Pass the --workdir of a "
            "run of such a model, e.g. experiments/text_lstm.py."
        )
    best = workdir / "checkpoints" / "best"
    if best.is_dir() and not any(step.name.isdigit() for step in best.iterdir()):
        raise UserError(
            f"{str(workdir)!r} has no best checkpoint yet: its run is still in its first epoch, "
            "or was stopped before its first validation. Rerun its launch.train command with "
            f"--workdir={workdir} to resume it, and sample once an epoch has finished."
        )


def _encode_prompt(vocabulary: vocab.Vocabulary, prompt: str) -> jax.Array:
    """prompt -> tokens [T0] int32, T0 >= 1; id 0 (a character the vocabulary lacks) refused."""
    tokens = vocabulary.encode(prompt)
    if len(tokens) == 0:
        raise UserError(
            f"The prompt {prompt!r} makes no token in the run's vocabulary; pass one with a "
            "word of its training text."
        )
    if not tokens.all():
        unknown = sorted({c for c in prompt if not vocabulary.encode(c).all()})
        raise UserError(
            f"The prompt {prompt!r} has characters the run's vocabulary lacks "
            f"({''.join(unknown)!r}); use characters of its training text."
        )
    return jnp.asarray(tokens)


def generate(
    workdir: str | pathlib.Path, prompt: str, length: int, temperature: float, seed: int
) -> str:
    """The prompt followed by `length` tokens sampled in one compiled scan, decoded to text.

    The same (workdir, prompt, length, temperature, seed) always gives the same text.
    """
    check_request(prompt, length, temperature, seed)
    workdir = pathlib.Path(workdir)
    check_workdir(workdir)
    config, model, params = restore_best_params(workdir)
    vocabulary = vocab.from_json(json.loads((workdir / "vocab.json").read_text()))
    tokens = _encode_prompt(vocabulary, prompt)
    sample = SAMPLERS.lookup(config.model.name)
    out = sample(model, params, tokens, length, temperature, jax.random.key(seed))
    return prompt + vocabulary.decode(jax.device_get(out)[len(tokens) :].tolist())
