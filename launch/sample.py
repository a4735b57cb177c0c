"""Generate text from a language-model run: `python -m launch.sample --workdir=DIR --prompt=TEXT`.

Flags and printing only; `research.sampling.generate` restores the run and samples.
"""

from absl import flags

from launch import common

flags.DEFINE_string("workdir", None, "Workdir of a finished language-model run.")
flags.DEFINE_string("prompt", "\n", "Text to continue (every character must be in the vocabulary).")
flags.DEFINE_integer("length", 200, "Number of tokens to generate after the prompt.")
flags.DEFINE_float("temperature", 1.0, "Softmax temperature (> 0); small values approach argmax.")
flags.DEFINE_integer("seed", 0, "Sampling seed: the same seed gives the same text.")
FLAGS = flags.FLAGS


def main(argv: list[str], overrides: dict[str, str]) -> None:
    if len(argv) > 1 or overrides or not FLAGS.workdir:
        common.fail(
            "usage: python -m launch.sample --workdir=DIR [--prompt=TEXT] [--length=N] "
            "[--temperature=T] [--seed=S]"
        )
    from research.sampling import generate

    print(generate(FLAGS.workdir, FLAGS.prompt, FLAGS.length, FLAGS.temperature, FLAGS.seed))


if __name__ == "__main__":
    common.run(main)
