"""BERT-style masked-LM pretraining: characters of Python's docs (offline default), or SST-2.

`text_bert_mlm.py:sst2=true` pretrains on TFDS glue/sst2 sentences and `text_bert_mlm.py:path=DIR`
on the stsa.binary files in DIR, both with WordPiece, for `sst2_bert.py` to fine-tune.
"""

from experiments.sst2_lstm import SEQ_LEN, sst2_data
from research.config import base_config, parse_arg
from research.data.text import text_fields
from research.models import default_config
from research.sweep import axis, product

# The encoder that sst2_bert.py fine-tunes must have exactly these shapes: BERT-Tiny's (2 layers
# of width 128), small enough to pretrain on one CPU core in under an hour.
SST2_ENCODER = {
    "max_len": SEQ_LEN,
    "num_layers": 2,
    "num_heads": 2,
    "embed_dim": 128,
    "mlp_dim": 512,
}


def get_config(arg=None):
    arg = parse_arg(arg, sst2=False, path="")
    config = base_config("text_bert_mlm")
    config.task.name = "masked_lm"
    if arg.sst2 or arg.path:
        sst2_data(config, arg.path)
        config.model = default_config("bert_mlm", dropout_rate=0.1, **SST2_ENCODER)
        config.data.batch_size = 64
        config.train.num_epochs = 40  # 47 min on one core; val masked-token accuracy 20.9%
    else:
        config.data.name = "python_docs"
        config.data.update(text_fields(seq_len=127))  # rows of 128 characters
        config.model = default_config(
            "bert_mlm", max_len=128, num_layers=2, num_heads=4, embed_dim=128, mlp_dim=512
        )
        config.data.batch_size = 32
        config.train.num_epochs = 10
    config.optimizer.name = "adamw"
    config.optimizer.learning_rate = 1e-3
    config.optimizer.weight_decay = 0.01
    config.optimizer.schedule = "cosine"
    config.optimizer.warmup_epochs = 1.0
    config.optimizer.grad_clip_norm = 1.0
    return config


def sweep():
    return product(
        axis("optimizer.learning_rate", [3e-4, 1e-3]),
        axis("seed", [0, 1]),
    )
