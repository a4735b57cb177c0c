"""Write a small stand-in for ImageNet's official archives
(`research.data.imagenet_stand_in`), to test and benchmark the ImageNet path without the real
download: `python -m launch.fake_imagenet --out=DIR [--per_class=2] [--val_images=500]
[--sides=64,160]`, then `python -m launch.prepare_data imagenet2012 --from=DIR`.
"""

import pathlib

from absl import flags

from launch import common
from research.data.imagenet_stand_in import VAL_LABELS, write

flags.DEFINE_string("out", None, "Folder to write the two archives into.")
flags.DEFINE_integer("per_class", 2, "Training JPEGs per class (1,000 classes).")
flags.DEFINE_integer("val_images", 500, "Validation JPEGs (at most 50,000).")
flags.DEFINE_list("sides", ["64", "160"], "Smallest and largest image side, in pixels.")
FLAGS = flags.FLAGS


def main(argv: list[str], overrides: dict[str, str]) -> None:
    if len(argv) != 1 or overrides or not FLAGS.out:
        common.fail("usage: python -m launch.fake_imagenet --out=DIR [--per_class=N]")
    if FLAGS.per_class < 1 or not 1 <= FLAGS.val_images <= VAL_LABELS:
        common.fail(
            f"--per_class must be >= 1 and --val_images in 1..{VAL_LABELS}, got "
            f"{FLAGS.per_class} and {FLAGS.val_images}."
        )
    sides = tuple(int(side) for side in FLAGS.sides if side.isdigit())
    if len(sides) != len(FLAGS.sides) or len(sides) != 2 or not 1 <= sides[0] <= sides[1]:
        common.fail(f"--sides must be two sides SMALLEST,LARGEST, got {FLAGS.sides}.")
    write(pathlib.Path(FLAGS.out), FLAGS.per_class, FLAGS.val_images, sides)
    print(f"wrote ImageNet stand-in archives to {FLAGS.out}")


if __name__ == "__main__":
    common.run(main)
