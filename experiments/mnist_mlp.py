"""The lecture's 3-layer MLP on MNIST from TFDS: 784 -> 800 -> 10 (>= 98% test accuracy)."""

from research.config import base_config, parse_arg
from research.models import default_config
from research.sweep import axis, product


def get_config(arg=None):
    parse_arg(arg)  # takes no argument
    config = base_config("mnist_mlp")
    config.data.name = "mnist"
    config.data.batch_size = 128
    config.model = default_config("mlp", hidden_sizes=(800,), activation="relu")
    config.optimizer.learning_rate = 1e-3
    config.optimizer.schedule = "cosine"
    config.train.num_epochs = 20
    return config


def sweep():
    return product(
        axis("optimizer.learning_rate", [3e-4, 1e-3, 3e-3]),
        axis("data.batch_size", [64, 128, 256]),
        axis("seed", [0, 1]),
    )
