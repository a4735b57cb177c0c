"""ResNet-18 (CIFAR stem) on CIFAR-100 with the CIFAR-10 ResNet-18 recipe: about 77-78% top-1."""

from experiments import cifar10_resnet18
from research.errors import UserError
from research.sweep import axis, product


def get_config(arg=None):
    if arg is not None:
        raise UserError(f"cifar100_resnet18 takes no argument, got {arg!r}.")
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
