"""Sequential MNIST: an LSTM reads each image as 28 rows of 28 pixels (TFDS `mnist`)."""

from research.config import base_config, parse_arg
from research.models import default_config
from research.sweep import axis, product


def get_config(arg=None):
    parse_arg(arg)  # takes no argument
    config = base_config("mnist_rows_lstm")
    config.data.name = "mnist_rows"
    config.data.batch_size = 128
    config.model = default_config("rnn_classifier", hidden_size=128)
    config.optimizer.learning_rate = 1e-3
    config.optimizer.schedule = "cosine"
    config.optimizer.grad_clip_norm = 1.0
    config.train.num_epochs = 10
    return config


def sweep():
    return product(
        axis("optimizer.learning_rate", [5e-4, 1e-3, 2e-3]),
        axis("model.hidden_size", [128, 256]),
        axis("seed", [0, 1]),
    )
