"""A tiny CIFAR-style ResNet on scikit-learn's 8x8 digits: offline, >= 98% test accuracy.

ResNet-8 (one basic block per stage) at width 16 trains in about a minute on a laptop CPU.
"""

from research.config import base_config, parse_arg
from research.models import default_config
from research.sweep import axis, product


def get_config(arg=None):
    parse_arg(arg)  # takes no argument
    config = base_config("digits_resnet")
    config.data.name = "digits"
    config.data.batch_size = 32
    config.model = default_config("cifar_resnet", depth=8, width=16)
    config.task.augment = "crop"  # 1-pixel shifts; a flipped digit is another digit
    config.task.crop_padding = 1
    config.optimizer.name = "nesterov"
    config.optimizer.learning_rate = 0.05
    config.optimizer.weight_decay = 5e-4
    config.optimizer.schedule = "cosine"
    config.optimizer.warmup_epochs = 1.0
    config.train.num_epochs = 30
    return config


def sweep():
    return product(
        axis("optimizer.learning_rate", [0.02, 0.05, 0.1]),
        axis("model.width", [8, 16, 32]),
        axis("seed", [0, 1, 2]),
    )
