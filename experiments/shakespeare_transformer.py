"""Causal character Transformer on tiny Shakespeare, the same data and split as the LSTM's."""

from experiments.shakespeare_lstm import shakespeare_data
from research.config import base_config, parse_arg
from research.models import default_config
from research.sweep import axis, product


def get_config(arg=None):
    """`:path=FILE`: a local text file instead of TFDS (see shakespeare_lstm.shakespeare_data)."""
    config = base_config("shakespeare_transformer")
    shakespeare_data(config, parse_arg(arg, path="").path)
    config.model = default_config(
        "transformer_lm",
        max_len=config.data.seq_len,
        num_layers=4,
        num_heads=4,
        embed_dim=256,
        mlp_dim=1024,
        dropout_rate=0.1,
    )
    config.optimizer.name = "adamw"
    config.optimizer.learning_rate = 1e-3
    config.optimizer.weight_decay = 0.1
    config.optimizer.schedule = "cosine"
    config.optimizer.warmup_epochs = 0.5
    config.optimizer.grad_clip_norm = 1.0
    config.train.num_epochs = 8  # the LSTM's budget, for the side-by-side table
    return config


def sweep():
    return product(
        axis("optimizer.learning_rate", [3e-4, 1e-3, 2e-3]),
        axis("model.dropout_rate", [0.0, 0.1]),
        axis("seed", [0, 1]),
    )
