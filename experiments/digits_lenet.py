"""LeNet-5 on scikit-learn's 8x8 digits: the offline default (about 98% test accuracy: 97.8-98.9%
over seeds 0-2; about 30 s on 2 CPU cores)."""

from research.config import base_config, parse_arg
from research.models import default_config
from research.sweep import axis, choice, log, product


def get_config(arg=None):
    parse_arg(arg)  # takes no argument
    config = base_config("digits_lenet")
    config.data.name = "digits"
    config.data.batch_size = 32
    # Wider than the paper's (6, 16) maps, with dropout and 1-pixel random shifts: the 8x8
    # images are tiny and the training set is 1,294 examples.
    config.model = default_config(
        "lenet",
        padding=("SAME", "SAME"),
        features=(32, 64),
        dense_sizes=(256, 128),
        dropout_rate=0.5,
    )
    config.task.augment = "crop"
    config.task.crop_padding = 1
    config.optimizer.learning_rate = 2e-3
    config.optimizer.schedule = "cosine"
    config.train.num_epochs = 40
    return config


def sweep():
    return product(
        axis("optimizer.learning_rate", [1e-3, 3e-3, 1e-2]),
        axis("data.batch_size", [16, 32, 64]),
        axis("train.num_epochs", [20, 40]),
        axis("seed", [0, 1, 2]),
    )


def search():
    """For `launch.tune`: Adam's step size and coupled L2 on a log scale, and the batch size."""
    return {
        "optimizer.learning_rate": log(3e-4, 3e-2),
        "optimizer.weight_decay": log(1e-6, 1e-3),
        "data.batch_size": choice([16, 32, 64]),
    }
