"""The lecture's 3-layer MLP on scikit-learn's 8x8 digits, offline."""

from research.config import base_config, parse_arg
from research.models import default_config
from research.sweep import axis, product


def get_config(arg=None):
    parse_arg(arg)  # takes no argument
    config = base_config("digits_mlp")
    config.data.name = "digits"
    config.data.batch_size = 32
    config.model = default_config("mlp", hidden_sizes=(64,), activation="tanh")
    config.optimizer.learning_rate = 3e-3
    config.optimizer.schedule = "cosine"
    config.train.num_epochs = 40
    return config


def sweep():
    return product(
        axis("optimizer.learning_rate", [1e-3, 3e-3, 1e-2]),
        axis("data.batch_size", [16, 32, 64]),
        axis("seed", [0, 1, 2]),
    )
