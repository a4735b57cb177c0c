"""ResNet-18 (CIFAR stem) on CIFAR-100 with the CIFAR-10 ResNet-18 recipe: about 77-78% top-1."""

from experiments import cifar10_resnet18
from research.config import parse_arg
from research.sweep import axis, product


def get_config(arg=None):
    parse_arg(arg)  # takes no argument
    config = cifar10_resnet18.get_config()
    config.name = "cifar100_resnet18"
    config.data.name = "cifar100"
    return config


def sweep():
    return product(
        axis("optimizer.weight_decay", [5e-4, 1e-3]),
        axis("task.label_smoothing", [0.0, 0.1]),
        axis("seed", [0, 1]),
    )
