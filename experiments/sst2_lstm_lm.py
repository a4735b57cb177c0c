"""LSTM language model on the SST-2 training sentences, for `sst2_lstm.py` to start from.

`sst2_lstm_lm.py[:path=DIR]` trains next-token prediction on the sentences (labels unused) in
the same WordPiece vocabulary as the classifier; then `sst2_lstm.py[:path=DIR]
--config.init_from=WORKDIR --config.data.vocab_path=WORKDIR/vocab.json
--config.model.bidirectional=False` starts the classifier's embedding and LSTM from it (Dai & Le
2015's LM-LSTM).
"""

from experiments.sst2_lstm import sst2_data
from research.config import base_config, parse_arg
from research.models import default_config
from research.sweep import axis, product


def get_config(arg=None):
    config = base_config("sst2_lstm_lm")
    sst2_data(config, parse_arg(arg, path="").path)
    config.task.name = "char_lm"  # next-token prediction, whatever the tokens are
    config.data.batch_size = 32
    config.model = default_config("rnn_lm", embed_dim=128, hidden_size=256, dropout_rate=0.3)
    config.optimizer.learning_rate = 2e-3
    config.optimizer.schedule = "cosine"
    config.optimizer.grad_clip_norm = 1.0
    config.train.num_epochs = 10  # 26 min on one core; the classifier from it: 75.95% test
    return config


def sweep():
    return product(
        axis("optimizer.learning_rate", [1e-3, 2e-3]),
        axis("model.dropout_rate", [0.3, 0.5]),
        axis("seed", [0, 1]),
    )
