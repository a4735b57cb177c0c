"""LSTM reading each 8x8 digit as 8 rows of 8 pixels: sequence classification, offline."""

from research.config import base_config, parse_arg
from research.models import default_config
from research.sweep import axis, product


def get_config(arg=None):
    parse_arg(arg)  # takes no argument
    config = base_config("digits_rows_lstm")
    config.data.name = "digits_rows"
    config.data.batch_size = 32
    config.model = default_config("rnn_classifier", hidden_size=128)
    config.optimizer.learning_rate = 3e-3
    config.optimizer.schedule = "cosine"
    config.train.num_epochs = 40
    return config


def sweep():
    return product(
        axis("optimizer.learning_rate", [1e-3, 3e-3, 1e-2]),
        axis("model.hidden_size", [64, 128]),
        axis("seed", [0, 1]),
    )
