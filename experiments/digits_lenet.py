"""LeNet-5 on scikit-learn's 8x8 digits: the offline default (>= 98% test accuracy, < 1 minute)."""

from research.config import base_config
from research.models import default_config
from research.sweep import axis, product


def get_config(arg=None):
    del arg
    config = base_config("digits_lenet")
    config.data.name = "digits"
    config.data.batch_size = 32
    config.model = default_config("lenet", padding=("SAME", "SAME"))
    config.optimizer.learning_rate = 3e-3
    config.optimizer.schedule = "cosine"
    config.train.num_epochs = 30
    return config


def sweep():
    return product(
        axis("optimizer.learning_rate", [1e-3, 3e-3, 1e-2]),
        axis("data.batch_size", [16, 32, 64]),
        axis("seed", [0, 1, 2]),
    )
