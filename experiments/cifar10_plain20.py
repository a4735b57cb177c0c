"""Plain-20 on CIFAR-10: ResNet-20 without its skip connections (He et al. 2016, figure 6).

Everything but `model.residual` is the ResNet-20 recipe, so the two runs isolate the shortcuts.
"""

from experiments import cifar10_resnet20
from research.sweep import axis, product


def get_config(arg=None):
    config = cifar10_resnet20.get_config(arg)
    config.name = "cifar10_plain20"
    config.model.residual = False
    return config


def sweep():
    return product(axis("optimizer.learning_rate", [0.05, 0.1]), axis("seed", [0, 1]))
