"""Character LSTM on tiny Shakespeare from TFDS, or from a local copy with `:path=FILE`."""

from research.config import base_config, parse_arg
from research.data.text import text_fields
from research.models import default_config
from research.sweep import axis, product


def shakespeare_data(config, path: str):
    """TFDS `tiny_shakespeare`, or with a path the UTF-8 file there split 90/5/5."""
    config.data.name = "text_file" if path else "tiny_shakespeare"
    config.data.path = path or None
    config.data.update(text_fields(seq_len=128))
    config.data.batch_size = 32
    config.task.name = "char_lm"


def get_config(arg=None):
    config = base_config("shakespeare_lstm")
    shakespeare_data(config, parse_arg(arg, path="").path)
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
