"""ResNet-18 (CIFAR stem) on CIFAR-10: the common GPU recipe that reaches about 95% test accuracy.

SGD with Nesterov momentum 0.9, lr 0.1 with warmup then cosine, weight decay 5e-4, batch 128,
200 epochs, random crop + flip (as in kuangliu/pytorch-cifar and most CIFAR baselines).
`:subset=true` trains on the 4,000-image subset folder made by `launch.cifar_subset_to_folder`.
"""

from experiments.cifar10_resnet20 import SUBSET_PATH
from research.config import base_config, parse_arg
from research.models import default_config
from research.sweep import axis, product


def get_config(arg=None):
    arg = parse_arg(arg, subset=False)
    config = base_config("cifar10_resnet18")
    config.data.name = "cifar10"
    config.data.batch_size = 128
    config.model = default_config("resnet", depth=18, stem="cifar")
    config.task.augment = "crop_flip"
    config.task.label_smoothing = 0.0  # 0.1 is a common, optional extra
    config.optimizer.name = "nesterov"
    config.optimizer.learning_rate = 0.1
    config.optimizer.weight_decay = 5e-4
    config.optimizer.schedule = "cosine"
    config.optimizer.warmup_epochs = 1.0
    config.train.num_epochs = 200
    if arg.subset:
        config.data.name = "image_folder"
        config.data.path = SUBSET_PATH
    return config


def sweep():
    return product(
        axis("optimizer.learning_rate", [0.05, 0.1]),
        axis("task.label_smoothing", [0.0, 0.1]),
        axis("seed", [0, 1]),
    )
