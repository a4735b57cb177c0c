"""Character LSTM language model on Python's own documentation: the offline char-LM default."""

from research.config import base_config, parse_arg
from research.data.text import text_fields
from research.models import default_config
from research.sweep import axis, product


def get_config(arg=None):
    """`:cell=rnn` trains a vanilla RNN instead of the LSTM."""
    arg = parse_arg(arg, cell="lstm")
    config = base_config("text_lstm")
    config.data.name = "python_docs"
    config.data.update(text_fields(seq_len=128))
    config.data.batch_size = 32
    config.model = default_config("rnn_lm", cell=arg.cell, embed_dim=64, hidden_size=256)
    config.task.name = "char_lm"
    config.optimizer.learning_rate = 3e-3
    config.optimizer.schedule = "cosine"
    config.optimizer.grad_clip_norm = 1.0
    config.train.num_epochs = 10
    return config


def sweep():
    return product(
        axis("optimizer.learning_rate", [1e-3, 3e-3]),
        axis("model.hidden_size", [128, 256]),
        axis("seed", [0, 1]),
    )
