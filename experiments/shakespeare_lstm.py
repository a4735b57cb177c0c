"""Character LSTM on tiny Shakespeare (TFDS), or on a local copy: `shakespeare_lstm.py:FILE`."""

from research.config import base_config
from research.data.text import text_fields
from research.models import default_config
from research.sweep import axis, product


def shakespeare_data(config, arg):
    """TFDS `tiny_shakespeare`, or with `arg` the UTF-8 file at that path split 90/5/5."""
    config.data.name = "text_file" if arg else "tiny_shakespeare"
    config.data.path = arg
    config.data.update(text_fields(seq_len=128))
    config.data.batch_size = 32
    config.task.name = "char_lm"


def get_config(arg=None):
    config = base_config("shakespeare_lstm")
    shakespeare_data(config, arg)
    config.model = default_config(
        "rnn_lm", embed_dim=128, hidden_size=512, num_layers=2, dropout_rate=0.2
    )
    config.optimizer.learning_rate = 2e-3
    config.optimizer.schedule = "cosine"
    config.optimizer.grad_clip_norm = 1.0
    config.train.num_epochs = 8
    return config


def sweep():
    return product(
        axis("optimizer.learning_rate", [1e-3, 2e-3, 4e-3]),
        axis("model.dropout_rate", [0.0, 0.2]),
        axis("seed", [0, 1]),
    )
