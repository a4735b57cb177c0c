"""LeNet-5 on Fashion-MNIST from TFDS; the MNIST recipe on a harder dataset of the same shape."""

from research.config import base_config, parse_arg
from research.models import default_config
from research.sweep import axis, product


def get_config(arg=None):
    parse_arg(arg)  # takes no argument
    config = base_config("fashion_mnist_lenet")
    config.data.name = "fashion_mnist"
    config.data.batch_size = 128
    config.model = default_config("lenet", padding=("SAME", "VALID"), dropout_rate=0.2)
    config.optimizer.learning_rate = 2e-3
    config.optimizer.schedule = "cosine"
    config.train.num_epochs = 30
    config.train.patience = 8
    return config


def sweep():
    return product(
        axis("optimizer.learning_rate", [1e-3, 2e-3, 4e-3]),
        axis("data.batch_size", [64, 128]),
        axis("seed", [0, 1, 2]),
    )
