"""Transformer classifier on IMDB reviews (TFDS `imdb_reviews`), WordPiece, first 256 tokens."""

from research.config import base_config, parse_arg
from research.data.text import text_fields
from research.models import default_config
from research.sweep import axis, product


def get_config(arg=None):
    parse_arg(arg)  # takes no argument
    config = base_config("imdb_transformer")
    config.data.name = "imdb_reviews"
    config.data.update(text_fields(seq_len=256, tokenizer="wordpiece", vocab_size=16000))
    config.data.batch_size = 32
    config.model = default_config(
        "transformer_classifier",
        max_len=256,
        num_layers=2,
        num_heads=4,
        embed_dim=128,
        mlp_dim=512,
        dropout_rate=0.1,
    )
    config.task.name = "text_classification"
    config.optimizer.name = "adamw"
    config.optimizer.learning_rate = 3e-4
    config.optimizer.weight_decay = 0.01
    config.optimizer.schedule = "cosine"
    config.optimizer.warmup_epochs = 0.5
    config.train.num_epochs = 5
    return config


def sweep():
    return product(
        axis("optimizer.learning_rate", [1e-4, 3e-4, 1e-3]),
        axis("seed", [0, 1]),
    )
